"""Launchers that put the lab's stand-ins for system tools in place inside a node.

A stand-in (`exportfs`, `mount.nfs`) is a Python module of this package.  The
node sees it through a bind mount, where the module cannot find its package
from its own path, so the lab writes a small shell launcher that names the
interpreter and the package root explicitly, and binds that.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

#: Directory that holds the `virtmig` package.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def write_launcher(path: Path, module: str, *, what: str) -> Path:
    """Write an executable that runs `python -m module "$@"` with this interpreter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f"# virtmig lab stand-in for {what}: see {module.replace('.', '/')}.py\n"
        f"PYTHONPATH={shlex.quote(str(PACKAGE_ROOT))} "
        f'exec {shlex.quote(sys.executable)} -m {module} "$@"\n'
    )
    path.chmod(0o755)
    return path
