"""The guest's platform: --virt-type, --guest-cpu, --guest-memory, --guest-vcpus, checked and resolved from facts."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from virtmig.config import GuestShape
from virtmig.guest.domain_xml import DomainSpec, FileDisk, render_domain, validate_domain_xml
from virtmig.guest.platform import (
    CpuChoice,
    HostOffer,
    PlatformError,
    available_mib,
    check_free_memory,
    choose_cpu,
    choose_virt_type,
    parse_cpu,
)
from virtmig.guestconfig import GuestNetwork, check_guest_memory, check_guest_vcpus, parse_guest_cpu, parse_virt_type
from virtmig.option_values import ConfigError

pytest_plugins = ["pytester"]

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
KVM = HostOffer("h1", True, "offered", "<cpu/>", "EPYC-Rome", 4096)
KVM2 = HostOffer("h2", True, "offered", "<cpu/>", "EPYC-Milan", 2048)
TCG_ONLY = HostOffer("h2", False, "unsupported configuration: KVM is not supported on this host", "<cpu/>",
                     "EPYC-Milan", 2048)
#: What libvirt 9.0's baselineHypervisorCPU returns (shape of its output; features cut down).
BASELINE = """<cpu mode='custom' match='exact'>
  <model fallback='forbid'>EPYC-Rome</model>
  <vendor>AMD</vendor>
  <feature policy='require' name='x2apic'/>
  <feature policy='disable' name='xsaves'/>
</cpu>
"""


def test_option_values() -> None:
    assert [parse_virt_type(v) for v in ("auto", "kvm", "qemu")] == ["auto", "kvm", "qemu"]
    assert [parse_guest_cpu(v) for v in ("baseline", "host-model", "EPYC-Rome", "qemu64")] == [
        "baseline", "host-model", "EPYC-Rome", "qemu64"]
    assert (check_guest_memory(1024), check_guest_vcpus(4)) == (1024, 4)
    for bad, call in (("xen", parse_virt_type), ("a b", parse_guest_cpu), ("-x", parse_guest_cpu)):
        with pytest.raises(ConfigError):
            call(bad)
    for mib in (64, 2 * 1024 * 1024):
        with pytest.raises(ConfigError, match="--guest-memory"):
            check_guest_memory(mib)
    with pytest.raises(ConfigError, match="--guest-vcpus"):
        check_guest_vcpus(0)


def test_given_values_override_a_sites_defaults() -> None:
    lab = GuestShape(cpu="qemu64")
    assert GuestShape("", "", 0, 0).over(lab) == lab
    assert GuestShape("kvm", "", 512, 0).over(lab) == GuestShape("kvm", "qemu64", 512, 1)


def test_auto_takes_kvm_only_when_both_hosts_offer_it() -> None:
    assert choose_virt_type("auto", [KVM, KVM2]) == ("kvm", "auto: both hosts' domain capabilities offer KVM")
    vt, why = choose_virt_type("auto", [KVM, TCG_ONLY])
    assert vt == "qemu" and why.startswith("auto: h2 offers no KVM (unsupported configuration")
    assert choose_virt_type("qemu", [KVM, KVM2])[0] == "qemu"


def test_kvm_where_a_host_has_none_names_the_host_and_the_fix() -> None:
    with pytest.raises(PlatformError, match=r"--virt-type kvm: h2 offers no KVM .*fix: load kvm_intel or kvm_amd"):
        choose_virt_type("kvm", [KVM, TCG_ONLY])


def test_baseline_keeps_libvirts_model_and_every_feature_policy() -> None:
    cpu, why = choose_cpu("baseline", "kvm", [KVM, KVM2], BASELINE)
    assert cpu == CpuChoice("custom", "EPYC-Rome", (("require", "x2apic"), ("disable", "xsaves")))
    assert why == "baseline: libvirt's baseline for kvm over both hosts' CPUs (h1: EPYC-Rome, h2: EPYC-Milan)"
    assert choose_cpu("host-model", "kvm", [KVM, KVM2], None)[0] == CpuChoice("host-model")
    assert choose_cpu("qemu64", "qemu", [KVM, KVM2], None) == (CpuChoice("custom", "qemu64"),
                                                                "--guest-cpu qemu64: as asked")
    with pytest.raises(PlatformError, match="no model"):
        parse_cpu("<cpu mode='custom'/>")


def test_baseline_under_tcg_is_qemu64_whatever_the_hosts_cpus() -> None:
    """Seen on the lab: libvirt's baseline for qemu over two EPYC hosts is kvm64 plus 71 feature policies,
    with which the guest failed to start under TCG; TCG emulates the CPU, so the hosts' CPUs do not bound it."""
    cpu, why = choose_cpu("baseline", "qemu", [KVM, TCG_ONLY], BASELINE)
    assert cpu == CpuChoice("custom", "qemu64") and why.startswith("baseline under TCG")


def test_memory_beyond_a_hosts_available_memory_names_the_host() -> None:
    check_free_memory(2048, [KVM, KVM2])
    with pytest.raises(PlatformError, match=r"--guest-memory 3000 MiB: h2 has 2048 MiB free; fix: a smaller"):
        check_free_memory(3000, [KVM, KVM2])
    assert available_mib({"total": 8 * 2**20, "free": 2**20, "buffers": 2**19, "cached": 2**19}) == 2048


def test_the_baseline_cpu_renders_and_validates() -> None:
    cpu = parse_cpu(BASELINE)
    spec = DomainSpec(name="g", uuid="6f1c1f4e-2b7a-4c1e-9a55-0d3c2b1a0f64", mac="52:54:00:12:00:64",
                      disk=FileDisk("/srv/g.raw"), network=GuestNetwork("bridge", "br0"), virt_type="kvm",
                      cpu_mode=cpu.mode, cpu_model=cpu.model, cpu_features=cpu.features, memory_mib=512, vcpus=2)
    xml = render_domain(spec, TEMPLATES)
    validate_domain_xml(xml)
    root = etree.fromstring(xml.encode())
    assert [(f.get("policy"), f.get("name")) for f in root.findall("cpu/feature")] == list(cpu.features)
    assert (root.get("type"), root.findtext("vcpu"), root.findtext("memory")) == ("kvm", "2", "512")
    with pytest.raises(ValueError, match="policy"):
        DomainSpec(name="g", uuid="6f1c1f4e-2b7a-4c1e-9a55-0d3c2b1a0f64", mac="52:54:00:12:00:64",
                   disk=FileDisk("/srv/g.raw"), network=GuestNetwork("bridge", "br0"),
                   cpu_features=(("maybe", "x2apic"),))


@pytest.mark.parametrize(("args", "message"), [
    (["--virt-type", "xen"], "not one of auto, kvm, qemu"),
    (["--guest-cpu", "two words"], "neither baseline"),
    (["--guest-memory", "64"], "must be between 128"),
    (["--guest-vcpus", "0"], "must be between 1"),
    (["--guest-gateway", "10.9.9.9"], "--guest-gateway 10.9.9.9: outside the guest's subnet 198.18.0.0/24"),
])
def test_bad_shape_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest("-p", "fixtures.options", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
