"""The SELinux evidence path, replayed from an enforcing host's command output.

The lab has no SELinux, so these recorded outputs (tests/data/selinux/) are
the only place the enforcing branch runs: getenforce, getsebool, ausearch's
AVC records, the mount's context, the path walk, and QEMU's error.
"""

from __future__ import annotations

from tests.replay import ReplayHost, handwritten_rhel9, script_key
from virtmig.diagnose import Cause, diagnose, gather_evidence
from virtmig.diagnose.evidence import AVC_SCRIPT, PATH_CHECK_SCRIPT, avc_field, parse_avc
from virtmig.diagnose.selinux import context_type, file_context, selinux_state

DISK = "/mnt/nfs/virtmig-guest/disk.raw"


def _rhel(virt_use_nfs: str = "off", avc: str = "ausearch-avc-nfs_t.out") -> ReplayHost:
    avc_answer = (0, handwritten_rhel9(avc), "") if avc else (1, "", handwritten_rhel9("ausearch-none.err"))
    return ReplayHost("rhel9-a", {
        "cat /etc/libvirt/qemu.conf": (0, handwritten_rhel9("qemu.conf"), ""),
        "getent passwd libvirt-qemu": (2, "", ""),
        "getent passwd qemu": (0, handwritten_rhel9("getent-passwd-qemu.out"), ""),
        "getenforce": (0, handwritten_rhel9("getenforce.out"), ""),
        "getsebool virt_use_nfs": (0, handwritten_rhel9(f"getsebool-virt_use_nfs-{virt_use_nfs}.out"), ""),
        script_key(AVC_SCRIPT): avc_answer,
        script_key(PATH_CHECK_SCRIPT, ["qemu", DISK]): (0, handwritten_rhel9("path-check.out"), ""),
        "cat /proc/self/mountinfo": (0, handwritten_rhel9("mountinfo.out"), ""),
        "stat -c %C -- /mnt/nfs": (0, handwritten_rhel9("stat-C-mount.out"), ""),
    })


def test_state_of_an_enforcing_host() -> None:
    state = selinux_state(_rhel())
    assert (state.mode, state.enforcing, state.virt_use_nfs) == ("Enforcing", True, False)
    assert state.unavailable_reason() is None


def test_absent_and_disabled_selinux_give_the_skip_reason() -> None:
    absent = selinux_state(ReplayHost("h1", {}))
    assert absent.mode is None and "absent on h1" in (absent.unavailable_reason() or "")
    disabled = selinux_state(ReplayHost("h1", {"getenforce": (0, "Disabled\n", "")}))
    assert disabled.unavailable_reason() == "SELinux is disabled on h1 (getenforce: Disabled)"
    assert disabled.virt_use_nfs is None


def test_mount_context_is_nfs_t() -> None:
    assert context_type(file_context(_rhel(), "/mnt/nfs")) == "nfs_t"
    assert context_type(handwritten_rhel9("ls-Z.out").split()[4]) == "nfs_t"


def test_avc_records_are_parsed_field_by_field() -> None:
    records = parse_avc(handwritten_rhel9("ausearch-avc-nfs_t.out"))
    assert len(records) == 2
    assert avc_field(records[0], "comm") == "qemu-kvm"
    assert avc_field(records[0], "name") == "disk.raw"
    assert avc_field(records[0], "tcontext") == "system_u:object_r:nfs_t:s0"
    assert avc_field(records[0], "permissive") == "0"


def test_virt_use_nfs_off_is_diagnosed_as_selinux_with_the_setsebool_fix() -> None:
    evidence = gather_evidence(_rhel(), DISK)
    assert evidence.qemu_user == "qemu" and evidence.selinux_enforcing and len(evidence.avc) == 2
    found = diagnose(handwritten_rhel9("start-error.txt"), evidence)
    assert found.cause is Cause.SELINUX_VIRT_USE_NFS
    assert "setsebool -P virt_use_nfs 1" in found.fix
    assert any("nfs_t" in line for line in found.evidence_lines)


def test_same_text_without_an_avc_is_not_blamed_on_selinux() -> None:
    # DAC and SELinux print the same text: with no AVC and a readable image,
    # the diagnosis must not say SELinux.
    found = diagnose(handwritten_rhel9("start-error.txt"), gather_evidence(_rhel(avc=""), DISK))
    assert found.cause is Cause.PERMISSION_DENIED_UNEXPLAINED


def test_an_avc_on_another_type_is_a_label_problem() -> None:
    record = handwritten_rhel9("ausearch-avc-nfs_t.out").replace(":nfs_t:", ":default_t:")
    host = _rhel(virt_use_nfs="on")
    host.recorded[script_key(AVC_SCRIPT)] = (0, record, "")
    found = diagnose(handwritten_rhel9("start-error.txt"), gather_evidence(host, DISK))
    assert found.cause is Cause.SELINUX_LABEL and "restorecon" in found.fix
