"""The lab's NFS adapters against real nfs-ganesha, in throwaway namespaces.

A server namespace runs rpcbind and ganesha (nfsserver.start) with the
exportfs stand-in over a private /etc; a client namespace mounts with
`mount -t nfs`, which runs the mount.nfs stand-in (FUSE + libnfs).  Checks
are the server-side semantics the failure-mode suites rely on: root_squash,
modes, search permission, read-only exports, and a clean unmount.

Only namespaces `vmtest-nfs-*`, addresses in 198.18.2.0/24 on a veth between
them (no route anywhere else), and a temporary directory are used: never the
lab's `virtmig-*` namespaces, bridge or state.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from virtmig.host import CommandResult
from virtmig.lab import exportfs_adapter, nfs_fuse, nfsserver
from virtmig.lab.netns import Node, netns_exists, netns_pids, sh, terminate
from virtmig.lab.topology import LabNode

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not Path("/sbin/mount.nfs").exists(), reason="needs nfs-common (/sbin/mount.nfs)"),
    pytest.mark.skipif(shutil.which("ganesha.nfsd") is None, reason="needs nfs-ganesha"),
]

SERVER_IP, CLIENT_IP = "198.18.2.10", "198.18.2.11"
QEMU_UID, QEMU_GID = 64055, 107
OTHER_UID = 4242
ANON = 65534


@dataclass(frozen=True)
class TestNode(LabNode):
    """A LabNode in a `vmtest-` namespace whose state lives in a temporary directory."""

    __test__ = False
    root: Path = Path("/nonexistent")

    @property
    def netns(self) -> str:
        return f"vmtest-{self.name}"

    @property
    def state_dir(self) -> Path:
        return self.root / self.name


@dataclass
class NfsPair:
    server: Node
    client: Node
    root: Path
    rw_dir: Path
    ro_dir: Path

    def as_user(self, uid: int, gid: int, argv: list[str]) -> CommandResult:
        """Run argv in the client node as uid:gid (no supplementary groups)."""
        return self.client.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv],
                               check=False)

    def mount(self, export: Path, mnt: Path, opts: str = "vers=3") -> CommandResult:
        mnt.mkdir(exist_ok=True)
        return self.client.run(["mount", "-t", "nfs", "-o", opts, f"{SERVER_IP}:{export}", str(mnt)], check=False)

    def exportfs(self, exports: str) -> CommandResult:
        self.server.run(["sh", "-c", "cat > /etc/exports"], stdin=exports)
        return self.server.run(["exportfs", "-ra"], check=False)


def _destroy(names: list[str]) -> None:
    for name in names:
        if netns_exists(name):
            terminate(netns_pids(name))
            sh(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="module")
def pair() -> Iterator[NfsPair]:
    names = ["vmtest-nfs-srv", "vmtest-nfs-cli"]
    _destroy(names)
    root = Path(tempfile.mkdtemp(prefix="vmtest-nfs-"))
    root.chmod(0o755)
    holders: list[Node] = []
    try:
        srv = Node.create(TestNode("nfs-srv", SERVER_IP, hypervisor=False, root=root))
        holders.append(srv)
        cli = Node.create(TestNode("nfs-cli", CLIENT_IP, hypervisor=True, root=root))
        holders.append(cli)
        sh(["ip", "link", "add", "vmt-nfs-s", "type", "veth", "peer", "name", "vmt-nfs-c"])
        sh(["ip", "link", "set", "vmt-nfs-s", "netns", srv.spec.netns])
        sh(["ip", "link", "set", "vmt-nfs-c", "netns", cli.spec.netns])
        for node, dev in ((srv, "vmt-nfs-s"), (cli, "vmt-nfs-c")):
            node.run(["ip", "link", "set", "lo", "up"])
            node.run(["ip", "addr", "add", f"{node.spec.ip}/24", "dev", dev])
            node.run(["ip", "link", "set", dev, "up"])
            node.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"])
            node.spec.state_dir.mkdir(parents=True, exist_ok=True)
        # The export dir is bound over itself, so the test sees the server's files at the same path.
        rw_dir, ro_dir = srv.spec.state_dir / "export", root / "srv-ro"
        ro_dir.mkdir()
        nfsserver.start(srv, root / "logs", state_dir=srv.spec.state_dir, export_dir=rw_dir,
                        exports="# none yet\n")
        exportfs_adapter.setup_node(srv, srv.spec.state_dir)
        nfs_fuse.setup_node(cli, cli.spec.state_dir)
        for d in (rw_dir, ro_dir):
            d.chmod(0o777)
        _wait_rpc(srv)
        yield NfsPair(srv, cli, root, rw_dir, ro_dir)
    finally:
        for node in reversed(holders):
            node.run(["sh", "-c", "for m in $(findmnt -rn -t fuse.nfs -o TARGET); do umount -l $m; done"],
                     check=False)
        _destroy(names)
        if not os.environ.get("VMTEST_NFS_KEEP"):  # set it to keep logs and files for a post-mortem
            shutil.rmtree(root, ignore_errors=True)


def _wait_rpc(srv: Node) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if srv.run(["rpcinfo", "-t", SERVER_IP, "mountd", "3"], check=False).rc == 0:
            return
        time.sleep(0.3)
    pytest.fail("ganesha's MOUNT v3 service never answered")


@pytest.fixture(scope="module")
def mounted(pair: NfsPair) -> Path:
    exports = (f"{pair.rw_dir} {CLIENT_IP}(rw,sync,no_subtree_check,root_squash)\n"
               f"{pair.ro_dir} 198.18.2.0/24(ro,sync,no_subtree_check)\n")
    proc = pair.exportfs(exports)
    assert proc.rc == 0, proc.stderr
    mnt = pair.root / "mnt-rw"
    proc = pair.mount(pair.rw_dir, mnt)
    assert proc.rc == 0, proc.stderr
    return mnt


def test_exportfs_lists_like_the_kernel_tool(pair: NfsPair, mounted: Path) -> None:
    out = pair.server.run(["exportfs", "-v"]).stdout
    assert f"{CLIENT_IP}(sync,wdelay,hide,no_subtree_check,sec=sys,rw,secure,root_squash,no_all_squash)" in out
    assert "198.18.2.0/24(sync,wdelay,hide,no_subtree_check,sec=sys,ro,secure,root_squash,no_all_squash)" in out
    assert not Path("/etc/exports").exists() or "vmtest" not in Path("/etc/exports").read_text()


def test_showmount_from_client(pair: NfsPair, mounted: Path) -> None:
    out = pair.client.run(["showmount", "-e", SERVER_IP]).stdout
    assert str(pair.rw_dir) in out and str(pair.ro_dir) in out


def test_mountinfo_shows_nfs_source(pair: NfsPair, mounted: Path) -> None:
    out = pair.client.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", str(mounted)]).stdout.split()
    assert out == [f"{SERVER_IP}:{pair.rw_dir}", "fuse.nfs"]


def test_root_is_squashed_on_create(pair: NfsPair, mounted: Path) -> None:
    pair.client.run(["sh", "-c", f"echo hello > {mounted}/by-root"])
    st = (pair.rw_dir / "by-root").stat()
    assert (st.st_uid, st.st_gid) == (ANON, ANON)
    assert pair.client.run(["stat", "-c", "%u", f"{mounted}/by-root"]).stdout.strip() == str(ANON)


def test_owner_only_file_readable_by_owner_not_by_root(pair: NfsPair, mounted: Path) -> None:
    secret = pair.rw_dir / "qemu-only.img"
    secret.write_text("disk\n")
    os.chown(secret, QEMU_UID, QEMU_GID)
    secret.chmod(0o600)
    ok = pair.as_user(QEMU_UID, QEMU_GID, ["cat", f"{mounted}/qemu-only.img"])
    assert ok.rc == 0 and ok.stdout == "disk\n", ok.stderr
    denied = pair.client.run(["cat", f"{mounted}/qemu-only.img"], check=False)
    assert denied.rc != 0 and "Permission denied" in denied.stderr


def test_directory_without_search_bit_blocks_traversal(pair: NfsPair, mounted: Path) -> None:
    private = pair.rw_dir / "private"
    private.mkdir()
    (private / "inside").write_text("x\n")
    os.chown(private, QEMU_UID, QEMU_GID)
    private.chmod(0o700)
    assert pair.as_user(QEMU_UID, QEMU_GID, ["cat", f"{mounted}/private/inside"]).rc == 0
    denied = pair.as_user(OTHER_UID, OTHER_UID, ["cat", f"{mounted}/private/inside"])
    assert denied.rc != 0 and "Permission denied" in denied.stderr


def test_owner_writes_and_changes_modes(pair: NfsPair, mounted: Path) -> None:
    work = pair.rw_dir / "work"
    work.mkdir()
    os.chown(work, QEMU_UID, QEMU_GID)
    script = (f"cd {mounted}/work && mkdir d && echo a > d/f && mv d/f d/g && chmod 640 d/g && truncate -s 3 d/g "
              "&& touch -d @1000000000 d/g && touch -a d/g && stat -c '%a %s %Y' d/g && ls d && rm d/g && rmdir d")
    proc = pair.as_user(QEMU_UID, QEMU_GID, ["sh", "-c", script])
    assert proc.rc == 0, proc.stderr
    assert proc.stdout.split() == ["640", "3", "1000000000", "g"]
    chown = pair.as_user(QEMU_UID, QEMU_GID, ["chown", "0", f"{mounted}/work"])
    assert chown.rc != 0 and "Operation not permitted" in chown.stderr


def test_direct_io_throughput(pair: NfsPair, mounted: Path) -> None:
    """QEMU cache=none opens with O_DIRECT; 64 MiB dd, the figure is printed for the report."""
    for flag in ("oflag=direct", "conv=fsync"):
        dd = pair.as_user(QEMU_UID, QEMU_GID, ["dd", "if=/dev/zero", f"of={mounted}/dd.img", "bs=1M", "count=64",
                                                flag])
        assert dd.rc == 0, dd.stderr
        print(f"write {flag}: {dd.stderr.strip().splitlines()[-1]}")
        rd = pair.as_user(QEMU_UID, QEMU_GID, ["dd", f"if={mounted}/dd.img", "of=/dev/null", "bs=1M", "iflag=direct"])
        assert rd.rc == 0, rd.stderr
        print(f"read iflag=direct: {rd.stderr.strip().splitlines()[-1]}")
    assert (pair.rw_dir / "dd.img").stat().st_size == 64 << 20


def test_read_only_export_gives_erofs(pair: NfsPair, mounted: Path) -> None:
    mnt = pair.root / "mnt-ro"
    proc = pair.mount(pair.ro_dir, mnt)
    assert proc.rc == 0, proc.stderr
    try:
        write = pair.as_user(QEMU_UID, QEMU_GID, ["sh", "-c", f"echo x > {mnt}/new"])
        assert write.rc != 0 and "Read-only file system" in write.stderr
    finally:
        pair.client.run(["umount", str(mnt)])


def test_reexport_read_only_takes_effect(pair: NfsPair, mounted: Path) -> None:
    """exportfs -ra after an edit reaches the running ganesha (SIGHUP reload)."""
    ro = f"{pair.rw_dir} {CLIENT_IP}(ro,sync,no_subtree_check)\n{pair.ro_dir} 198.18.2.0/24(ro)\n"
    try:
        assert pair.exportfs(ro).rc == 0
        mnt = pair.root / "mnt-reexported"
        assert pair.mount(pair.rw_dir, mnt).rc == 0
        write = pair.as_user(QEMU_UID, QEMU_GID, ["sh", "-c", f"echo x > {mnt}/work/after-ro"])
        assert write.rc != 0 and "Read-only file system" in write.stderr
        pair.client.run(["umount", str(mnt)])
        assert pair.exportfs(f"{pair.ro_dir} 198.18.2.0/24(ro)\n").rc == 0
        refused = pair.mount(pair.rw_dir, mnt)
        assert refused.rc != 0
    finally:
        pair.exportfs(f"{pair.rw_dir} {CLIENT_IP}(rw,sync,no_subtree_check,root_squash)\n"
                      f"{pair.ro_dir} 198.18.2.0/24(ro,sync,no_subtree_check)\n")


def test_umount_ends_the_daemon(pair: NfsPair) -> None:
    mnt = pair.root / "mnt-umount"
    assert pair.mount(pair.rw_dir, mnt).rc == 0
    daemons = [p for p in netns_pids(pair.client.spec.netns) if "--serve" in _cmdline(p) and str(mnt) in _cmdline(p)]
    assert len(daemons) == 1
    pair.client.run(["umount", str(mnt)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{daemons[0]}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{daemons[0]}").exists()
    assert pair.client.run(["findmnt", str(mnt)], check=False).rc != 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_exportfs_unexport_and_plain_listing(pair: NfsPair, mounted: Path) -> None:
    proc = pair.server.run(["exportfs", "-u", f"198.18.2.0/24:{pair.ro_dir}"], check=False)
    assert proc.rc == 0, proc.stderr
    listing = pair.server.run(["exportfs"]).stdout
    assert str(pair.rw_dir) in listing and str(pair.ro_dir) not in listing
    assert pair.mount(pair.ro_dir, pair.root / "mnt-unexported").rc != 0
    assert pair.server.run(["exportfs", "-ra"], check=False).rc == 0
    assert str(pair.ro_dir) in pair.server.run(["exportfs"]).stdout
