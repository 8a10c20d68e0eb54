"""The journal and the cleanup of dead runs, on this machine's real files (LocalHost).

What the lab tests show with a SIGKILLed run (tests/test_lab_killed_runs.py),
here step by step: entries are written before a change, a dead owner is
recognised, its changes are undone newest first, and the journal is gone.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path, PurePosixPath

from virtmig.cleanup import clean_dead_runs
from virtmig.host import temp_name
from virtmig.journal import Journal, Owner, runs_on
from virtmig.localhost import LocalHost
from virtmig.storage.exports import ExportSpec, strip_managed_block, with_managed_block

SPEC = ExportSpec(PurePosixPath("/srv/virtmig-export"), ("198.18.0.11",))


def test_a_live_owner_is_alive_and_a_dead_or_reused_pid_is_not() -> None:
    me = Owner.current("r1")
    assert me.alive() is True
    child = subprocess.Popen(["true"])
    child.wait()
    dead = Owner(me.run_id, me.machine, me.boot_id, child.pid, me.start_ticks)
    assert dead.alive() is False
    reused = Owner(me.run_id, me.machine, me.boot_id, me.pid, "1")  # same pid, another start time
    assert reused.alive() is False
    elsewhere = Owner(me.run_id, "another-machine", me.boot_id, me.pid, me.start_ticks)
    assert elsewhere.alive() is None
    assert Owner.from_json(me.to_json()) == me


def _journal(tmp_path: Path, run_id: str) -> Journal:
    return Journal(LocalHost(), Owner.current(run_id), root=str(tmp_path / "journal")).open()


def test_a_dead_runs_changes_are_undone_newest_first_and_its_journal_removed(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    original = "/home 10.0.0.0/8(ro)\n"
    exports.write_text(original)
    workdir = tmp_path / "export" / "virtmig"
    journal = _journal(tmp_path, "dead-run")
    journal.record("dir", path=str(workdir))
    workdir.mkdir(parents=True)
    (workdir / "disk.raw").write_text("x")
    written = with_managed_block(original, SPEC)
    journal.record("file", path=str(exports), original=original, written=written, apply=None)
    exports.write_text(written)
    # the run is killed here: no teardown

    said: list[str] = []
    done = clean_dead_runs([LocalHost()], said.append, alive=lambda owner: False, root=journal.root)
    assert exports.read_text() == original
    assert not workdir.exists() and (tmp_path / "export").exists()
    assert runs_on(LocalHost(), journal.root) == {}
    assert done == said and "cleaning up after run dead-run" in done[0]
    assert "put back as it was" in done[1] and "removed" in done[2], done  # newest first: the file, then the dir


def test_a_block_in_a_file_changed_since_is_stripped_never_restored(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    original = "/home 10.0.0.0/8(ro)\n"
    journal = _journal(tmp_path, "dead-run")
    written = with_managed_block(original, SPEC)
    journal.record("file", path=str(exports), original=original, written=written, apply=None)
    exports.write_text(written + "/added/by/operator h9(rw)\n")
    clean_dead_runs([LocalHost()], lambda _: None, alive=lambda owner: False, root=journal.root)
    assert exports.read_text() == strip_managed_block(written) + "/added/by/operator h9(rw)\n"


def test_a_live_run_is_left_alone_and_its_journal_goes_when_all_is_undone(tmp_path: Path) -> None:
    journal = _journal(tmp_path, "live-run")
    entry = journal.record("dir", path=str(tmp_path / "made"))
    (tmp_path / "made").mkdir()
    assert clean_dead_runs([LocalHost()], lambda _: None, root=journal.root) == []  # its owner is this process
    assert (tmp_path / "made").exists()
    assert not journal.close(), "a journal with entries left stays"
    journal.done(entry)
    assert journal.close()
    assert runs_on(LocalHost(), journal.root) == {}


def test_a_write_the_dead_run_was_killed_in_does_not_keep_its_journal(tmp_path: Path) -> None:
    """SIGKILL between `write_text`'s temporary file and its rename leaves the temporary file (seen in CI)."""
    journal = _journal(tmp_path, "dead-run")
    made = tmp_path / "made"
    journal.record("dir", path=str(made))
    made.mkdir()
    unfinished = Path(temp_name(f"{journal.directory}/{time.time_ns()}-mount.json"))
    unfinished.write_text('{"kind": "mo')
    done = clean_dead_runs([LocalHost()], lambda _: None, alive=lambda owner: False, root=journal.root)
    assert not made.exists() and "1 change(s)" in done[0], done  # the unfinished write is no entry
    assert not Path(journal.directory).exists(), sorted(p.name for p in Path(journal.directory).iterdir())
