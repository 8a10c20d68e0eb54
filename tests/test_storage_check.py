"""virtmig.storage.shared_check: mountinfo parsing, each kind of mismatch failing with its table, real hosts.

The self-tests build `StorageFacts` by hand (compare is pure) from real
mountinfo lines, change one thing on the destination and check that exactly
the expected rows fail and that `require_shared` raises with the table.
`gather`/`sentinel_roundtrip` run for real against the local test sshd and,
marked `lab`, between the lab's h1 and h2.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import PurePosixPath as P

import pytest

from tests.conftest import Sshd
from virtmig.host import Host
from virtmig.sshhost import SshHost
from virtmig.storage.shared_check import (
    FAIL_MARK,
    PathStat,
    QemuAccess,
    SentinelResult,
    StorageFacts,
    StorageMismatch,
    StorageReport,
    compare,
    compared_options,
    gather,
    mount_for,
    parse_mountinfo,
    require_shared,
    sentinel_roundtrip,
)

ROOT_LINE = "25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro"
NFS4_LINE = ("36 25 0:32 / /mnt/nfs rw,relatime shared:18 - nfs4 10.0.0.5:/export rw,vers=4.2,rsize=1048576,"
             "wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.6,"
             "local_lock=none,addr=10.0.0.5")
FUSE_LINE = ("43 141 0:45 / /mnt/nfs rw,nosuid,nodev,relatime - fuse.nfs 198.18.0.10:/srv/virtmig-export "
             "rw,user_id=0,group_id=0,allow_other")
MOUNT = P("/mnt/nfs")
IMAGE = P("/mnt/nfs/vm/disk.img")
QEMU = "libvirt-qemu"


# -- parse_mountinfo -------------------------------------------------------------


def test_parse_kernel_nfs4_line() -> None:
    [entry] = parse_mountinfo(NFS4_LINE + "\n")
    assert (entry.mount_id, entry.parent_id, entry.root) == (36, 25, "/")
    assert entry.mount_point == MOUNT
    assert entry.mount_options == ("rw", "relatime")
    assert (entry.fstype, entry.source) == ("nfs4", "10.0.0.5:/export")
    assert entry.super_options[:2] == ("rw", "vers=4.2") and entry.super_options[-1] == "addr=10.0.0.5"
    assert entry.nfs_version == "4.2"
    assert entry.options()["sec"] == "sys" and entry.options()["hard"] == ""


def test_parse_lab_fuse_line() -> None:
    [entry] = parse_mountinfo(FUSE_LINE)
    assert entry.mount_point == MOUNT
    assert entry.mount_options == ("rw", "nosuid", "nodev", "relatime")
    assert (entry.fstype, entry.source) == ("fuse.nfs", "198.18.0.10:/srv/virtmig-export")
    assert entry.super_options == ("rw", "user_id=0", "group_id=0", "allow_other")
    assert entry.nfs_version == "unknown"  # the FUSE client does not show vers=


def test_parse_octal_escapes_and_binds() -> None:
    text = (r"50 25 8:1 /srv/my\040dir /mnt/a\040b\011c\134d rw - ext4 /dev/sda1 rw" "\n"
            r"51 25 0:50 / /mnt/x rw master:3 propagate_from:2 shared:9 - tmpfs  rw,mode=755" "\n")
    bind, tmp = parse_mountinfo(text)
    assert bind.root == "/srv/my dir" and bind.mount_point == P("/mnt/a b\tc\\d")
    assert bind.source_spec == "/dev/sda1[/srv/my dir]" and bind.nfs_version == "n/a"
    assert tmp.source == "" and tmp.fstype == "tmpfs" and tmp.super_options == ("rw", "mode=755")


def test_parse_rejects_malformed_line() -> None:
    with pytest.raises(ValueError, match="malformed mountinfo line"):
        parse_mountinfo("36 25 0:32 / /mnt/nfs rw,relatime shared:18 nfs4 10.0.0.5:/export rw")


def test_mount_for_takes_longest_then_topmost() -> None:
    over = NFS4_LINE.replace("36 25", "37 36").replace("10.0.0.5:/export", "10.0.0.9:/other")
    entries = parse_mountinfo("\n".join([ROOT_LINE, NFS4_LINE, over]))
    assert mount_for(entries, P("/mnt/nfs/vm/disk.img")) == entries[2]
    assert mount_for(entries, P("/mnt/nfsx")) == entries[0]
    assert mount_for([], P("/")) is None


def test_compared_options_ignore_per_host_ones() -> None:
    [entry] = parse_mountinfo(NFS4_LINE)
    assert compared_options(entry) == {"access": "rw", "hard/soft": "hard", "sec": "sys", "proto": "tcp",
                                       "locking": "local_lock=none"}
    [ro] = parse_mountinfo(FUSE_LINE.replace(" rw,nosuid", " ro,nosuid"))
    assert compared_options(ro) == {"access": "ro"}


# -- compare: each kind of mismatch fails with its table ---------------------------------


def _stat(path: str, mode: str = "755", uid: int = 0, gid: int = 0) -> PathStat:
    names = {0: "root", 64055: "libvirt-qemu", 107: "kvm"}
    return PathStat(P(path), True, uid, gid, mode, names.get(uid, "UNKNOWN"), names.get(gid, "UNKNOWN"))


def _facts(host: str, mountinfo: str = f"{ROOT_LINE}\n{NFS4_LINE}", **changes: object) -> StorageFacts:
    paths = (_stat("/"), _stat("/mnt"), _stat("/mnt/nfs", "755", 64055, 107),
             _stat("/mnt/nfs/vm", "750", 64055, 107), _stat(str(IMAGE), "600", 64055, 107))
    checks = tuple((p.path, "-x", True) for p in paths[:-1]) + ((IMAGE, "-r", True), (IMAGE, "-w", True))
    facts = StorageFacts(host, MOUNT, mount_for(parse_mountinfo(mountinfo), MOUNT), paths, IMAGE,
                         QemuAccess(QEMU, 64055, 107, checks))
    return dataclasses.replace(facts, **changes)  # type: ignore[arg-type]


def _sentinel(written: bool = True, seen: bool = True, same: bool = True, detail: str = "seen on h2") -> SentinelResult:
    return SentinelResult("h1", "h2", MOUNT / ".virtmig-sentinel-0123456789ab", written, seen, same, detail)


def _assert_fails(report: StorageReport, *expected: str) -> str:
    """The report fails on exactly the *expected* checks, each marked in the table; return the table."""
    assert not report.ok
    assert sorted(row.check for row in report.failures) == sorted(expected), report.table()
    with pytest.raises(StorageMismatch) as info:
        require_shared(report)
    assert info.value.report is report
    table = report.table()
    assert table in str(info.value)
    for check in expected:
        assert any(line.startswith(f"{FAIL_MARK} {check} ") for line in table.splitlines()), table
    marked = [line for line in table.splitlines() if line.startswith(FAIL_MARK)]
    assert len(marked) == len(expected), table
    return table


def test_identical_hosts_pass_and_per_host_options_are_ignored() -> None:
    dst = _facts("h2", f"{ROOT_LINE}\n{NFS4_LINE.replace('clientaddr=10.0.0.6', 'clientaddr=10.0.0.7')}")
    report = require_shared(compare(_facts("h1"), dst, _sentinel()))
    assert report.ok and not report.failures
    assert FAIL_MARK not in report.table()


def test_table_layout() -> None:
    table = compare(_facts("h1"), _facts("h2"), _sentinel()).table().splitlines()
    assert [c.strip() for c in table[0].split("|")] == ["check", "h1", "h2"]
    assert set(table[1]) <= {"-", "+"}
    assert [c.strip() for c in table[3].split("|")] == ["mounted at", "/mnt/nfs", "/mnt/nfs"]
    assert len({line.index("|") for line in table if "|" in line}) == 1  # columns aligned


def test_different_mount_source_fails() -> None:
    dst = _facts("h2", f"{ROOT_LINE}\n{NFS4_LINE.replace('10.0.0.5:/export', '10.0.0.9:/export')}")
    table = _assert_fails(compare(_facts("h1"), dst, _sentinel()), "source")
    assert "10.0.0.5:/export" in table and "10.0.0.9:/export" in table


def test_different_nfs_version_fails() -> None:
    dst = _facts("h2", f"{ROOT_LINE}\n{NFS4_LINE.replace('vers=4.2', 'vers=4.1')}")
    _assert_fails(compare(_facts("h1"), dst, _sentinel()), "nfs version")
    v3 = NFS4_LINE.replace(" nfs4 ", " nfs ").replace("vers=4.2", "vers=3")
    _assert_fails(compare(_facts("h1"), _facts("h2", f"{ROOT_LINE}\n{v3}"), _sentinel()), "fstype", "nfs version")


def test_fuse_client_version_unknown_on_both_is_equal() -> None:
    lab = f"{ROOT_LINE}\n{FUSE_LINE}"
    assert compare(_facts("h1", lab), _facts("h2", lab), _sentinel()).ok


@pytest.mark.parametrize(("old", "new", "check"), [
    (",hard,", ",soft,", "option hard/soft"),
    ("sec=sys", "sec=krb5p", "option sec"),
    ("proto=tcp", "proto=rdma", "option proto"),
    (" rw,vers", " ro,vers", "option access"),
    (",hard,", ",hard,nocto,", "option caching"),
    ("local_lock=none", "local_lock=all", "option locking"),
])
def test_different_options_fail(old: str, new: str, check: str) -> None:
    dst = _facts("h2", f"{ROOT_LINE}\n{NFS4_LINE.replace(old, new)}")
    table = _assert_fails(compare(_facts("h1"), dst, _sentinel()), check)
    print(table)


def test_not_mounted_on_dst_fails() -> None:
    dst = _facts("h2", ROOT_LINE)
    sentinel = _sentinel(seen=False, same=False, detail="not visible on h2 (No such file or directory)")
    table = _assert_fails(compare(_facts("h1"), dst, sentinel), "mounted at", "source", "fstype", "nfs version",
                          "option hard/soft", "option sec", "option proto", "option locking", "sentinel h1 -> h2")
    assert "| /mnt/nfs" in table and "| /dev/sda1" in table


@pytest.mark.parametrize(("sentinel", "shown"), [
    (_sentinel(seen=False, same=False, detail="not visible on h2 (No such file or directory)"), "not visible on h2"),
    (_sentinel(same=False, detail="content differs on h2: 'stale'"), "content differs"),
    (_sentinel(written=False, seen=False, same=False, detail="cannot write on h1: Permission denied"),
     "cannot write on h1"),
])
def test_sentinel_not_visible_fails(sentinel: SentinelResult, shown: str) -> None:
    table = _assert_fails(compare(_facts("h1"), _facts("h2"), sentinel), "sentinel h1 -> h2")
    assert shown in table


def test_parent_directory_mode_or_owner_differs_fails() -> None:
    src = _facts("h1")
    mode = _facts("h2", paths=(_stat("/"), _stat("/mnt", "700"), *src.paths[2:]))
    table = _assert_fails(compare(src, mode, _sentinel()), "dir /mnt")
    assert "755 root:root (0:0)" in table and "700 root:root (0:0)" in table
    owner = _facts("h2", paths=(*src.paths[:2], _stat("/mnt/nfs", "755", 0, 107), *src.paths[3:]))
    _assert_fails(compare(src, owner, _sentinel()), "dir /mnt/nfs")
    missing = _facts("h2", paths=(*src.paths[:4], PathStat(IMAGE, False)))
    assert "missing" in _assert_fails(compare(src, missing, _sentinel()), f"image {IMAGE}")


def test_qemu_user_cannot_traverse_parent_on_one_host_fails() -> None:
    src = _facts("h1")
    checks = tuple((p, f, p != P("/mnt")) for p, f, _ in src.qemu.checks)
    dst = _facts("h2", qemu=dataclasses.replace(src.qemu, checks=checks))
    table = _assert_fails(compare(src, dst, _sentinel()), "qemu user reaches image")
    assert "libvirt-qemu cannot search /mnt" in table
    nouser = _facts("h2", qemu=QemuAccess(QEMU, None, None, ()))
    assert "no user libvirt-qemu" in _assert_fails(compare(src, nouser, _sentinel()), "qemu user reaches image")


# -- gather and the sentinel against a real sshd (this machine) ---------------------------


@pytest.fixture
def local(sshd: Sshd) -> Iterator[tuple[Host, P]]:
    """Host for the local test sshd and a fresh 0755 directory on it."""
    with SshHost(sshd.alias, sshd.ssh_config) as host:
        path = P(host.run("mktemp", "-d", "-p", "/var/tmp", "virtmig-check.XXXXXX").stdout.strip())
        host.run("chmod", "755", str(path))
        try:
            yield host, path
        finally:
            host.run("rm", "-rf", "--", str(path))


def test_gather_and_sentinel_on_a_real_host(local: tuple[Host, P]) -> None:
    host, mount = local
    image = mount / "vm" / "disk.img"
    host.run("mkdir", "-m", "711", str(image.parent))
    host.run("install", "-m", "600", "-o", "nobody", "/dev/null", str(image))
    facts = gather(host, mount, image, "nobody")
    assert facts.mount is not None and facts.mount.mount_point in (mount, *mount.parents)
    assert [p.path for p in facts.paths] == [*reversed(image.parents), image]
    assert (facts.paths[-1].mode, facts.paths[-1].user, facts.paths[-2].mode) == ("600", "nobody", "711")
    assert facts.qemu.ok, facts.qemu.describe()
    sentinel = sentinel_roundtrip(host, host, mount)
    assert sentinel.ok, sentinel.detail
    assert host.run("ls", "-A", str(mount)).stdout.split() == ["vm"]  # sentinel removed
    require_shared(compare(facts, facts, sentinel))

    host.run("chmod", "700", str(image.parent))
    blocked = gather(host, mount, image, "nobody")
    assert blocked.qemu.describe() == f"nobody cannot search {image.parent}"
    assert gather(host, mount, image, "no-such-user-here").qemu.describe() == "no user no-such-user-here"


def test_sentinel_as_user_and_unwritable(local: tuple[Host, P]) -> None:
    host, mount = local
    host.run("chown", "nobody", str(mount))
    host.run("chmod", "700", str(mount))
    assert sentinel_roundtrip(host, host, mount, as_user="nobody").ok
    host.run("chown", "root", str(mount))
    denied = sentinel_roundtrip(host, host, mount, as_user="nobody")
    assert not denied.written and "cannot write on" in denied.detail and "Permission denied" in denied.detail


# -- the lab: h1 and h2 -------------------------------------------------------------------

#: The lab directory bound at the same path on both hypervisors.
LAB_SHARED = P("/srv/virtmig-shared")


@pytest.fixture
def shared_image(src_host: Host, dst_host: Host, lab: bool) -> Iterator[P]:
    """An image owned by the qemu user in a fresh directory on the lab's shared bind."""
    if not lab:
        pytest.skip("/srv/virtmig-shared exists only in the embedded lab")
    workdir = LAB_SHARED / f"virtmig-check-{secrets.token_hex(6)}"
    image = workdir / "disk.img"
    src_host.run("install", "-d", "-m", "0755", "-o", QEMU, "-g", "kvm", str(workdir))
    try:
        src_host.run("install", "-m", "0600", "-o", QEMU, "-g", "kvm", "/dev/null", str(image))
        yield image
    finally:
        src_host.run("rm", "-rf", "--", str(workdir))


@pytest.mark.lab
def test_lab_shared_directory_passes(src_host: Host, dst_host: Host, shared_image: P) -> None:
    src = gather(src_host, LAB_SHARED, shared_image, QEMU)
    dst = gather(dst_host, LAB_SHARED, shared_image, QEMU)
    for writer, reader in ((src_host, dst_host), (dst_host, src_host)):
        sentinel = sentinel_roundtrip(writer, reader, LAB_SHARED)
        assert sentinel.ok, sentinel.detail
        report = compare(src, dst, sentinel)
        assert report.ok, report.table()
    as_qemu = sentinel_roundtrip(src_host, dst_host, shared_image.parent, as_user=QEMU)
    assert as_qemu.ok, as_qemu.detail
    require_shared(compare(src, dst, as_qemu))


@pytest.fixture
def local_pair(src_host: Host, dst_host: Host) -> Iterator[P]:
    """The same path made on each host separately, 0755 on src and 0700 on dst.

    Under /run: a tmpfs of each host's own (unlike /var/tmp, which the lab's
    hosts share with this machine), so the two directories really are two.
    """
    top = P(f"/run/virtmig-check-{secrets.token_hex(6)}")
    made: list[Host] = []
    try:
        for host, mode in ((src_host, "755"), (dst_host, "700")):
            made.append(host)
            host.run("mkdir", "-m", "755", str(top))
            host.run("mkdir", "-m", mode, str(top / "a"))
        yield top / "a"
    finally:
        for host in made:
            host.run("rm", "-rf", "--", str(top), check=False)


@pytest.mark.lab
def test_lab_host_local_directories_fail(src_host: Host, dst_host: Host, local_pair: P) -> None:
    src = gather(src_host, local_pair, None, QEMU)
    dst = gather(dst_host, local_pair, None, QEMU)
    report = compare(src, dst, sentinel_roundtrip(src_host, dst_host, local_pair))
    table = _assert_fails(report, f"dir {local_pair}", f"sentinel {src_host.name} -> {dst_host.name}",
                          "qemu user reaches mount point")
    assert f"{QEMU} cannot search {local_pair}" in table and "not visible on" in table
    print(table)
