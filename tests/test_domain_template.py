"""The guest template renders XML that libvirt's own schema and parser accept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jinja2
import libvirt
import pytest
from lxml import etree

from virtmig.guest.domain_xml import (
    DEFAULT_SCHEMA_DIR,
    DOMAIN_TEMPLATE,
    DomainSpec,
    DomainXMLError,
    FileDisk,
    KernelBoot,
    NfsDisk,
    render_domain,
    render_template,
    validate_domain_xml,
)
from virtmig.guestconfig import GuestNetwork

GUEST_MAC = "52:54:00:12:00:64"
BRIDGE = GuestNetwork("bridge", "br0")

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
UUID = "6f1c1f4e-2b7a-4c1e-9a55-0d3c2b1a0f64"

pytestmark = pytest.mark.skipif(
    not (DEFAULT_SCHEMA_DIR / "domain.rng").exists(), reason="libvirt schemas not installed"
)


def lab_spec(disk: FileDisk | NfsDisk) -> DomainSpec:
    return DomainSpec(
        name="virtmig-guest",
        uuid=UUID,
        mac=GUEST_MAC,
        disk=disk,
        network=BRIDGE,
        kernel=KernelBoot("/var/cache/virtmig/guest/vmlinuz", "/var/cache/virtmig/guest/initrd.img",
                          "console=ttyS0 quiet"),
        serial_log="/var/log/libvirt/qemu/virtmig-guest-serial.log",
    )


NFS_DISK = NfsDisk("198.18.0.10", "/srv/virtmig-export", "guest.raw", user="+64055", group="+64055")
FILE_DISK = FileDisk("/srv/virtmig-shared/guest.qcow2", format="qcow2")


def test_file_disk_renders_and_validates() -> None:
    xml = render_domain(lab_spec(FILE_DISK), TEMPLATES)
    validate_domain_xml(xml)
    root = etree.fromstring(xml.encode())
    assert root.get("type") == "qemu"
    assert root.findtext("memory") == "128"
    assert root.find("memory").get("unit") == "MiB"
    assert root.findtext("cpu/model") == "qemu64"
    assert root.find("cpu/model").get("fallback") == "forbid"
    assert root.findtext("on_poweroff") == "destroy"
    assert root.find("devices/memballoon").get("model") == "none"
    disk = root.find("devices/disk")
    assert disk.get("type") == "file"
    assert disk.find("driver").attrib == {"name": "qemu", "type": "qcow2", "cache": "none"}
    assert disk.find("source").get("file") == "/srv/virtmig-shared/guest.qcow2"
    assert root.find("devices/interface/mac").get("address") == GUEST_MAC
    assert root.find("devices/interface/source").get("bridge") == "br0"
    assert root.find("devices/serial").get("type") == "file"
    assert root.findtext("os/cmdline") == "console=ttyS0 quiet"


def test_nfs_disk_renders_and_validates() -> None:
    xml = render_domain(lab_spec(NFS_DISK), TEMPLATES)
    validate_domain_xml(xml)
    source = etree.fromstring(xml.encode()).find("devices/disk/source")
    assert source.get("protocol") == "nfs"
    assert source.get("name") == "/srv/virtmig-export/guest.raw"
    assert source.find("host").attrib == {"name": "198.18.0.10"}
    assert source.find("identity").attrib == {"user": "+64055", "group": "+64055"}


#: Whether an nfs <source> without <identity> is valid, by the libvirt versions it was seen on:
#: required by 9.0's schema (Debian 12), optional in 11.3's (Debian 13).
IDENTITY_REQUIRED_UP_TO, IDENTITY_OPTIONAL_FROM = 9_000_000, 11_003_000


def _identity_required(version: int) -> bool:
    if version <= IDENTITY_REQUIRED_UP_TO:
        return True
    if version >= IDENTITY_OPTIONAL_FROM:
        return False
    pytest.skip(f"whether libvirt {version}'s schema requires <identity> was not checked (9.0: yes, 11.3: no)")


def test_nfs_without_identity_still_has_the_element_the_schema_requires() -> None:
    """The template always writes <identity/>: valid on every libvirt, required on the older ones.

    What the schema does without it depends on the libvirt installed (the
    schema is libvirt's own), so the expectation is keyed on that version.
    """
    xml = render_domain(lab_spec(NfsDisk("nfs.example", "/export", "g.raw", port=2049)), TEMPLATES)
    validate_domain_xml(xml)
    assert "<identity/>" in xml
    bare = xml.replace("<identity/>", "")
    if _identity_required(libvirt.getVersion()):
        with pytest.raises(DomainXMLError, match="rejected"):
            validate_domain_xml(bare)
    else:
        validate_domain_xml(bare)


def test_real_host_variant_boots_from_disk_with_host_model_cpu() -> None:
    spec = DomainSpec(
        name="g",
        uuid=UUID,
        mac=GUEST_MAC,
        disk=FILE_DISK,
        network=GuestNetwork("network", "vmnet"),
        virt_type="kvm",
        cpu_mode="host-model",
        cpu_model=None,
        machine="pc-q35-7.2",
        memory_mib=1024,
        vcpus=2,
    )
    xml = render_domain(spec, TEMPLATES)
    validate_domain_xml(xml)
    root = etree.fromstring(xml.encode())
    assert root.find("os/kernel") is None
    assert root.find("os/boot").get("dev") == "hd"
    assert root.find("cpu").attrib == {"mode": "host-model"}
    assert root.find("devices/serial").get("type") == "pty"
    assert root.find("devices/interface").get("type") == "network"
    assert root.find("devices/interface/source").attrib == {"network": "vmnet"}


def test_values_are_xml_escaped() -> None:
    spec = dataclasses.replace(lab_spec(FILE_DISK), kernel=KernelBoot("/k", None, "a='1' & b<2"))
    xml = render_domain(spec, TEMPLATES)
    validate_domain_xml(xml)
    assert etree.fromstring(xml.encode()).findtext("os/cmdline") == "a='1' & b<2"


def test_libvirt_parser_accepts_both_disks() -> None:
    """libvirt's in-process test driver parses with the real domain parser."""
    conn = libvirt.open("test:///default")
    try:
        for disk in (FILE_DISK, NFS_DISK):
            dom = conn.defineXMLFlags(render_domain(lab_spec(disk), TEMPLATES), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
            assert dom.UUIDString() == UUID
            dom.undefine()
    finally:
        conn.close()


def test_missing_variable_fails_rendering() -> None:
    variables = lab_spec(FILE_DISK).template_vars()
    del variables["nic_source"]
    with pytest.raises(jinja2.UndefinedError, match="nic_source"):
        render_template(TEMPLATES, DOMAIN_TEMPLATE, variables)


def test_missing_optional_variable_fails_too() -> None:
    """Optional inputs must be passed as None, not left out."""
    variables = lab_spec(FILE_DISK).template_vars()
    del variables["machine"]
    with pytest.raises(jinja2.UndefinedError, match="machine"):
        render_template(TEMPLATES, DOMAIN_TEMPLATE, variables)


def test_invalid_xml_fails_with_readable_error() -> None:
    xml = render_domain(lab_spec(FILE_DISK), TEMPLATES).replace("<on_poweroff>destroy", "<on_poweroff>explode")
    with pytest.raises(DomainXMLError) as info:
        validate_domain_xml(xml)
    assert "domain.rng" in str(info.value)
    assert info.value.errors
    assert all(line.startswith("line ") for line in info.value.errors)


def test_not_well_formed_fails() -> None:
    with pytest.raises(DomainXMLError, match="not well-formed"):
        validate_domain_xml("<domain type='qemu'><name>x</domain>")


def test_missing_schema_dir_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DomainXMLError, match="cannot load libvirt schema"):
        validate_domain_xml("<domain/>", tmp_path)


@pytest.mark.parametrize(
    "kw",
    [
        {"memory_mib": 0},
        {"vcpus": 0},
        {"uuid": "not-a-uuid"},
        {"mac": "52:54:00:12:00"},
        {"cpu_mode": "host-model"},  # with the default cpu_model qemu64
        {"cpu_model": None},  # custom without a model
        {"name": "bad name"},
    ],
)
def test_spec_rejects_bad_inputs(kw: dict[str, object]) -> None:
    args: dict[str, object] = {"name": "g", "uuid": UUID, "mac": GUEST_MAC, "disk": FILE_DISK, "network": BRIDGE}
    args.update(kw)
    with pytest.raises(ValueError):
        DomainSpec(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make",
    [
        lambda: FileDisk("relative.raw"),
        lambda: FileDisk("/a.raw", target_dev="sda"),
        lambda: NfsDisk("srv", "export", "g.raw"),
        lambda: NfsDisk("srv", "/export", "/g.raw"),
        lambda: NfsDisk("srv", "/export", "g.raw", user="qemu user"),
        lambda: NfsDisk("srv", "/export", "g.raw", port=70000),
    ],
)
def test_disks_reject_bad_inputs(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]
