"""What the two hosts are running: kernel, libvirt, QEMU, CPU, OS.

A migration figure means little without the software and hardware it was
measured on: a downtime regression after a night's package upgrade shows up
as a changed QEMU version here, and a pair whose kernels or CPUs differ
explains a CPU-compatibility failure before anyone reads a log.  The report
and results.json carry these facts for both hosts, gathered once per run.

Gathering never raises for a missing fact: a host without /etc/os-release or
a libvirtd that refuses one call still gives the others, and what could not
be read is listed in `HostFacts.errors`, so the report says "unknown, because"
rather than losing the whole section.  Parsing is separate from gathering so
that it can be tested on recorded command output.
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Protocol

from virtmig.host import CommandError, CommandTimeout, Host, HostConnectionError

#: Each remote command's limit: a fact is not worth a stuck run.
GATHER_TIMEOUT_S: Final = 30.0

#: The facts compared between the hosts, with the label the report uses.
COMPARED: Final = (
    ("kernel", "kernel"),
    ("libvirt_version", "libvirt"),
    ("qemu_version", "QEMU"),
    ("cpu_model", "CPU model"),
    ("os", "OS"),
)


class LibvirtConnection(Protocol):
    """The three calls used of a `libvirt.virConnect` (a Protocol, so tests can stand in)."""

    def getLibVersion(self) -> int: ...  # noqa: N802 - libvirt's names

    def getVersion(self) -> int: ...  # noqa: N802

    def getCapabilities(self) -> str: ...  # noqa: N802


@dataclass(frozen=True)
class HostFacts:
    """One host's environment; a None field was not learned (see `errors`).

    name: the ssh name the harness used; hostname: what the host calls itself.
    cpu_model: /proc/cpuinfo's model (what the hardware is); libvirt_cpu:
    libvirt's host CPU model from its capabilities (what migration compares).
    """

    name: str
    hostname: str | None = None
    kernel: str | None = None
    os: str | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    libvirt_cpu: str | None = None
    libvirt_version: str | None = None
    qemu_version: str | None = None
    host_uuid: str | None = None
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["errors"] = list(self.errors)
        return raw

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> HostFacts:
        """Back from JSON; unknown keys (a newer writer's) are ignored."""

        def text(key: str) -> str | None:
            value = raw.get(key)
            return None if value is None else str(value)

        count = raw.get("cpu_count")
        return cls(
            name=str(raw.get("name", "")),
            hostname=text("hostname"), kernel=text("kernel"), os=text("os"),
            cpu_model=text("cpu_model"),
            cpu_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
            libvirt_cpu=text("libvirt_cpu"), libvirt_version=text("libvirt_version"),
            qemu_version=text("qemu_version"), host_uuid=text("host_uuid"),
            errors=tuple(str(e) for e in raw.get("errors", ()) or ()),
        )


@dataclass(frozen=True)
class PairEnvironment:
    """Both hosts' facts, as the report shows them side by side."""

    src: HostFacts
    dst: HostFacts
    gathered_at: str | None = None
    notes: tuple[str, ...] = field(default=())

    def differences(self) -> list[str]:
        """Labels of the compared facts known on both hosts and different.

        A difference is not a failure (preflight decides what blocks a
        migration); it is what a reader should know before comparing figures.
        """
        out = []
        for attr, label in COMPARED:
            a, b = getattr(self.src, attr), getattr(self.dst, attr)
            if a is not None and b is not None and a != b:
                out.append(label)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src.to_dict(), "dst": self.dst.to_dict(), "gathered_at": self.gathered_at,
                "differences": self.differences(), "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PairEnvironment:
        return cls(HostFacts.from_dict(raw.get("src") or {}), HostFacts.from_dict(raw.get("dst") or {}),
                   None if raw.get("gathered_at") is None else str(raw["gathered_at"]),
                   tuple(str(n) for n in raw.get("notes", ()) or ()))


# --- parsing (pure; tested on recorded output) ---------------------------------

def version_text(encoded: int) -> str:
    """libvirt's packed version (major * 1,000,000 + minor * 1,000 + micro) as "9.0.0"."""
    if encoded < 0:
        raise ValueError(f"version {encoded} is negative")
    return f"{encoded // 1_000_000}.{encoded // 1000 % 1000}.{encoded % 1000}"


#: /proc/cpuinfo keys that name the CPU, by architecture: x86 "model name",
#: POWER "cpu", s390 "processor 0" lines carry no model, some ARM "Hardware"
#: or "model name".  The first present wins.
_CPUINFO_MODEL_KEYS: Final = ("model name", "cpu model", "cpu", "Hardware", "Processor")


def parse_cpuinfo(text: str) -> tuple[str | None, int | None]:
    """(CPU model, number of logical CPUs) from /proc/cpuinfo's text.

    The count is the number of "processor" entries; a model repeated per CPU
    is reported once, and several different models (big.LITTLE) are joined.
    """
    models: dict[str, list[str]] = {}
    count = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), " ".join(value.split())
        if key == "processor" and value.isdigit():
            count += 1
        elif key in _CPUINFO_MODEL_KEYS and value:
            seen = models.setdefault(key, [])
            if value not in seen:
                seen.append(value)
    model = next((" / ".join(models[k]) for k in _CPUINFO_MODEL_KEYS if k in models), None)
    return model, (count or None)


def parse_os_release(text: str) -> str | None:
    """PRETTY_NAME (else NAME VERSION) from os-release(5) text, unquoted as a shell would."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            continue
        values[key.strip()] = " ".join(words)
    if values.get("PRETTY_NAME"):
        return values["PRETTY_NAME"]
    joined = " ".join(v for v in (values.get("NAME"), values.get("VERSION")) if v)
    return joined or None


def parse_capabilities(xml_text: str) -> tuple[str | None, str | None]:
    """(host CPU as "vendor model", host UUID) from `virsh capabilities` XML."""
    root = ET.fromstring(xml_text)
    host = root.find("host")
    if host is None:
        return None, None
    vendor = (host.findtext("cpu/vendor") or "").strip()
    model = (host.findtext("cpu/model") or "").strip()
    cpu = " ".join(p for p in (vendor, model) if p) or None
    uuid = (host.findtext("uuid") or "").strip() or None
    return cpu, uuid


def parse_virsh_version(text: str) -> tuple[str | None, str | None]:
    """(libvirt daemon version, QEMU version) from `virsh version` output.

    The daemon's version ("Running against daemon") is the one that migrates;
    the library line is virsh's own and only a fallback.
    """
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            found[key.strip()] = value.strip()
    libvirt = found.get("Running against daemon") or _last_word(found.get("Using library"))
    qemu = None
    hypervisor = found.get("Running hypervisor", "")
    if hypervisor.upper().startswith("QEMU"):
        qemu = _last_word(hypervisor)
    return libvirt or None, qemu


def _last_word(text: str | None) -> str | None:
    words = (text or "").split()
    return words[-1] if words else None


# --- gathering -----------------------------------------------------------------

_REMOTE_ERRORS: Final = (CommandError, CommandTimeout, HostConnectionError, OSError)


def _first_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else None


def gather_host(host: Host, conn: LibvirtConnection | None = None) -> HostFacts:
    """The facts of one host, over its ssh transport and (if given) its libvirt connection.

    Versions come from the libvirt connection when there is one, because
    that is the daemon that migrates; without one, from `virsh version` on
    the host.  Every fact that fails is listed in `errors` instead.
    """
    errors: list[str] = []
    values: dict[str, Any] = {}

    def remote(what: str, *argv: str) -> str | None:
        try:
            return host.run(*argv, timeout=GATHER_TIMEOUT_S).stdout
        except _REMOTE_ERRORS as exc:
            errors.append(f"{what}: {exc}")
            return None

    if (out := remote("kernel", "uname", "-r")) is not None:
        values["kernel"] = _first_line(out)
    if (out := remote("hostname", "uname", "-n")) is not None:
        values["hostname"] = _first_line(out)
    if (out := remote("cpu", "cat", "/proc/cpuinfo")) is not None:
        values["cpu_model"], values["cpu_count"] = parse_cpuinfo(out)
    if (out := remote("os", "cat", "/etc/os-release")) is not None:
        values["os"] = parse_os_release(out)
    if conn is not None:
        values.update(_from_connection(conn, errors))
    elif (out := remote("versions", "virsh", "-c", "qemu:///system", "version")) is not None:
        values["libvirt_version"], values["qemu_version"] = parse_virsh_version(out)
    return HostFacts(name=host.name, errors=tuple(errors), **values)


def _from_connection(conn: LibvirtConnection, errors: list[str]) -> dict[str, Any]:
    # libvirt.libvirtError is not imported here so that tests need no libvirt;
    # any failure of one call must only lose that fact.
    values: dict[str, Any] = {}
    for key, call in (("libvirt_version", conn.getLibVersion), ("qemu_version", conn.getVersion)):
        try:
            values[key] = version_text(call())
        except Exception as exc:  # noqa: BLE001 - see above
            errors.append(f"{key}: {exc}")
    try:
        values["libvirt_cpu"], values["host_uuid"] = parse_capabilities(conn.getCapabilities())
    except Exception as exc:  # noqa: BLE001
        errors.append(f"capabilities: {exc}")
    return values


def gather_pair(src: Host, dst: Host, src_conn: LibvirtConnection | None = None,
                dst_conn: LibvirtConnection | None = None, *, gathered_at: str | None = None) -> PairEnvironment:
    """Both hosts' facts (see `gather_host`)."""
    return PairEnvironment(gather_host(src, src_conn), gather_host(dst, dst_conn), gathered_at)
