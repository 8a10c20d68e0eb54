"""The SELinux suite run for real, as an operator runs it, against the lab's real-kernel host k1.

k1 is a QEMU/TCG VM with Debian 12's own kernel, SELinux enforcing and
kernel NFS (virtmig.lab.realkernel); its disk for the guest is its own kernel
NFS mount of its own kernel export (/mnt/nfs).  The inner run names the hosts
(--src k1 --dst h1: the suite acts on the source only), takes the storage as
it is (--no-provision) and judges by the JUnit file it writes: every row ran
and passed, none skipped.  A second run has the harness provision the
storage on k1 as a kernel NFS server (--nfs-server k1: its real /etc/exports,
`exportfs -ra`, a kernel `mount -t nfs` on k1).  A machine that cannot build
k1's image (no Debian archive reachable) skips, saying so.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from tests.inner_run import output_tail, run_suite
from virtmig.lab import lifecycle, realkernel, realkernel_files
from virtmig.lab.realkernel_image import ImageUnavailable
from virtmig.lab.topology import H1, LAB_LOCK, SSH_CONFIG
from virtmig.sshhost import SshHost

pytestmark = [pytest.mark.lab, pytest.mark.realkernel]

#: A guest address of its own on the lab's network (the default guest's is .100, test_lab_site's .102).
GUEST_IP = "198.18.0.103/24"
#: Where the second test has the harness provision an export on k1 (kernel NFS) and mount it.
PROVISIONED_EXPORT = "/srv/vm-provisioned"
PROVISIONED_MOUNT = "/mnt/nfs-provisioned"
#: The rows the suite must have run and passed on k1.
EXPECTED = {
    "test_getenforce", "test_virt_use_nfs_is_readable", "test_context_of_the_mount",
    "test_virt_use_nfs_off_denies_start_and_is_diagnosed", "test_virt_use_nfs_on_starts_the_guest",
    "test_wrong_label_on_a_local_image_is_denied_diagnosed_and_fixed",
}
#: What the run may change on k1 and must put back: the boolean now, and the policy store's persistent values.
STATE_SCRIPT = "getsebool virt_use_nfs; cat /var/lib/selinux/default/active/booleans.local; " \
               "ls /var/lib/libvirt/images; virsh -c qemu:///system list --all --name"


@pytest.fixture(scope="module")
def real_kernel_host() -> Iterator[str]:
    """The lab up with k1 added, held for the module (the inner run, with --src/--dst, takes no lock)."""
    with FileLock(str(LAB_LOCK), timeout=3600):
        was_up = lifecycle.is_up()
        if not was_up:
            lifecycle.up()
        try:
            try:
                state = realkernel.up()
            except ImageUnavailable as exc:
                pytest.skip(f"no real-kernel host: {exc}")
            print(realkernel.timings(state))
            yield realkernel.K1.name
        finally:
            realkernel.stop()
            if not was_up:
                lifecycle.down()


def _k1_state() -> str:
    with SshHost(realkernel.K1.name, SSH_CONFIG) as host:
        return host.run_script(STATE_SCRIPT).stdout


def _outcomes(junit: Path) -> dict[str, str]:
    """Test name -> passed, failed, error or skipped, from the inner run's JUnit file."""
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name", "")] = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
    return outcomes


def test_the_selinux_suite_runs_and_passes_on_the_real_kernel_host(real_kernel_host: str, tmp_path: Path) -> None:
    before = _k1_state()
    junit = tmp_path / "junit.xml"
    proc, _html = run_suite(
        tmp_path, "suites/selinux", "--src", real_kernel_host, "--dst", H1.name, "--ssh-config", str(SSH_CONFIG),
        "--no-provision", "--mount-point", realkernel_files.NFS_MOUNT,
        "--guest-network", f"bridge:{realkernel_files.VM_BRIDGE}", "--guest-ip", GUEST_IP,
        f"--junitxml={junit}", timeout=600,
    )
    with SshHost(real_kernel_host, SSH_CONFIG) as host:  # measured, for the VM's memory size (printed only)
        print(f"k1 memory after the run (MEMORY_MIB={realkernel.MEMORY_MIB}):\n" + host.run("free", "-m").stdout)
    (tmp_path / "inner-output.txt").write_text(proc.stdout + proc.stderr)
    outcomes = _outcomes(junit)
    assert outcomes == dict.fromkeys(EXPECTED, "passed"), \
        f"{outcomes}; the inner run's whole output: {tmp_path / 'inner-output.txt'}\n{output_tail(proc)}"
    assert proc.returncode == 0, output_tail(proc)
    assert _k1_state() == before, "the run left k1 changed (boolean, persistent booleans, images or domains)"


def test_k1_as_a_kernel_nfs_server_is_provisioned_mounted_and_restored(real_kernel_host: str, tmp_path: Path) -> None:
    """--nfs-server k1: the harness's export goes into k1's real /etc/exports (exportfs -ra), k1 mounts it with
    its kernel client and h1 with the lab's; the mount is nfs_t under SELinux and the guest starts on it."""
    before = _k1_state()
    with SshHost(real_kernel_host, SSH_CONFIG) as host:
        exports_before = host.read_text("/etc/exports")
    junit = tmp_path / "junit.xml"
    proc, _html = run_suite(
        tmp_path, "suites/selinux", "-k", "context_of_the_mount or virt_use_nfs_on",
        "--src", real_kernel_host, "--dst", H1.name, "--ssh-config", str(SSH_CONFIG),
        "--nfs-server", real_kernel_host, "--export", PROVISIONED_EXPORT, "--mount-point", PROVISIONED_MOUNT,
        "--guest-network", f"bridge:{realkernel_files.VM_BRIDGE}", "--guest-ip", GUEST_IP,
        f"--junitxml={junit}", timeout=600,
    )
    (tmp_path / "inner-output.txt").write_text(proc.stdout + proc.stderr)
    outcomes = _outcomes(junit)
    assert outcomes == {"test_context_of_the_mount": "passed", "test_virt_use_nfs_on_starts_the_guest": "passed"}, \
        f"{outcomes}; the inner run's whole output: {tmp_path / 'inner-output.txt'}\n{output_tail(proc)}"
    with SshHost(real_kernel_host, SSH_CONFIG) as host:
        assert host.read_text("/etc/exports") == exports_before, "k1's /etc/exports not put back byte for byte"
        assert not host.run("mountpoint", "-q", PROVISIONED_MOUNT, check=False).ok, "the run's mount was left"
    assert _k1_state() == before
