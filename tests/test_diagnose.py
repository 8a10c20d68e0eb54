"""diagnose(): each known message to its cause, and the evidence deciding shared messages.

Messages are quoted as libvirt 9.0 / QEMU 7.2 / OpenSSH print them; the
permission and mount cases use hand-built Evidence, and the path walk runs
for real on this machine as the qemu user (its rules are the kernel's).
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path

import pytest

from virtmig.diagnose import Cause, Evidence, Mount, PathCheck, diagnose, gather_evidence, paths_in, qemu_ids_in
from virtmig.diagnose.evidence import (
    export_of,
    parse_export_options,
    parse_image_facts,
    parse_mountinfo,
    relocations,
)
from virtmig.localhost import LocalHost
from virtmig.storage.qemu_user import parse_qemu_conf

IMG = "/srv/shared/g/disk.raw"
QEMU_OPEN = ("internal error: qemu unexpectedly closed the monitor: 2025-01-01T00:00:00.000000Z "
             "qemu-system-x86_64: -blockdev {\"driver\":\"file\",\"filename\":\"" + IMG + "\"}: "
             f"Could not open '{IMG}': Permission denied")
STORAGE = f"Cannot access storage file '{IMG}' (as uid:64055, gid:64055): Permission denied"
NFS = Mount("/srv/shared", "nfs4", "nfs:/srv/export", ("rw", "relatime"))
ROOT = Mount("/", "ext4", "/dev/vda", ("rw",))


@pytest.mark.parametrize(("text", "cause"), [
    ("Unsafe migration: Migration without shared storage is unsafe", Cause.STORAGE_NOT_SHARED),
    ("Failed to create file '/mnt/nfs/virtmig/g/saved-state.img': couldn't determine fs type: Permission denied",
     Cause.FS_TYPE_NOT_RECOGNISED),
    ("internal error: Attempt to migrate guest to the same host 0e2c5e0c-ab1f-5c3c-9a1f-2b0c7b0e0e01",
     Cause.SAME_HOST_UUID),
    ("unsupported configuration: guest CPU doesn't match specification: missing features: avx512f",
     Cause.CPU_INCOMPATIBLE),
    ("the CPU is incompatible with host CPU: Host CPU does not provide required features: svm",
     Cause.CPU_INCOMPATIBLE),
    ("Cannot recv data: Host key verification failed.: Connection reset by peer", Cause.SSH_HOST_KEY),
    ("Cannot recv data: root@h2: Permission denied (publickey).: Connection reset by peer", Cause.SSH_AUTH),
    ("Cannot recv data: ssh: connect to host h2 port 22: Connection refused: Connection reset by peer",
     Cause.SSH_REFUSED),
    ("unable to connect to server at 'h2:49152': Connection refused", Cause.MIGRATION_PORT_BLOCKED),
    ("Failed to connect socket to '/run/libvirt/virtlogd-sock': No such file or directory",
     Cause.LIBVIRT_DAEMON_UNREACHABLE),
    ("Unable to resolve address 'h2.example' service '49152': Name or service not known", Cause.NAME_RESOLUTION),
    ("internal error: qemu unexpectedly closed the monitor: qemu-system-x86_64: -blockdev {}: "
     "NFS: ACCESS denied. Required access rw-. Allowed access r--", Cause.NFS_ROOT_SQUASH),
    (f"Could not open '{IMG}': Read-only file system", Cause.READ_ONLY_STORAGE),
    # k1 -> h1, direct live migration, Debian 12 refpolicy (tests/test_realkernel_migration.py before the lab's rule)
    ("Unable to create socket: Permission denied", Cause.SELINUX_MIGRATION_SOCKET),
    ("something nobody has seen", Cause.UNKNOWN),
])
def test_message_table(text: str, cause: Cause) -> None:
    found = diagnose(text)
    assert found.cause is cause
    assert found.fix and found.summary == cause.value


def test_paths_and_ids_are_read_from_the_message() -> None:
    assert paths_in(QEMU_OPEN) == [IMG]
    assert paths_in(STORAGE) == [IMG]
    assert qemu_ids_in(STORAGE) == (64055, 64055)
    # libvirt's SELinux relabel (the lab's k1) and its stat under Debian's policy: the image, not the context
    relabel = f"unable to set security context 'system_u:object_r:svirt_image_t:s0:c1,c2' on '{IMG}': Permission denied"
    assert paths_in(relabel) == [IMG]
    assert paths_in(f"unable to stat: {IMG}: Permission denied") == [IMG]


def _walk(blocked: str | None = None, image_ok: bool = True) -> tuple[PathCheck, ...]:
    dirs = ["/", "/srv", "/srv/shared", "/srv/shared/g"]
    checks = [PathCheck(d, "directory", "700" if d == blocked else "755", "0:0", d != blocked, True, False)
              for d in dirs]
    return (*checks, PathCheck(IMG, "regular file", "644" if image_ok else "600",
                               "64055:64055" if image_ok else "0:0", None, image_ok, image_ok))


def _ev(**kw: object) -> Evidence:
    base: dict[str, object] = dict(host="h2", qemu_user="libvirt-qemu", path=IMG, mounts=(ROOT, NFS))
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


def test_parent_without_search_bit_names_the_directory() -> None:
    found = diagnose(QEMU_OPEN, _ev(path_checks=_walk(blocked="/srv/shared/g")))
    assert found.cause is Cause.DAC_PARENT_NOT_SEARCHABLE
    assert found.fix.startswith("chmod o+x /srv/shared/g (on h2)")


def test_image_not_readable_by_qemu_user() -> None:
    found = diagnose(STORAGE, _ev(path_checks=_walk(image_ok=False), dynamic_ownership=False))
    assert found.cause is Cause.DAC_IMAGE_NOT_ACCESSIBLE
    assert "chown libvirt-qemu" in found.fix


def test_root_squash_is_told_by_the_export_options() -> None:
    found = diagnose(QEMU_OPEN, _ev(path_checks=_walk(image_ok=False), export_options=("rw", "root_squash")))
    assert found.cause is Cause.NFS_ROOT_SQUASH
    assert "no_root_squash" in found.fix and "chown libvirt-qemu nfs:/srv/export/g/disk.raw" in found.fix


# -- root_squash against plain DAC: what root itself may do on the image --------

GATE = "/var/lib/libvirt/gate/disk.raw"
SQUASHED = "/srv/shared/g/root-owned.raw"
GATE_OPEN = f"internal error: process exited while connecting to monitor: Could not open '{GATE}': Permission denied"
QEMU_IDS = (64055, 64055)
LOCAL = Mount("/var/lib/libvirt", "ext4", "/dev/vdb", ("rw",))


def _gate_walk(target: str, *, read: bool, write: bool, mode: str = "600", owner: str = "0:0") -> tuple[PathCheck, ...]:
    link = PathCheck(GATE, "symbolic link", "777", "0:0", None, read, write)
    return (*(PathCheck(d, "directory", "755", "0:0", True, True, False)
              for d in ("/", "/var", "/var/lib", "/var/lib/libvirt", "/var/lib/libvirt/gate")), link,
            *(PathCheck(d, "directory", "755", "64055:64055", True, True, True) for d in ("/srv/shared/g",)),
            PathCheck(target, "regular file", mode, owner, None, read, write))


def _gate_ev(target: str, **kw: object) -> Evidence:
    base: dict[str, object] = dict(path=GATE, resolved=target, qemu_ids=QEMU_IDS, mounts=(ROOT, LOCAL, NFS),
                                   path_checks=_gate_walk(target, read=False, write=False))
    base.update(kw)
    return _ev(**base)


def test_root_refused_on_nfs_is_root_squash_and_the_fix_is_the_servers_chown() -> None:
    found = diagnose(GATE_OPEN, _gate_ev(SQUASHED, root_read=False))
    assert found.cause is Cause.NFS_ROOT_SQUASH, found.text()
    assert "chown 64055:64055 nfs:/srv/export/g/root-owned.raw" in found.fix
    assert f"{GATE} resolves to {SQUASHED}" in found.evidence_lines
    assert f"root on h2 cannot open {SQUASHED} for reading" in found.evidence_lines


def test_root_reading_the_file_rules_root_squash_out() -> None:
    # no_root_squash (or a file root may read anyway): root opens it, so it is the file's own owner/mode
    found = diagnose(GATE_OPEN, _gate_ev(SQUASHED, root_read=True, export_options=("rw", "root_squash")))
    assert found.cause is Cause.DAC_IMAGE_NOT_ACCESSIBLE, found.text()


def test_root_refused_on_a_local_file_system_is_not_root_squash() -> None:
    local = "/var/lib/libvirt/images/disk.raw"
    found = diagnose(GATE_OPEN, _gate_ev(local, root_read=False))
    assert found.cause is not Cause.NFS_ROOT_SQUASH, found.text()


# -- read-only export: EACCES from a client that asks for access first ----------

def test_read_only_export_is_named_from_the_export_table() -> None:
    walk = _gate_walk("/srv/shared/g/disk.raw", read=True, write=False, mode="644", owner="64055:64055")
    found = diagnose(GATE_OPEN, _gate_ev("/srv/shared/g/disk.raw", path_checks=walk, root_read=True,
                                         export_options=("ro", "sync", "root_squash")))
    assert found.cause is Cause.READ_ONLY_STORAGE, found.text()
    assert "the export is ro" in found.evidence_lines and "rw in /etc/exports" in found.fix


def test_a_failure_at_resume_says_a_definition_is_left_on_the_destination() -> None:
    cont = f"internal error: unable to execute QEMU command 'cont': Could not open '{GATE}': Permission denied"
    walk = _gate_walk("/srv/shared/g/disk.raw", read=True, write=False, mode="644", owner="64055:64055")
    found = diagnose(cont, _gate_ev("/srv/shared/g/disk.raw", path_checks=walk, root_read=True))
    assert found.cause is Cause.READ_ONLY_STORAGE, found.text()
    assert any("leaves it shut off" in line for line in found.evidence_lines)
    assert not any("leaves it shut off" in line for line in diagnose(GATE_OPEN).evidence_lines)


def test_read_only_export_is_named_when_the_owner_may_write_but_the_server_refuses() -> None:
    walk = _gate_walk("/srv/shared/g/disk.raw", read=True, write=False, mode="644", owner="64055:64055")
    found = diagnose(GATE_OPEN, _gate_ev("/srv/shared/g/disk.raw", path_checks=walk, root_read=True))
    assert found.cause is Cause.READ_ONLY_STORAGE, found.text()


def test_an_image_of_another_owner_is_not_taken_for_read_only() -> None:
    walk = _gate_walk("/srv/shared/g/disk.raw", read=True, write=False, mode="644", owner="1000:1000")
    found = diagnose(GATE_OPEN, _gate_ev("/srv/shared/g/disk.raw", path_checks=walk, root_read=True))
    assert found.cause is Cause.DAC_IMAGE_NOT_ACCESSIBLE, found.text()


# -- missing image: mounted elsewhere or not mounted, by where the image is found ---

CASE = "/var/lib/libvirt/gate/mnt/disk.raw"
CASE_MISSING = f"Cannot access storage file '{CASE}': No such file or directory"
SESSION = Mount("/mnt/nfs", "fuse.nfs", "nfs:/srv/export", ("rw",))


def _missing_walk(*dirs: str) -> tuple[PathCheck, ...]:
    return (*(PathCheck(d, "directory", "755", "0:0", True, True, False) for d in dirs),
            PathCheck(CASE, "missing", "-", "-", None, None, None))


def test_image_found_under_another_mount_point_names_both_paths() -> None:
    elsewhere = Mount("/var/lib/libvirt/gate/elsewhere", "fuse.nfs", "nfs:/srv/export/g", ("rw",))
    found = diagnose(CASE_MISSING, _ev(path=CASE, mounts=(ROOT, LOCAL, SESSION, elsewhere), found_at=(
        "/var/lib/libvirt/gate/elsewhere/disk.raw",), path_checks=_missing_walk("/", "/var/lib/libvirt/gate")))
    assert found.cause is Cause.MOUNT_PATH_DIFFERS, found.text()
    assert "it is at /var/lib/libvirt/gate/elsewhere," in found.fix
    assert "mount it at /var/lib/libvirt/gate/mnt " in found.fix


def test_image_found_nowhere_is_not_mounted_even_beside_other_shared_mounts() -> None:
    walk = _missing_walk("/", "/var/lib/libvirt", "/var/lib/libvirt/gate", "/var/lib/libvirt/gate/mnt")
    found = diagnose(CASE_MISSING, _ev(path=CASE, mounts=(ROOT, LOCAL, SESSION), found_at=(), path_checks=walk))
    assert found.cause is Cause.DESTINATION_NOT_MOUNTED, found.text()
    assert found.fix.startswith("mount the shared storage on h2 at /var/lib/libvirt/gate/mnt,")


def test_a_file_of_that_name_on_local_storage_does_not_count_as_mounted_elsewhere() -> None:
    found = diagnose(CASE_MISSING, _ev(path=CASE, mounts=(ROOT, LOCAL), found_at=("/var/lib/libvirt/disk.raw",),
                                       path_checks=_missing_walk("/")))
    assert found.cause is Cause.DESTINATION_NOT_MOUNTED, found.text()


def test_evidence_parsers_for_image_facts_relocations_and_exports() -> None:
    assert parse_image_facts("ids|64055:64055\nresolved|/srv/x\nroot_read|0\n") == ((64055, 64055), "/srv/x", False)
    assert parse_image_facts("ids|:\n") == (None, None, None)
    assert relocations("/a/b/disk.raw", (ROOT, SESSION)) == ["/mnt/nfs/b/disk.raw", "/mnt/nfs/disk.raw"]
    assert export_of(SESSION) == "/srv/export" and export_of(ROOT) is None
    etab = "/srv/export\t198.18.0.11(rw,root_squash)\n/srv/export/g\t198.18.0.12(ro,root_squash)\n"
    assert parse_export_options(etab, "/srv/export/g") == ("ro", "root_squash")
    split = "/srv/case\t198.18.0.11(rw,root_squash)\n/srv/case\t198.18.0.12(ro,root_squash)\n"
    assert parse_export_options(split, "/srv/case", ("h2", "198.18.0.12")) == ("ro", "root_squash")
    assert parse_export_options(split, "/srv/case", ("h1", "198.18.0.11")) == ("rw", "root_squash")
    assert parse_export_options(split, "/srv/other", ("h1",)) == ()


def test_missing_image_on_an_unmounted_destination() -> None:
    found = diagnose(f"Cannot access storage file '{IMG}': No such file or directory", _ev(mounts=(ROOT,)))
    assert found.cause is Cause.DESTINATION_NOT_MOUNTED


def test_missing_image_when_the_export_is_mounted_elsewhere() -> None:
    elsewhere = Mount("/mnt/other", "nfs4", "nfs:/srv/export", ("rw",))
    found = diagnose(f"Could not open '{IMG}': No such file or directory", _ev(mounts=(ROOT, elsewhere)))
    assert found.cause is Cause.MOUNT_PATH_DIFFERS and "/mnt/other" in found.fix


def test_missing_image_on_the_mounted_share() -> None:
    found = diagnose(f"Could not open '{IMG}': No such file or directory", _ev())
    assert found.cause is Cause.IMAGE_MISSING


def test_read_only_mount_is_named() -> None:
    ro = Mount("/srv/shared", "nfs4", "nfs:/srv/export", ("ro", "relatime"))
    found = diagnose(f"Could not open '{IMG}': Read-only file system", _ev(mounts=(ROOT, ro)))
    assert found.cause is Cause.READ_ONLY_STORAGE
    assert "/srv/shared is mounted ro" in found.evidence_lines


def test_parsers() -> None:
    mi = parse_mountinfo("36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n")
    assert mi == (Mount("/mnt x", "ext3", "/dev/root", ("rw", "noatime", "errors=continue")),)
    assert parse_qemu_conf('#user = "qemu"\nuser = "+64055"\ndynamic_ownership = 0\n') == ("64055", False)
    assert parse_export_options("/srv/export\t*(rw,sync,root_squash)\n", "/srv/export/") == (
        "rw", "sync", "root_squash")


def test_path_walk_as_the_qemu_user_on_this_machine() -> None:
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        pytest.skip("no libvirt-qemu user on this machine")
    if os.geteuid() != 0:
        pytest.skip("needs root to switch user")
    base = Path("/var/tmp") / f"virtmig-walk-{os.getpid()}"
    try:
        (base / "locked" / "g").mkdir(parents=True)
        base.chmod(0o755)
        (base / "locked").chmod(0o700)
        img = base / "locked" / "g" / "disk.raw"
        img.write_bytes(b"")
        evidence = gather_evidence(LocalHost("local"), str(img), user="libvirt-qemu")
        by_path = {c.path: c for c in evidence.path_checks}
        assert by_path[str(base)].search is True
        assert by_path[str(base / "locked")].search is False
        found = diagnose(f"Could not open '{img}': Permission denied", evidence)
        assert found.cause is Cause.DAC_PARENT_NOT_SEARCHABLE
        assert found.fix.startswith(f"chmod o+x {base / 'locked'} ")
        # a link to a root 0600 file on local storage: root reads it, so it is DAC, not root_squash
        (base / "locked").chmod(0o755)
        img.chmod(0o600)
        link = base / "link.raw"
        link.symlink_to(img)
        evidence = gather_evidence(LocalHost("local"), str(link), user="libvirt-qemu")
        assert evidence.resolved == str(img) and evidence.root_read is True and evidence.found_at is None
        found = diagnose(f"Could not open '{link}': Permission denied", evidence)
        assert found.cause is Cause.DAC_IMAGE_NOT_ACCESSIBLE, found.text()
        missing = gather_evidence(LocalHost("local"), str(base / "gone" / "disk.raw"), user="libvirt-qemu")
        assert missing.resolved is None and missing.found_at is not None
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


# -- the fix names what the cause names: reason and fix come from the same facts -----

RO_MOUNT = Mount("/srv/shared", "nfs4", "nfs:/srv/export", ("ro", "relatime"))
ELSEWHERE = Mount("/var/lib/libvirt/gate/elsewhere", "fuse.nfs", "nfs:/srv/export/g", ("rw",))


def _avc(tcontext: str, name: str = "disk.raw") -> str:
    return (f'type=AVC msg=audit(1710238447.512:1893): avc:  denied  {{ read }} for  pid=48211 comm="qemu-kvm" '
            f'name="{name}" dev="0:52" ino=2883603 scontext=system_u:system_r:svirt_t:s0:c193,c827 '
            f"tcontext={tcontext} tclass=file permissive=0")


def _names(text: str, path: str) -> bool:
    """*text* names *path* itself, not merely a longer path that begins with it."""
    return re.search(re.escape(path) + r"(?![\w/.-])", text) is not None


@pytest.mark.parametrize(("text", "evidence", "cause", "named"), [
    pytest.param(QEMU_OPEN, _ev(path_checks=_walk(blocked="/srv/shared/g")), Cause.DAC_PARENT_NOT_SEARCHABLE,
                 ("/srv/shared/g",), id="parent-not-searchable"),
    pytest.param(QEMU_OPEN, _ev(path_checks=_walk(blocked="/srv")), Cause.DAC_PARENT_NOT_SEARCHABLE,
                 ("/srv",), id="parent-not-searchable-high-up"),
    pytest.param(STORAGE, _ev(path_checks=_walk(image_ok=False), dynamic_ownership=False),
                 Cause.DAC_IMAGE_NOT_ACCESSIBLE, (IMG,), id="image-mode-owner"),
    # the message names the link; the reason quotes the mode and owner of the file behind it, which the fix chowns
    pytest.param(GATE_OPEN, _gate_ev(SQUASHED, root_read=True), Cause.DAC_IMAGE_NOT_ACCESSIBLE, (SQUASHED,),
                 id="image-mode-owner-behind-a-link"),
    pytest.param(f"Could not open '{IMG}': Read-only file system", _ev(mounts=(ROOT, RO_MOUNT)),
                 Cause.READ_ONLY_STORAGE, ("/srv/shared",), id="read-only-mount"),
    pytest.param(GATE_OPEN, _gate_ev("/srv/shared/g/disk.raw", mounts=(ROOT, LOCAL, RO_MOUNT), root_read=True,
                                     path_checks=_gate_walk("/srv/shared/g/disk.raw", read=True, write=False,
                                                            mode="644", owner="64055:64055")),
                 Cause.READ_ONLY_STORAGE, ("/srv/shared",), id="read-only-mount-refusing-with-eacces"),
    pytest.param(f"Could not open '{IMG}': No such file or directory", _ev(), Cause.IMAGE_MISSING, (IMG,),
                 id="image-missing"),
    pytest.param(CASE_MISSING, _ev(path=CASE, mounts=(ROOT, LOCAL, SESSION, ELSEWHERE),
                                   found_at=("/var/lib/libvirt/gate/elsewhere/disk.raw",),
                                   path_checks=_missing_walk("/", "/var/lib/libvirt/gate")),
                 Cause.MOUNT_PATH_DIFFERS, (CASE, ELSEWHERE.mountpoint), id="mount-path-differs-found-elsewhere"),
    pytest.param(f"Could not open '{IMG}': No such file or directory",
                 _ev(mounts=(ROOT, Mount("/mnt/other", "nfs4", "nfs:/srv/export", ("rw",)))),
                 Cause.MOUNT_PATH_DIFFERS, (IMG, "/mnt/other"), id="mount-path-differs-not-searched"),
    pytest.param(CASE_MISSING, _ev(path=CASE, mounts=(ROOT, LOCAL, SESSION), found_at=(), path_checks=_missing_walk(
        "/", "/var/lib/libvirt", "/var/lib/libvirt/gate", "/var/lib/libvirt/gate/mnt")),
                 Cause.DESTINATION_NOT_MOUNTED, ("/var/lib/libvirt/gate/mnt",), id="not-mounted"),
    pytest.param(f"Could not open '{IMG}': No such file or directory", _ev(mounts=(ROOT,)),
                 Cause.DESTINATION_NOT_MOUNTED, (IMG,), id="not-mounted-not-searched"),
])
def test_the_fix_names_the_paths_the_reason_names(text: str, evidence: Evidence, cause: Cause,
                                                  named: tuple[str, ...]) -> None:
    found = diagnose(text, evidence)
    assert found.cause is cause, found.text()
    assert found.reason in found.evidence_lines, found.text()
    for path in named:
        assert _names(found.reason, path), (path, found.text())
        assert _names(found.fix, path), (path, found.text())


def test_root_squash_fix_chowns_on_the_server_the_file_root_was_refused() -> None:
    # the reason: the file behind the link, on which mount from which export; the fix: that file as the server names it
    found = diagnose(GATE_OPEN, _gate_ev(SQUASHED, root_read=False))
    assert found.cause is Cause.NFS_ROOT_SQUASH, found.text()
    assert found.reason.startswith(f"{SQUASHED} is on /srv/shared (nfs4 from nfs:/srv/export) "), found.text()
    assert "chown 64055:64055 nfs:/srv/export/g/root-owned.raw " in found.fix, found.text()


def test_root_squash_told_by_the_export_options_names_the_file_behind_the_link() -> None:
    found = diagnose(GATE_OPEN, _gate_ev(SQUASHED, export_options=("rw", "root_squash")))
    assert found.cause is Cause.NFS_ROOT_SQUASH, found.text()
    assert found.reason == f"{SQUASHED} is on nfs4 exported with root_squash", found.text()
    assert "chown 64055:64055 nfs:/srv/export/g/root-owned.raw " in found.fix, found.text()
    assert not _names(found.reason, GATE) and not _names(found.fix, GATE), found.text()


def test_read_only_export_fix_names_the_export_and_the_mount_the_file_is_on() -> None:
    walk = _gate_walk("/srv/shared/g/disk.raw", read=True, write=False, mode="644", owner="64055:64055")
    by_table = diagnose(GATE_OPEN, _gate_ev("/srv/shared/g/disk.raw", path_checks=walk, root_read=True,
                                            export_options=("ro", "sync", "root_squash")))
    assert by_table.cause is Cause.READ_ONLY_STORAGE and by_table.reason == "the export is ro", by_table.text()
    assert "/srv/shared/g/disk.raw is on /srv/shared (nfs4 from nfs:/srv/export" in by_table.text()
    assert "export and mount nfs:/srv/export (at /srv/shared on h2) read-write" in by_table.fix, by_table.text()
    # no export table: the qemu user owns the file and may write it by its mode, yet the server refuses
    by_owner = diagnose(GATE_OPEN, _gate_ev("/srv/shared/g/disk.raw", path_checks=walk, root_read=True))
    assert by_owner.cause is Cause.READ_ONLY_STORAGE, by_owner.text()
    assert by_owner.reason.startswith("/srv/shared/g/disk.raw is mode 644 owner 64055:64055 "), by_owner.text()
    assert "export and mount nfs:/srv/export (at /srv/shared on h2) read-write" in by_owner.fix, by_owner.text()


def test_selinux_label_fix_relabels_the_image_the_avc_names_not_a_blocked_parent() -> None:
    found = diagnose(QEMU_OPEN, _ev(avc=(_avc("system_u:object_r:default_t:s0"),), virt_use_nfs=True,
                                    path_checks=_walk(blocked="/srv")))
    assert found.cause is Cause.SELINUX_LABEL, found.text()
    assert found.reason == ("AVC denial of qemu (svirt_t) { read }, target context "
                            "system_u:object_r:default_t:s0"), found.text()
    assert "avc:  denied  { read } for  pid=48211 comm=\"qemu-kvm\" name=\"disk.raw\"" in found.text()
    assert f"restorecon -Rv /srv/shared/g, or chcon -t svirt_image_t {IMG};" in found.fix, found.text()


def test_selinux_virt_use_nfs_fix_is_for_the_host_the_denial_is_on() -> None:
    found = diagnose(QEMU_OPEN, _ev(avc=(_avc("system_u:object_r:nfs_t:s0"),), virt_use_nfs=False))
    assert found.cause is Cause.SELINUX_VIRT_USE_NFS, found.text()
    assert found.reason == "AVC denial of qemu (svirt_t) { read } on nfs_t with virt_use_nfs off", found.text()
    assert found.fix == "setsebool -P virt_use_nfs 1 (on h2)"


def test_an_unexplained_denial_is_checked_on_the_image_the_message_names() -> None:
    found = diagnose(QEMU_OPEN, _ev(path_checks=_walk()))
    assert found.cause is Cause.PERMISSION_DENIED_UNEXPLAINED and found.reason == "", found.text()
    assert found.fix.startswith(f"check {IMG} as the qemu user on h2: ")
    assert found.fix.endswith(f"test -r {IMG}; ausearch -m avc")


def test_unsafe_migration_names_storage_is_shared_among_its_fixes() -> None:
    """A site whose storage is shared but of a kind libvirt does not know is told which option says so."""
    found = diagnose("Unsafe migration: Migration without shared storage is unsafe")
    assert found.cause is Cause.STORAGE_NOT_SHARED
    assert "--storage-is-shared" in found.fix and "--copy-storage-all" in found.fix
