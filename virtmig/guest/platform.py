"""What the guest runs as on this pair: virtualisation type, CPU, memory, chosen from both hosts, with the reason.

A KVM pair certified with TCG, or with a CPU only one host can run, certifies
nothing: --virt-type auto takes KVM when both hosts' domain capabilities offer
it, and --guest-cpu baseline asks libvirt for the CPU both hosts can run
(virConnectBaselineHypervisorCPU over each host's own CPU).  Each choice keeps
its reason, which the report prints beside it.

The decisions (`choose_virt_type`, `choose_cpu`, `check_free_memory`) take
facts, not connections, so they are tested without hosts; `resolve` gathers
the facts through libvirt.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import libvirt

from virtmig.config import GuestShape
from virtmig.guest.domain_xml import CpuMode, VirtType

ARCH = "x86_64"
#: The guest CPU of a TCG run asked for a baseline: emulated in full by QEMU on any x86 host.
TCG_BASELINE = "qemu64"


class PlatformError(RuntimeError):
    """The pair cannot run the guest as asked; the message names the host and the fix."""


@dataclass(frozen=True)
class HostOffer:
    """One host's facts for the choice: KVM offered or not (and libvirt's word), its CPU, its free memory."""

    name: str
    kvm: bool
    kvm_detail: str
    cpu_xml: str
    cpu_model: str
    free_mib: int


@dataclass(frozen=True)
class CpuChoice:
    """The guest's <cpu>: mode, and for custom its model and features ((policy, name) pairs)."""

    mode: CpuMode
    model: str | None = None
    features: tuple[tuple[str, str], ...] = ()

    def xml(self) -> str:
        """The <cpu> element (for compareHypervisorCPU and the report)."""
        if self.mode != "custom":
            return f"<cpu mode='{self.mode}'/>"
        feats = "".join(f"<feature policy='{p}' name='{n}'/>" for p, n in self.features)
        return f"<cpu mode='custom' match='exact'><model fallback='forbid'>{self.model}</model>{feats}</cpu>"

    @property
    def label(self) -> str:
        if self.mode != "custom":
            return self.mode
        return f"{self.model}" + (f" (+{len(self.features)} feature policies)" if self.features else "")


@dataclass(frozen=True)
class GuestPlatform:
    """The resolved shape: what the guest's XML says, and why each choice was made."""

    virt_type: VirtType
    virt_type_why: str
    cpu: CpuChoice
    cpu_why: str
    memory_mib: int
    vcpus: int

    def to_dict(self) -> dict[str, Any]:
        return {"virt_type": self.virt_type, "virt_type_why": self.virt_type_why, "cpu": self.cpu.label,
                "cpu_xml": self.cpu.xml(), "cpu_why": self.cpu_why, "memory_mib": self.memory_mib,
                "vcpus": self.vcpus}


def choose_virt_type(asked: str, offers: Sequence[HostOffer]) -> tuple[VirtType, str]:
    """kvm, qemu or auto against both hosts' offers: the type and why; PlatformError for kvm a host lacks."""
    lacking = [o for o in offers if not o.kvm]
    if asked == "qemu":
        return "qemu", "--virt-type qemu: TCG, as asked"
    if asked == "kvm":
        if lacking:
            o = lacking[0]
            raise PlatformError(f"--virt-type kvm: {o.name} offers no KVM ({o.kvm_detail}); fix: load kvm_intel or "
                                f"kvm_amd and let libvirt use /dev/kvm on {o.name}, or run with --virt-type auto")
        return "kvm", "--virt-type kvm: both hosts offer KVM"
    if lacking:
        o = lacking[0]
        return "qemu", f"auto: {o.name} offers no KVM ({o.kvm_detail}), so TCG on both"
    return "kvm", "auto: both hosts' domain capabilities offer KVM"


def parse_cpu(xml_text: str) -> CpuChoice:
    """A custom <cpu> as libvirt's baseline returns it: model and feature policies."""
    root = ET.fromstring(xml_text)
    model = root.findtext("model")
    if not model:
        raise PlatformError(f"libvirt's baseline CPU has no model: {xml_text.strip()}")
    feats = tuple((f.get("policy", "require"), f.get("name", "")) for f in root.findall("feature"))
    return CpuChoice("custom", model.strip(), feats)


def choose_cpu(asked: str, virt_type: VirtType, offers: Sequence[HostOffer], baseline_xml: str | None) -> tuple[
        CpuChoice, str]:
    """The guest's CPU for --guest-cpu and why; *baseline_xml* is libvirt's baseline over both hosts' CPUs."""
    if asked == "host-model":
        return CpuChoice("host-model"), ("--guest-cpu host-model: the source host's expansion, which the "
                                         "destination must be able to run (preflight's cpu check)")
    if asked != "baseline":
        return CpuChoice("custom", asked), f"--guest-cpu {asked}: as asked"
    if virt_type == "qemu":
        return CpuChoice("custom", TCG_BASELINE), (
            f"baseline under TCG: QEMU emulates the CPU, so the hosts' CPUs do not limit it; {TCG_BASELINE}, "
            "which TCG emulates on any host (libvirt's baseline over the hosts' CPUs lists features TCG lacks)")
    if baseline_xml is None:
        raise PlatformError("--guest-cpu baseline: libvirt computed no baseline")
    hosts = ", ".join(f"{o.name}: {o.cpu_model}" for o in offers)
    return parse_cpu(baseline_xml), f"baseline: libvirt's baseline for {virt_type} over both hosts' CPUs ({hosts})"


def check_free_memory(memory_mib: int, offers: Sequence[HostOffer]) -> None:
    """PlatformError naming the first host with less free memory than the guest asks."""
    for o in offers:
        if memory_mib > o.free_mib:
            raise PlatformError(f"--guest-memory {memory_mib} MiB: {o.name} has {o.free_mib} MiB free; fix: a "
                                f"smaller --guest-memory, or free memory on {o.name}")


def _cpu_of(caps_xml: str) -> tuple[str, str]:
    """The host's CPU as a <cpu> definition baseline takes, and its model name."""
    cpu = ET.fromstring(caps_xml).find("host/cpu")
    if cpu is None:
        return "<cpu/>", "unknown"
    return ET.tostring(cpu, encoding="unicode"), (cpu.findtext("model") or "unknown").strip()


def gather_offer(name: str, conn: libvirt.virConnect) -> HostOffer:
    """One host's facts, through its libvirt connection (domain capabilities, capabilities, memory stats)."""
    try:
        conn.getDomainCapabilities(None, ARCH, None, "kvm", 0)
        kvm, detail = True, "offered"
    except libvirt.libvirtError as exc:
        kvm, detail = False, (exc.get_error_message() or str(exc)).strip()
    cpu_xml, model = _cpu_of(conn.getCapabilities())
    return HostOffer(name, kvm, detail, cpu_xml, model, available_mib(conn.getMemoryStats(-1, 0)))


def available_mib(stats: dict[str, int]) -> int:
    """Memory a new guest can have without swapping, from virNodeGetMemoryStats (KiB): free plus page cache.

    Free alone undercounts a host that has read a lot of files: the kernel
    gives cache back to a guest that needs it.
    """
    return (stats.get("free", 0) + stats.get("buffers", 0) + stats.get("cached", 0)) // 1024


def resolve(shape: GuestShape, src: tuple[str, libvirt.virConnect], dst: tuple[str, libvirt.virConnect]
            ) -> GuestPlatform:
    """The guest's platform on this pair, or PlatformError naming the host and the fix."""
    offers = [gather_offer(name, conn) for name, conn in (src, dst)]
    virt_type, vt_why = choose_virt_type(shape.virt_type, offers)
    baseline = None
    if shape.cpu == "baseline" and virt_type == "kvm":
        try:
            baseline = src[1].baselineHypervisorCPU(None, ARCH, None, virt_type, [o.cpu_xml for o in offers], 0)
        except libvirt.libvirtError as exc:
            raise PlatformError(f"--guest-cpu baseline: libvirt on {src[0]} could not compute it "
                                f"({exc.get_error_message()}); fix: name a model both hosts run with "
                                "--guest-cpu MODEL") from exc
    cpu, cpu_why = choose_cpu(shape.cpu, virt_type, offers, baseline)
    check_free_memory(shape.memory_mib, offers)
    return GuestPlatform(virt_type, vt_why, cpu, cpu_why, shape.memory_mib, shape.vcpus)
