"""Domain XML for the test guest: typed inputs, rendering, schema validation.

The XML is rendered from `templates/domain.xml.j2` rather than built in code
so that a reader can see the whole guest definition in one place. Rendering
is strict (StrictUndefined) and every input is validated here, because a
domain that libvirt silently fills in differently on two hosts is a migration
failure that shows up much later and much further away.

`validate_domain_xml` checks against libvirt's own RelaxNG schema before the
XML ever reaches a hypervisor, so a template mistake fails in a unit test
instead of as a `virDomainDefineXML` error in the middle of a suite.
libxml2 (through lxml) compiles Debian's libvirt 9.0 `domain.rng` without
trouble, and `virt-xml-validate` is only `xmllint --relaxng` on the same
libxml2, so there is no fallback: a schema that does not compile is reported.
"""

from __future__ import annotations

import functools
import re
import uuid as uuid_mod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2
from lxml import etree

from virtmig.guestconfig import GuestNetwork

DOMAIN_TEMPLATE = "domain.xml.j2"
DEFAULT_SCHEMA_DIR = Path("/usr/share/libvirt/schemas")

DiskFormat = Literal["raw", "qcow2"]
#: Cache modes libvirt accepts; live migration wants 'none' (or a network disk).
DiskCache = Literal["none", "writethrough", "writeback", "directsync", "unsafe", "default"]
CpuMode = Literal["custom", "host-model", "host-passthrough"]
VirtType = Literal["qemu", "kvm"]

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")
#: libvirt's CPU feature policies, and its feature names (e.g. 'x2apic', 'sse4.2', 'avx512-bf16').
_CPU_POLICIES = ("force", "require", "optional", "disable", "forbid")
_FEATURE_RE = re.compile(r"^[a-z0-9_.-]+$")
#: libvirt's genericName: what <identity user= group=> accepts ('+1000' = uid).
_IDENTITY_RE = re.compile(r"^[a-zA-Z0-9_+-]+$")


class DomainXMLError(ValueError):
    """Rendered XML is not well-formed or is rejected by libvirt's schema."""

    def __init__(self, message: str, errors: tuple[str, ...] = ()) -> None:
        self.errors = errors
        detail = "".join(f"\n  {line}" for line in errors)
        super().__init__(message + detail)


@dataclass(frozen=True)
class FileDisk:
    """Disk image reached as a file path on the host.

    For live migration libvirt 9.0 requires the file to be on a filesystem it
    recognises as shared (NFS, GFS2, CephFS, ...); a bind mount is refused.
    """

    path: str
    format: DiskFormat = "raw"
    cache: DiskCache = "none"
    target_dev: str = "vda"

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"FileDisk.path must be absolute, got {self.path!r}")
        _check_target_dev(self.target_dev)

    def template_vars(self) -> dict[str, object]:
        return {
            "kind": "file",
            "path": self.path,
            "format": self.format,
            "cache": self.cache,
            "target_dev": self.target_dev,
        }


@dataclass(frozen=True)
class NfsDisk:
    """Disk image opened by QEMU itself over NFS (libnfs), no host mount.

    libvirt treats network disks as shared, so this passes its migration
    safety check where a file on a non-NFS mount does not.

    QEMU's nfs driver mounts the *directory part* of the source name and opens
    the last component, so `image` containing '/' only works if the server
    lets clients mount that subdirectory. `user`/`group` are passed to libnfs
    as the RPC credentials ('+UID'/'+GID' or names); with root_squash the
    default (QEMU's own uid, often root) is squashed and denied write access.
    """

    server: str
    export: str
    image: str
    format: DiskFormat = "raw"
    cache: DiskCache = "none"
    port: int | None = None
    user: str | None = None
    group: str | None = None
    target_dev: str = "vda"

    def __post_init__(self) -> None:
        if not self.server or any(c in self.server for c in "/ '\""):
            raise ValueError(f"NfsDisk.server is not a host name or address: {self.server!r}")
        if not self.export.startswith("/"):
            raise ValueError(f"NfsDisk.export must be absolute, got {self.export!r}")
        if not self.image or self.image.startswith("/"):
            raise ValueError(f"NfsDisk.image must be relative to the export, got {self.image!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"NfsDisk.port out of range: {self.port}")
        for label, value in (("user", self.user), ("group", self.group)):
            if value is not None and not _IDENTITY_RE.match(value):
                raise ValueError(f"NfsDisk.{label} must match [a-zA-Z0-9_+-]+, got {value!r}")
        _check_target_dev(self.target_dev)

    @property
    def source_name(self) -> str:
        """The `<source name=>`: absolute path of the image on the server."""
        return f"{self.export.rstrip('/')}/{self.image}"

    def template_vars(self) -> dict[str, object]:
        return {
            "kind": "nfs",
            "server": self.server,
            "port": self.port,
            "name": self.source_name,
            "user": self.user,
            "group": self.group,
            "format": self.format,
            "cache": self.cache,
            "target_dev": self.target_dev,
        }


@dataclass(frozen=True)
class KernelBoot:
    """Direct kernel boot, as the lab guest uses (no bootloader, no disk OS)."""

    kernel: str
    initrd: str | None = None
    cmdline: str | None = None


@dataclass(frozen=True)
class DomainSpec:
    """Everything the domain template needs; nothing is read from config.

    Defaults describe the small test guest (TCG, qemu64, 128 MiB, 1 vCPU). For
    a KVM pair use virt_type='kvm' and cpu_mode='host-model' (cpu_model=None),
    and leave `kernel` None to boot from the disk image.  The network has no
    default: it is the site's (--guest-network).
    """

    name: str
    uuid: str
    mac: str
    disk: FileDisk | NfsDisk
    network: GuestNetwork
    virt_type: VirtType = "qemu"
    memory_mib: int = 128
    vcpus: int = 1
    cpu_mode: CpuMode = "custom"
    cpu_model: str | None = "qemu64"
    #: (policy, name) of each <feature> of a custom CPU, as libvirt's baseline gives them
    cpu_features: tuple[tuple[str, str], ...] = ()
    arch: str = "x86_64"
    machine: str | None = None
    emulator: str | None = None
    kernel: KernelBoot | None = None
    serial_log: str | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"domain name {self.name!r} must match {_NAME_RE.pattern}")
        try:
            uuid_mod.UUID(self.uuid)
        except ValueError:
            raise ValueError(f"not a UUID: {self.uuid!r}") from None
        if not _MAC_RE.match(self.mac):
            raise ValueError(f"MAC must be lower-case aa:bb:cc:dd:ee:ff, got {self.mac!r}")
        if self.memory_mib <= 0:
            raise ValueError(f"memory_mib must be positive, got {self.memory_mib}")
        if self.vcpus < 1:
            raise ValueError(f"vcpus must be at least 1, got {self.vcpus}")
        if self.cpu_mode == "custom" and not self.cpu_model:
            raise ValueError("cpu_mode='custom' needs a cpu_model (e.g. 'qemu64')")
        if self.cpu_mode != "custom" and (self.cpu_model is not None or self.cpu_features):
            raise ValueError(f"cpu_model and cpu_features are only used with cpu_mode='custom', not {self.cpu_mode!r}")
        for policy, feature in self.cpu_features:
            if policy not in _CPU_POLICIES or not _FEATURE_RE.match(feature):
                raise ValueError(f"CPU feature ({policy!r}, {feature!r}): policy must be one of "
                                 f"{', '.join(_CPU_POLICIES)}, name [a-z0-9_.-]+")
        if self.serial_log is not None and not self.serial_log.startswith("/"):
            raise ValueError(f"serial_log must be an absolute path, got {self.serial_log!r}")

    def template_vars(self) -> dict[str, object]:
        """The template's variables; each key is documented in the template."""
        kb = self.kernel
        return {
            "domain_type": self.virt_type,
            "name": self.name,
            "uuid": self.uuid,
            "memory_mib": self.memory_mib,
            "vcpus": self.vcpus,
            "cpu_mode": self.cpu_mode,
            "cpu_model": self.cpu_model,
            "cpu_features": [{"policy": p, "name": n} for p, n in self.cpu_features],
            "arch": self.arch,
            "machine": self.machine,
            "emulator": self.emulator,
            "kernel": kb.kernel if kb else None,
            "initrd": kb.initrd if kb else None,
            "cmdline": kb.cmdline if kb else None,
            "serial_log": self.serial_log,
            "disk": self.disk.template_vars(),
            "mac": self.mac,
            "nic_kind": self.network.kind,
            "nic_source": self.network.name,
        }


def _check_target_dev(dev: str) -> None:
    if not re.match(r"^vd[a-z]+$", dev):
        raise ValueError(f"virtio disk target must be vdX, got {dev!r}")


@functools.lru_cache(maxsize=4)
def _environment(templates_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        # Escapes & < > ' " : values go into attributes quoted with '.
        autoescape=True,
        keep_trailing_newline=True,
    )


def render_template(templates_dir: Path, template: str, variables: dict[str, object]) -> str:
    """Render any template strictly; a missing variable raises UndefinedError."""
    return _environment(Path(templates_dir)).get_template(template).render(variables)


def render_domain(spec: DomainSpec, templates_dir: Path) -> str:
    """Domain XML for `spec` from `templates_dir/domain.xml.j2`."""
    return render_template(templates_dir, DOMAIN_TEMPLATE, spec.template_vars())


@functools.lru_cache(maxsize=4)
def _domain_schema(schema_dir: Path) -> etree.RelaxNG:
    path = schema_dir / "domain.rng"
    try:
        return etree.RelaxNG(etree.parse(str(path)))
    except (OSError, etree.XMLSyntaxError, etree.RelaxNGParseError) as exc:
        raise DomainXMLError(f"cannot load libvirt schema {path}: {exc}") from exc


def validate_domain_xml(xml: str, schema_dir: Path = DEFAULT_SCHEMA_DIR) -> None:
    """Raise DomainXMLError unless `xml` is valid against libvirt's domain.rng.

    The error carries libxml2's log lines ("line N: ..."); RelaxNG messages
    name the element that failed, which is usually enough to find the
    template line.
    """
    schema = _domain_schema(Path(schema_dir))
    try:
        doc = etree.fromstring(xml.encode())
    except etree.XMLSyntaxError as exc:
        raise DomainXMLError("domain XML is not well-formed", (str(exc),)) from exc
    if not schema.validate(doc):
        errors = tuple(f"line {e.line}: {e.message}" for e in schema.error_log)
        raise DomainXMLError("domain XML rejected by libvirt's domain.rng", errors)
