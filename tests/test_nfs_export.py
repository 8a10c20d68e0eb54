"""The export's life cycle: our block in /etc/exports, and the file put back exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest

from virtmig.host import Host
from virtmig.lab.topology import H1, H2, SSH_CONFIG
from virtmig.sshhost import SshHost
from virtmig.storage.exports import (
    BEGIN,
    END,
    ExportError,
    ExportSpec,
    exported_to,
    markers,
    mount_nfs,
    provision_export,
    restore_exports,
    strip_blocks_of_dead_runs,
    strip_every_managed_block,
    strip_managed_block,
    unmount,
    with_managed_block,
)
from virtmig.storage.shared import SharedStorage

ORIGINAL = "# operator's exports\n/srv/other 10.0.0.0/8(ro)\n\n/home  host1(rw)   \n"
SPEC = ExportSpec(PurePosixPath("/srv/virtmig-export"), (H1.ip, H2.ip))


def test_block_is_appended_and_stripped_back_to_the_original() -> None:
    text = with_managed_block(ORIGINAL, SPEC)
    assert text.startswith(ORIGINAL)
    assert f"{BEGIN}\n/srv/virtmig-export {H1.ip}(rw,sync,root_squash,no_subtree_check)" in text
    assert strip_managed_block(text) == ORIGINAL


def test_tagged_blocks_live_beside_the_main_one_and_leave_it_alone() -> None:
    main = with_managed_block(ORIGINAL, SPEC)
    case = ExportSpec(PurePosixPath("/srv/virtmig-export-virtmig-case"), (H2.ip,), "ro,sync,root_squash")
    both = with_managed_block(main, case, tag="ro-case")
    assert both.startswith(main) and both.count(BEGIN) == 2
    assert strip_managed_block(both, tag="ro-case") == main  # the case's teardown keeps the run's block
    assert "virtmig-case" in strip_managed_block(both)  # and the run's strip keeps the case's block
    assert strip_managed_block(strip_managed_block(both, tag="ro-case")) == ORIGINAL


def test_the_markers_name_the_run_and_any_runs_block_is_stripped() -> None:
    """An operator reading /etc/exports sees whose block it is; the next run strips it whichever run wrote it."""
    text = with_managed_block(ORIGINAL, SPEC, run_id="20261202T031500Z-ab12")
    assert f"{BEGIN} [run 20261202T031500Z-ab12]\n" in text and f"{END} [run 20261202T031500Z-ab12]\n" in text
    assert strip_managed_block(text) == ORIGINAL
    again = with_managed_block(text, SPEC, run_id="next")
    assert again.count(BEGIN) == 1 and "[run next]" in again and "ab12" not in again
    assert strip_managed_block(with_managed_block(ORIGINAL, SPEC)) == ORIGINAL  # a block of an older virtmig
    case = with_managed_block(text, SPEC, tag="ro-case", run_id="next")
    assert strip_managed_block(case) == strip_managed_block(text) + case[len(text):]  # the tagged one stays
    with pytest.raises(ValueError, match="run id"):
        with_managed_block(ORIGINAL, SPEC, run_id="x]\n/ *(rw)")


def test_every_managed_block_is_stripped_whatever_its_tag_or_run() -> None:
    """What provisioning keeps of the file: a killed case's tagged block is not the operator's."""
    case = ExportSpec(PurePosixPath("/srv/virtmig-export-virtmig-case"), (H2.ip,), "ro,sync,root_squash")
    text = with_managed_block(with_managed_block(ORIGINAL, SPEC, run_id="r1"), case, tag="ro-case", run_id="r1")
    text = with_managed_block(text, case, tag="dst-case")
    assert text.count(BEGIN) == 3
    assert strip_every_managed_block(text) == ORIGINAL


def test_a_tag_that_could_break_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="tag"):
        markers("bad tag\n")


def test_an_aborted_runs_block_is_replaced_not_doubled() -> None:
    twice = with_managed_block(with_managed_block(ORIGINAL, SPEC), SPEC)
    assert twice.count(BEGIN) == 1 and twice.count(END) == 1


def test_default_export_is_not_flagged_but_wildcard_and_no_root_squash_are() -> None:
    assert SPEC.insecurities() == []
    loose = ExportSpec(PurePosixPath("/x"), ("*",), "rw,no_root_squash")
    assert len(loose.insecurities()) == 2


@pytest.mark.parametrize("bad", ["rw,(evil)", "rw;reboot", "rw, sync"])
def test_malformed_options_are_refused_before_any_host_is_touched(bad: str) -> None:
    with pytest.raises(ValueError):
        ExportSpec(PurePosixPath("/x"), ("h",), bad)


@pytest.fixture
def nfs_server(lab: bool) -> Iterator[Host]:
    """The lab's NFS server over SSH; its /etc/exports as it was is put back afterwards."""
    with SshHost("nfs", SSH_CONFIG) as host:
        before = host.read_text("/etc/exports")
        yield host
        host.write_text("/etc/exports", before)
        host.run("exportfs", "-ra")


@pytest.mark.lab
def test_exports_restored_byte_for_byte_after_use_and_after_failure(
    nfs_server: Host, src_host: Host,
) -> None:
    nfs_server.write_text("/etc/exports", ORIGINAL.replace("/srv/other", "/srv"))
    original = nfs_server.read_text("/etc/exports")

    handle = provision_export(nfs_server, SPEC, (64055, 107), "virtmig-test")
    assert "/srv/virtmig-export" in exported_to(src_host, "nfs")
    mounted = mount_nfs(src_host, "nfs:/srv/virtmig-export", PurePosixPath("/mnt/virtmig-test"))
    assert mounted is not None
    unmount(src_host, mounted)
    restore_exports(nfs_server, handle)
    assert nfs_server.read_text("/etc/exports") == original

    # exportfs refuses an unknown option: provisioning fails, and the file
    # is put back before the error is raised.
    broken = ExportSpec(PurePosixPath("/srv/virtmig-export"), (H1.ip,), "rw,sync,bogus_option")
    with pytest.raises(ExportError):
        provision_export(nfs_server, broken, (64055, 107), "virtmig-test")
    assert nfs_server.read_text("/etc/exports") == original


def test_a_starting_pair_strips_dead_runs_blocks_and_keeps_its_live_siblings() -> None:
    """A pair's worker removes what killed runs left, never the block another pair of a live run uses."""
    text = with_managed_block(ORIGINAL, SPEC, run_id="killed")  # an old run's untagged block
    text = with_managed_block(text, SPEC, tag="pair-h1-h2", run_id="worker-1")  # a live sibling
    text = with_managed_block(text, SPEC, tag="pair-h3-h4", run_id="dead-worker")  # a killed pair
    text = with_managed_block(text, SPEC, tag="ro-case")  # a block of no run at all
    kept = strip_blocks_of_dead_runs(text, {"worker-1", "worker-2"})
    assert kept == with_managed_block(ORIGINAL, SPEC, tag="pair-h1-h2", run_id="worker-1")
    assert strip_blocks_of_dead_runs(text, ()) == ORIGINAL


@pytest.mark.lab
def test_two_pairs_blocks_come_and_go_and_the_last_puts_the_file_back(nfs_server: Host) -> None:
    """Pairs of one run provision side by side: each removes only its block; the last restores the file."""
    nfs_server.write_text("/etc/exports", ORIGINAL.replace("/srv/other", "/srv"))
    original = nfs_server.read_text("/etc/exports")
    nfs_server.run("rm", "-rf", "/srv/virtmig-pairs-test")
    export = PurePosixPath("/srv/virtmig-pairs-test")
    one = provision_export(nfs_server, ExportSpec(export, (H1.ip,)), (64055, 107), "virtmig-h1-h2",
                           run_id="worker-1", tag="pair-h1-h2")
    two = provision_export(nfs_server, ExportSpec(export, (H2.ip,)), (64055, 107), "virtmig-h2-h1",
                           run_id="worker-2", tag="pair-h2-h1", live_runs={"worker-1"})
    both = nfs_server.read_text("/etc/exports")
    assert "[run worker-1]" in both and "[run worker-2]" in both
    restore_exports(nfs_server, one)  # the first out leaves the other's block and the shared directory
    assert nfs_server.read_text("/etc/exports") == strip_managed_block(both, "pair-h1-h2")
    assert nfs_server.run("test", "-d", str(export / "virtmig-h2-h1"), check=False).ok
    assert not nfs_server.run("test", "-e", str(export / "virtmig-h1-h2"), check=False).ok
    restore_exports(nfs_server, two)  # the last out: the file byte for byte, the directory gone
    assert nfs_server.read_text("/etc/exports") == original
    assert not nfs_server.run("test", "-e", str(export), check=False).ok


def test_an_insecure_export_is_flagged_in_the_storage_label() -> None:
    loose = ExportSpec(PurePosixPath("/x"), ("*",), "rw,no_root_squash")
    storage = SharedStorage(PurePosixPath("/mnt/nfs/virtmig"), "nfs-mount", False,
                            insecure=tuple(loose.insecurities()))
    assert storage.label.count("[INSECURE:") == 2
    assert SharedStorage(PurePosixPath("/m"), "nfs-mount", False).label == "nfs-mount"
