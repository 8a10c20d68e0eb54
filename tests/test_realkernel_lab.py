"""The SELinux suite run for real, as an operator runs it, against the lab's real-kernel host k1.

k1 is a QEMU/TCG VM with Debian 12's own kernel, SELinux enforcing and
kernel NFS (virtmig.lab.realkernel).  The inner runs name the hosts (--src k1
--dst h1: the suite acts on the source only) and judge by the JUnit file they
write: every row ran and passed, none skipped.  The whole suite runs with the
harness provisioning the storage on k1 as a kernel NFS server (--nfs-server
k1: its real /etc/exports, `exportfs -ra`, a kernel `mount -t nfs` on k1 and
the lab's client on h1); the QEMU-side denial runs on storage taken as it is
(--no-provision: k1's own kernel NFS mount of its own export, /mnt/nfs).  A
machine that cannot build k1's image (no Debian archive reachable) skips,
saying so.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import pytest

from fixtures.report import DIAGNOSIS_PROPERTY
from tests.inner_run import output_tail, run_suite
from virtmig.lab import realkernel, realkernel_files, realkernel_policy
from virtmig.lab.topology import GUEST_BRIDGE, H1, H2, NFS, SSH_CONFIG, LabNode
from virtmig.sshhost import SshHost
from virtmig.storage import exports, shared_check

pytestmark = [pytest.mark.lab, pytest.mark.realkernel]

#: A guest address of its own on the lab's network (the default guest's is .100, test_lab_site's .102).
GUEST_IP = "198.18.0.103/24"
#: Where the suite's whole run has the harness provision an export on k1 (kernel NFS) and mount it.
PROVISIONED_EXPORT = "/srv/vm-provisioned"
PROVISIONED_MOUNT = "/mnt/nfs-provisioned"
#: The export the permission cases have the harness provision on k1.
PERMISSIONS_EXPORT = "/srv/vm-permissions"
#: The rows the suite must have run and passed on k1.
EXPECTED = {
    "test_getenforce", "test_virt_use_nfs_is_readable", "test_context_of_the_mount",
    "test_virt_use_nfs_off_denies_start_and_is_diagnosed", "test_virt_use_nfs_on_starts_the_guest",
    "test_wrong_label_on_a_local_image_is_denied_diagnosed_and_fixed",
}
#: What a run may change on k1 and must put back: the booleans now, the persistent ones, images, domains, modules,
#: /etc/exports and NFS mounts.
STATE_SCRIPT = f"getsebool virt_use_nfs {realkernel_policy.QEMU_SIDE_BOOLEAN}; " \
               "cat /var/lib/selinux/default/active/booleans.local; ls /var/lib/libvirt/images; " \
               "virsh -c qemu:///system list --all --name; semodule -l | grep ^virtmig; " \
               "cat /etc/exports; findmnt -n -o TARGET -t nfs,nfs4"
#: Who the diagnosis says was denied, per shape (its `reason`).
STOCK_DENIED = "AVC denial of libvirtd (virtd_t) { getattr } on nfs_t with virt_use_nfs off"
QEMU_SIDE_DENIED = "AVC denial of qemu (svirt_t) { read } on nfs_t with virt_use_nfs off"


def _k1_state(k1: SshHost) -> str:
    return k1.run_script(STATE_SCRIPT).stdout


def _diagnoses(junit: Path) -> dict[str, str]:
    """Test name -> the diagnosis its denial got (the suite's DIAGNOSIS_PROPERTY), from the JUnit file."""
    return {case.get("name", ""): prop.get("value", "") for case in ET.parse(junit).getroot().iter("testcase")
            for prop in case.iter("property") if prop.get("name") == DIAGNOSIS_PROPERTY}


def _outcomes(junit: Path) -> dict[str, str]:
    """Test name -> passed, failed, error or skipped, from the inner run's JUnit file."""
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name", "")] = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
    return outcomes


def test_the_selinux_suite_runs_and_passes_on_the_real_kernel_host(real_kernel_host: str, k1: SshHost,
                                                                   tmp_path: Path) -> None:
    """The whole suite on k1 with the harness provisioning the storage on k1 as a kernel NFS server
    (--nfs-server k1: its real /etc/exports, `exportfs -ra`, a kernel `mount -t nfs` on k1): every row passes,
    the stock denial is diagnosed, and k1's /etc/exports, mounts, booleans and domains are as they were."""
    before = _k1_state(k1)
    exports_before = k1.read_text("/etc/exports")
    junit = tmp_path / "junit.xml"
    proc, _html = run_suite(
        tmp_path, "suites/selinux", "--src", real_kernel_host, "--dst", H1.name, "--ssh-config", str(SSH_CONFIG),
        "--nfs-server", real_kernel_host, "--export", PROVISIONED_EXPORT, "--mount-point", PROVISIONED_MOUNT,
        "--guest-network", f"bridge:{realkernel_files.VM_BRIDGE}", "--guest-ip", GUEST_IP,
        f"--junitxml={junit}", timeout=600,
    )
    # measured, for the VM's memory size (printed only)
    print(f"k1 memory after the run (MEMORY_MIB={realkernel.MEMORY_MIB}):\n" + k1.run("free", "-m").stdout)
    exports_after = k1.read_text("/etc/exports")
    mount_left = k1.run("mountpoint", "-q", PROVISIONED_MOUNT, check=False).ok
    (tmp_path / "inner-output.txt").write_text(proc.stdout + proc.stderr)
    outcomes = _outcomes(junit)
    assert outcomes == dict.fromkeys(EXPECTED, "passed"), \
        f"{outcomes}; the inner run's whole output: {tmp_path / 'inner-output.txt'}\n{output_tail(proc)}"
    assert proc.returncode == 0, output_tail(proc)
    assert f"reason: {STOCK_DENIED}" in _diagnoses(junit)["test_virt_use_nfs_off_denies_start_and_is_diagnosed"]
    assert exports_after == exports_before, "k1's /etc/exports not put back byte for byte"
    assert not mount_left, "the run's mount was left"
    assert _k1_state(k1) == before, "the run left k1 changed (boolean, persistent booleans, images or domains)"


def test_the_qemu_side_denial_is_diagnosed_on_the_real_kernel_host(real_kernel_host: str, k1: SshHost,
                                                                   tmp_path: Path) -> None:
    """The other denial shape, for real: with libvirtd allowed NFS files (as on Fedora/RHEL; k1's boolean
    virtmig_qemu_side turns on qemu-side-variant.cil's rules) QEMU is the process denied, at open ('Could not
    open'), and the suite's case still names SELinux and the boolean."""
    before = _k1_state(k1)
    k1.run("setsebool", realkernel_policy.QEMU_SIDE_BOOLEAN, "1")  # not -P: the persistent value stays off
    try:
        junit = tmp_path / "junit.xml"
        proc, _html = run_suite(
            tmp_path, "suites/selinux", "-k", "virt_use_nfs_off",
            "--src", real_kernel_host, "--dst", H1.name, "--ssh-config", str(SSH_CONFIG),
            "--no-provision", "--mount-point", realkernel_files.NFS_MOUNT,
            "--guest-network", f"bridge:{realkernel_files.VM_BRIDGE}", "--guest-ip", GUEST_IP,
            f"--junitxml={junit}", timeout=600,
        )
        (tmp_path / "inner-output.txt").write_text(proc.stdout + proc.stderr)
        case = "test_virt_use_nfs_off_denies_start_and_is_diagnosed"
        assert _outcomes(junit) == {case: "passed"}, output_tail(proc)
        diagnosis = _diagnoses(junit)[case]
        assert f"reason: {QEMU_SIDE_DENIED}" in diagnosis and "Could not open" in diagnosis, diagnosis
    finally:
        k1.run("setsebool", realkernel_policy.QEMU_SIDE_BOOLEAN, "0")
    assert _k1_state(k1) == before


@pytest.mark.parametrize("version", ["3", "4.2"])
@pytest.mark.parametrize("server", [NFS, realkernel.K1], ids=lambda node: node.name)
def test_k1s_kernel_client_mounts_nfs(k1: SshHost, server: LabNode, version: str) -> None:
    """`mount -t nfs -o vers=V` with k1's kernel client, of the lab's ganesha server and of k1's own kernel
    server, through the harness's own export and mount steps; the shared-storage check reads the real fstype
    and version, and a file the qemu user writes there is the qemu user's on the server (no squash of a
    non-root user)."""
    path = PurePosixPath(f"/srv/virtmig-client-v{version.replace('.', '')}")
    mount_point = PurePosixPath(f"/mnt/virtmig-client-v{version.replace('.', '')}")
    # k1's own server is also reached as localhost (its /mnt/nfs): NFSv4.1+ session trunking sees one server
    # and sends k1-4.2's requests down that session from 127.0.0.1 (findmnt: addr=127.0.0.1), which an export
    # to k1's address alone refuses ('No such file or directory'); hence localhost among its clients.
    clients = (realkernel.K1.ip,) if server is NFS else (realkernel.K1.ip, "localhost")
    spec = exports.ExportSpec(path, clients, "rw,sync,no_subtree_check,root_squash")
    with contextlib.ExitStack() as stack:
        nfs_server = k1 if server is realkernel.K1 else stack.enter_context(SshHost(server.name, SSH_CONFIG))
        qemu_ids = tuple(int(k1.run("id", "-" + flag, "libvirt-qemu").stdout) for flag in ("u", "g"))
        before = nfs_server.read_text("/etc/exports")
        handle = exports.provision_export(nfs_server, spec, (qemu_ids[0], qemu_ids[1]), "work")
        try:
            # NFSv3's MOUNT call over TCP: over UDP ganesha 6.5 (Debian 13) logs 'svc_dg_rendezvous: Bad message
            # sa_family is 0xffff', the mount fails and ganesha's next export reload never settles (seen
            # 2026-12-02; ganesha 4.3 answers it).  The kernel server answers either.
            options = (f"vers={version}",) + (("mountproto=tcp",) if version == "3" else ())
            mounted = exports.mount_nfs(k1, f"{server.ip}:{path}", mount_point, options)
            assert mounted is not None
            try:
                facts = shared_check.gather(k1, mount_point, None, "libvirt-qemu")
                assert facts.mount is not None
                assert (facts.mount.fstype, facts.mount.nfs_version) == \
                    ("nfs" if version == "3" else "nfs4", version), facts.mount
                k1.run("runuser", "-u", "libvirt-qemu", "--", "touch", f"{mount_point}/work/by-qemu")
                owner = nfs_server.run("stat", "-c", "%u:%g", f"{path}/work/by-qemu").stdout.strip()
                assert owner == f"{qemu_ids[0]}:{qemu_ids[1]}"
            finally:
                exports.unmount(k1, mounted)
        finally:
            exports.restore_exports(nfs_server, handle)
        assert nfs_server.read_text("/etc/exports") == before


def test_permission_cases_against_k1_as_kernel_nfs_server(real_kernel_host: str, k1: SshHost,
                                                          tmp_path: Path) -> None:
    """root_squash and a read-only export with k1's kernel nfsd as the server (h1 and h2 mount it with the
    lab's client): the same real failures and diagnoses as against ganesha, and k1's /etc/exports put back."""
    exports_before = k1.read_text("/etc/exports")
    junit = tmp_path / "junit.xml"
    proc, _html = run_suite(
        tmp_path, "suites/permissions", "-k", "root_squash or read_only",
        "--src", H1.name, "--dst", H2.name, "--ssh-config", str(SSH_CONFIG), "--nfs-server", real_kernel_host,
        "--export", PERMISSIONS_EXPORT, "--storage-is-shared",
        "--guest-network", f"bridge:{GUEST_BRIDGE}", "--guest-ip", GUEST_IP,
        f"--junitxml={junit}", timeout=900,
    )
    (tmp_path / "inner-output.txt").write_text(proc.stdout + proc.stderr)
    outcomes = _outcomes(junit)
    assert outcomes and set(outcomes.values()) == {"passed"}, \
        f"{outcomes}; the inner run's whole output: {tmp_path / 'inner-output.txt'}\n{output_tail(proc)}"
    assert {"test_root_squash_refuses_libvirts_chown", "test_read_only_export_on_destination"} <= \
        {name.split("[")[0] for name in outcomes}
    assert k1.read_text("/etc/exports") == exports_before
