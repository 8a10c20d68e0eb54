"""The lab's machine-wide settings are recorded before they change and restored exactly."""

from __future__ import annotations

import json
from pathlib import Path

from virtmig.lab import sysctls


def test_apply_then_restore_puts_back_the_original(tmp_path: Path) -> None:
    knob = tmp_path / "knob"
    knob.write_text("0\n")
    saved = tmp_path / "saved.json"
    sysctls.apply(saved, {str(knob): "1"})
    assert knob.read_text() == "1\n"
    sysctls.apply(saved, {str(knob): "1"})  # again, as a second `up` would: the original stays recorded
    assert json.loads(saved.read_text()) == {str(knob): "0"}
    sysctls.restore(saved)
    assert knob.read_text() == "0\n"
    assert not saved.exists()


def test_restore_without_a_record_changes_nothing(tmp_path: Path) -> None:
    knob = tmp_path / "knob"
    knob.write_text("7\n")
    sysctls.restore(tmp_path / "absent.json")
    assert knob.read_text() == "7\n"
