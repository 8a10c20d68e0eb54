"""The ganesha export against the lab's real nfs-ganesha (4.x): reload, showmount, squash, restore.

The lab's ganesha.conf holds the server settings and includes exports.conf,
which the lab's `exportfs` writes from /etc/exports; `--nfs-server-kind
ganesha` puts its EXPORT block in ganesha.conf itself, so the two never
write the same file.  These tests also show that this ganesha version
picks up EXPORT blocks added to and removed from its main config on SIGHUP.

The inner session comes first: it takes the lab's lock, which the tests
after it keep (session fixture `lab`) until this session ends.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pytest
from filelock import FileLock

from tests.inner_run import known_tcg_bug, migrations, output_tail, run_suite
from virtmig.host import Host
from virtmig.lab import lifecycle
from virtmig.lab.topology import H1, H2, LAB_LOCK, SSH_CONFIG
from virtmig.sshhost import SshHost
from virtmig.storage import ganesha as g
from virtmig.storage.exports import ExportError, ExportSpec, exported_to, mount_nfs, unmount, wait_listed
from virtmig.storage.exports_to_ganesha import GaneshaOptionError
from virtmig.storage.qemu_user import QemuIdentity

pytestmark = pytest.mark.lab
#: Not the lab's own export directory: a leftover of another run there must not matter.
TEST_EXPORT = PurePosixPath("/srv/virtmig-ganesha-test")
MOUNT = PurePosixPath("/mnt/virtmig-ganesha-test")


def _ganesha_conf() -> bytes:
    """The nfs node's ganesha.conf, as bytes (byte for byte is the claim)."""
    proc = subprocess.run(["ssh", "-F", str(SSH_CONFIG), "nfs", "cat", str(g.GANESHA_CONF)],
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.fixture
def conf_at_rest() -> Iterator[Callable[[], bytes]]:
    """The lab up for the inner session (which takes the lock itself), and a reader of ganesha.conf.

    The reader holds the lab's lock: no session runs then, so the file is
    as sessions leave it (another's ganesha run may be mid-way otherwise).
    The lab is left as it was found, up or down.
    """
    def read() -> bytes:
        with FileLock(str(LAB_LOCK), timeout=3600):
            return _ganesha_conf()

    with FileLock(str(LAB_LOCK), timeout=3600):
        was_up = lifecycle.is_up()
        if not was_up:
            lifecycle.up()
    try:
        yield read
    finally:
        if not was_up:  # ours to bring down, once no session is on it
            with FileLock(str(LAB_LOCK), timeout=3600):
                if lifecycle.is_up():
                    lifecycle.down()


def test_live_suite_with_a_ganesha_export(conf_at_rest: Callable[[], bytes], tmp_path: Path) -> None:
    """`pytest suites/live --nfs-server-kind ganesha` (p2p): migrates, and ganesha.conf is put back exactly."""
    before = conf_at_rest()
    proc, html = run_suite(tmp_path, "suites/live", "-k", "round_trip and p2p and not tunnelled",
                           "--nfs-server-kind", "ganesha", timeout=3600)
    after = conf_at_rest()  # put back whatever the run's outcome
    assert after == before and b"virtmig managed export" not in after
    results = html.parent / "results.json"
    hops = migrations(html) if results.exists() else []
    assert hops, output_tail(proc)
    assert all("from nfs-ganesha" in m["storage"] for m in hops), hops
    if proc.returncode != 0 and (bug := known_tcg_bug(hops)):
        pytest.xfail(bug)  # the same rule as tests/test_lab.py: QEMU's bug, found and named
    assert proc.returncode == 0, output_tail(proc)
    assert [(m["src"], m["dst"]) for m in hops] == [("h1", "h2"), ("h2", "h1")]
    assert all(m["ok"] for m in hops), hops


# Below, the session holds the lab (the `lab` fixture) until it ends: the inner
# session above, which takes the lab's lock itself, must run before.

@pytest.fixture
def nfs_server(lab: bool) -> Iterator[Host]:
    with SshHost("nfs", SSH_CONFIG) as host:
        yield host


def test_export_block_reload_squash_and_byte_identical_restore(
    nfs_server: Host, src_host: Host, dst_host: Host, qemu_user: QemuIdentity,
) -> None:
    original = nfs_server.read_text(str(g.GANESHA_CONF))
    pair = (src_host, dst_host)
    spec = ExportSpec(TEST_EXPORT, (H1.ip, H2.ip))
    handle = g.provision_ganesha_export(nfs_server, spec, (qemu_user.uid, qemu_user.gid), "virtmig",
                                        server_name="nfs", observers=pair)
    try:
        assert handle.export_id >= g.ID_BASE
        mounted = mount_nfs(src_host, f"nfs:{TEST_EXPORT}", MOUNT)
        assert mounted is not None
        try:
            # root_squash: root on h1 is nobody on the export, whose root dir is root's 0755.
            assert not src_host.run("touch", f"{MOUNT}/by-root", check=False).ok
            src_host.run(*qemu_user.setpriv(), "touch", f"{MOUNT}/virtmig/by-qemu")
            owner = nfs_server.run("stat", "-c", "%u", f"{TEST_EXPORT}/virtmig/by-qemu").stdout.strip()
            assert owner == str(qemu_user.uid)
        finally:
            unmount(src_host, mounted)
    finally:
        g.restore_ganesha_config(nfs_server, handle, pair)
    assert nfs_server.read_text(str(g.GANESHA_CONF)) == original
    assert str(TEST_EXPORT) not in exported_to(dst_host, "nfs"), "the reload withdrew the export"
    assert not nfs_server.run("test", "-e", str(TEST_EXPORT), check=False).ok, "the directory we made is gone"


def test_a_failed_provision_leaves_ganesha_conf_byte_identical(
    nfs_server: Host, src_host: Host, dst_host: Host, qemu_user: QemuIdentity,
) -> None:
    original = nfs_server.read_text(str(g.GANESHA_CONF))
    owner = (qemu_user.uid, qemu_user.gid)
    # Exported to h2 only, but h1 is asked to see it: the reload works, the check fails.
    only_h2 = ExportSpec(TEST_EXPORT, (H2.ip,))
    with pytest.raises(ExportError, match="showmount"):
        g.provision_ganesha_export(nfs_server, only_h2, owner, "virtmig", server_name="nfs",
                                   observers=(src_host,), timeout=5.0)
    assert nfs_server.read_text(str(g.GANESHA_CONF)) == original
    wait_listed((dst_host,), "nfs", TEST_EXPORT, listed=False)
    # Refused before anything is touched: an option ganesha cannot express, a pid file naming nothing.
    with pytest.raises(GaneshaOptionError, match="async"):
        g.provision_ganesha_export(nfs_server, ExportSpec(TEST_EXPORT, (H1.ip,), "rw,async"), owner, "virtmig",
                                   server_name="nfs", observers=(src_host,))
    with pytest.raises(ExportError, match="no ganesha to reload"):
        g.provision_ganesha_export(nfs_server, only_h2, owner, "virtmig", server_name="nfs",
                                   observers=(dst_host,), pidfile=PurePosixPath("/run/ganesha/none.pid"))
    assert nfs_server.read_text(str(g.GANESHA_CONF)) == original
    assert not nfs_server.run("test", "-e", str(TEST_EXPORT), check=False).ok
