"""Machine-wide kernel settings the lab needs: set at `up`, restored at `down`.

Namespaces do not separate `vm.*` sysctls, so the one setting the lab needs
changes the whole machine.  The value found before is written down in the
lab's state directory first and put back by `down` (also after a crash:
`up` runs `down` first), so the machine ends as the lab found it.

vm.unprivileged_userfaultfd=1: post-copy migration needs userfaultfd(2) in
the destination QEMU, and the lab runs QEMU unprivileged (libvirt-qemu) as
a distribution does.  Debian's default 0 refuses it, and QEMU 7.2 does not
use /dev/userfaultfd.  Real hosts are left alone: there the suite skips
post-copy and says why (`virtmig.migration.runner.postcopy_blocker`).
"""

from __future__ import annotations

import json
from pathlib import Path

#: sysctl file -> the value the lab needs.
LAB_SYSCTLS: dict[str, str] = {
    "/proc/sys/vm/unprivileged_userfaultfd": "1",
}


def apply(saved: Path, wanted: dict[str, str] = LAB_SYSCTLS) -> None:
    """Record the current values in `saved` (once), then set the wanted ones."""
    if not saved.exists():  # a second apply must not record the lab's own values as the originals
        before = {path: Path(path).read_text().strip() for path in wanted if Path(path).exists()}
        saved.write_text(json.dumps(before, indent=2) + "\n")
    for path, value in wanted.items():
        if Path(path).exists():
            Path(path).write_text(value + "\n")


def restore(saved: Path) -> None:
    """Put back what `apply` recorded, and forget it."""
    if not saved.exists():
        return
    for path, value in json.loads(saved.read_text()).items():
        Path(path).write_text(str(value) + "\n")
    saved.unlink()
