"""Reading a guest crash out of its console (recorded console text; no hosts)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from virtmig.guest import console
from virtmig.guest.console import crash_diagnosis, crash_lines
from virtmig.localhost import LocalHost

PANIC = [
    "virtmig-tick up=8.41 rx=1204 tx=1190",
    "[    9.480518] list_add corruption. next->prev should be prev (ffff8c55878326b8), but was ffff8c5585fc80a8.",
    "[    9.485008] kernel BUG at lib/list_debug.c:27!",
    "[    9.498560] Kernel panic - not syncing: Fatal exception in interrupt",
]
HEALTHY = ["virtmig-tick up=8.41 rx=1204 tx=1190", "virtmig-tick up=9.43 rx=1410 tx=1398"]


def test_a_healthy_console_is_no_crash() -> None:
    assert crash_lines(HEALTHY) == []
    assert crash_diagnosis(HEALTHY, "h2", "qemu", 7_002_022) is None


def test_a_panic_is_found_and_named() -> None:
    assert len(crash_lines(PANIC)) == 3
    text = crash_diagnosis(PANIC, "h2", "kvm", 7_002_022)
    assert text is not None and text.startswith("the guest kernel crashed on h2 after the move: list_add corruption")
    assert "03bfc2188f" not in text  # KVM tracks dirty pages in the kernel: not this QEMU bug


def test_tcg_before_qemu_9_points_at_the_upstream_fix() -> None:
    text = crash_diagnosis(PANIC, "h2", "qemu", 7_002_022)
    assert text is not None and "QEMU 7.2 with TCG" in text and "03bfc2188f" in text
    fixed = crash_diagnosis(PANIC, "h2", "qemu", 9_000_000)
    assert fixed is not None and "03bfc2188f" not in fixed


def test_a_wedged_virtio_ring_and_soft_lockup_count_as_a_crash() -> None:
    lines = ["[   10.852477] virtio_net virtio0: output.0:id 1 is not a head!",
             "[   36.750590] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [swapper/0:0]"]
    text = crash_diagnosis(lines, "h1", "qemu", 7_002_022)
    assert text is not None and "is not a head!" in text


def test_an_oops_header_out_of_the_tail_is_still_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen on the lab: the oops header scrolled out of the last 80 lines, leaving registers and heartbeats."""
    monkeypatch.setattr(console, "CONSOLE_DIR", PurePosixPath(str(tmp_path)))
    lines = ["[    7.530000] BUG: unable to handle page fault for address: 00007fc043b1fda0",
             "[    7.530100] Oops: 0002 [#1] PREEMPT SMP PTI",
             *[f"[    7.53{k:04d}] R13: 0000000000000202" for k in range(10)],
             "[    7.538515] note: virtmig-agent[101] exited with irqs disabled",
             *[f"virtmig-tick up={8 + k}.00 rx=3709 tx=357" for k in range(console.TAIL_LINES)]]
    Path(console.console_log_path("vm")).write_text("\n".join(lines) + "\n")
    host = LocalHost("h2")
    assert console.crash_lines(console.console_tail(host, "vm")) == []  # the tail alone shows none
    evidence = console.silent_guest_evidence([], host, "vm", "52:54:00:00:00:01")
    assert evidence[:3] == ["h2 console: " + lines[0], "h2 console: " + lines[1], "h2 console: " + lines[12]]
    text = console.crash_diagnosis(evidence, "h2", "qemu", 7_002_022)
    assert text is not None and "unable to handle page fault" in text and "03bfc2188f" in text
