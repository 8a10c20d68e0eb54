"""The SELinux diagnosis on what real enforcing hosts printed (tests/data/selinux/debian12-captured/).

Two denial shapes exist and the diagnosis must know both:
* Debian's stock policy confines libvirtd too, so `virt_use_nfs` off denies
  libvirtd itself (virtd_t, { getattr } on nfs_t) and libvirt says
  `unable to stat: PATH: Permission denied`;
* where libvirtd is effectively unconfined (Fedora/RHEL; reproduced on the
  same host with a module letting virtd_t use nfs_t: qemu-side-variant/),
  QEMU (svirt_t) is denied at open: `Could not open 'PATH': Permission denied`.
Each case replays the captures' own output for the commands the diagnosis
runs: getsebool, the AVC search and the start error are verbatim.
"""

from __future__ import annotations

import pytest

from tests.replay import ReplayHost, captured, script_key
from virtmig.diagnose import Cause, diagnose, gather_evidence
from virtmig.diagnose.evidence import AVC_SCRIPT, parse_getenforce
from virtmig.host import CommandResult

IMAGE = "/mnt/nfs/test.img"
STOCK, QEMU_SIDE = "debian12-captured", "debian12-captured/qemu-side-variant"


def _file(variant: str, name: str) -> tuple[str, tuple[int, str, str]]:
    return captured("selinux", *variant.split("/"), name)


def libvirt_message(variant: str) -> str:
    """libvirt's error as virsh printed it: the last `error: ` line of the failed start."""
    command, (rc, out, _) = _file(variant, "virsh_start_--paused.before.txt")
    assert command.endswith("start --paused nfstest") and rc == 1
    return [line for line in out.splitlines() if line.startswith("error: ")][-1].removeprefix("error: ")


def enforcing_host(variant: str, when: str = "before") -> ReplayHost:
    """The captured host as the diagnosis asks it: getenforce, getsebool, the AVC search."""
    _, (_, status, _) = _file(STOCK, "sestatus.txt")  # one host for both phases; getenforce's own line
    getenforce = next(line for line in status.splitlines() if line in ("Enforcing", "Permissive", "Disabled"))
    command, getsebool = _file(variant, f"getsebool_virt_use_nfs.{when}.txt")
    assert command == "getsebool virt_use_nfs"
    command, avc = _file(variant, f"ausearch_-m_avc.{when}.txt")
    assert command.startswith("ausearch --input-logs -m avc")
    return ReplayHost("k1", {"getenforce": (0, getenforce + "\n", ""), "getsebool virt_use_nfs": getsebool,
                             script_key(AVC_SCRIPT): avc})


@pytest.mark.parametrize(("variant", "message", "denied"), [
    (STOCK, f"unable to stat: {IMAGE}: Permission denied", "libvirtd (virtd_t) { getattr }"),
    (QEMU_SIDE, f"Could not open '{IMAGE}': Permission denied", "qemu (svirt_t) { read }"),
])
def test_virt_use_nfs_off_is_named_for_both_denial_shapes(variant: str, message: str, denied: str) -> None:
    text = libvirt_message(variant)
    assert message in text
    evidence = gather_evidence(enforcing_host(variant), IMAGE)
    assert evidence.selinux_enforcing and evidence.virt_use_nfs is False
    found = diagnose(text, evidence)
    assert found.cause is Cause.SELINUX_VIRT_USE_NFS, found.text()
    assert found.reason == f"AVC denial of {denied} on nfs_t with virt_use_nfs off", found.text()
    assert found.fix == "setsebool -P virt_use_nfs 1 (on k1)", found.text()


def test_the_stock_shape_names_the_image_from_libvirts_stat_message() -> None:
    """Without the path the AVC could not be matched to the image (QEMU's own denials of sysfs are there too)."""
    found = diagnose(libvirt_message(STOCK), gather_evidence(enforcing_host(STOCK), IMAGE))
    assert any(f"path=\"{IMAGE}\"" in line or IMAGE in line for line in found.evidence_lines), found.text()


def test_getenforce_is_what_sestatus_printed() -> None:
    _, (_, status, _) = _file(STOCK, "sestatus.txt")
    assert "Current mode:                   enforcing" in status
    assert parse_getenforce(CommandResult(0, "Enforcing\n", "", "getenforce", "k1")) == "Enforcing"


def test_after_setsebool_the_boolean_reads_on() -> None:
    command, (rc, out, _) = _file(STOCK, "setsebool_virt_use_nfs_1.txt")
    assert (command, rc) == ("setsebool virt_use_nfs 1", 0)
    evidence = gather_evidence(enforcing_host(STOCK, "after"), IMAGE)
    assert evidence.virt_use_nfs is True
    _, (rc, out, _) = _file(STOCK, "virsh_start_--paused.after.txt")
    assert rc == 0 and "Domain 'nfstest' started" in out


def test_the_avc_search_reads_the_logs_even_without_a_terminal() -> None:
    """Over ssh ausearch has no terminal, reads stdin instead of the logs and finds nothing (seen on the host)."""
    command, _ = _file(STOCK, "ausearch_-m_avc.before.txt")
    assert command.split("|")[0].split()[:2] == ["ausearch", "--input-logs"]
    assert "ausearch --input-logs -m avc -ts recent" in AVC_SCRIPT
