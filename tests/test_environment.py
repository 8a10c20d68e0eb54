"""Host facts for the report: parsers on recorded output, gathering against a real sshd.

The parsers read what real hosts print (recorded below from Debian 12 on
x86_64, an arm64 server and a POWER9 host); gathering is run against the
throwaway sshd on 127.0.0.1, so the commands really cross ssh, and a
stand-in libvirt connection that can be told to fail.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from tests.conftest import Sshd
from virtmig.environment import (
    HostFacts,
    PairEnvironment,
    gather_host,
    parse_capabilities,
    parse_cpuinfo,
    parse_os_release,
    parse_virsh_version,
    version_text,
)
from virtmig.report import environment_table
from virtmig.sshhost import SshHost

CPUINFO_X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7713 64-Core Processor
cpu MHz\t\t: 2445.426
cpu cores\t: 2
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7713 64-Core Processor
cpu MHz\t\t: 2445.426
cpu cores\t: 2
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr
"""

CPUINFO_ARM64 = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd0c

processor\t: 1
BogoMIPS\t: 50.00
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""

CPUINFO_POWER9 = """processor\t: 0
cpu\t\t: POWER9 (architected), altivec supported
clock\t\t: 2750.000000MHz
revision\t: 2.2 (pvr 004e 1202)

processor\t: 1
cpu\t\t: POWER9 (architected), altivec supported
clock\t\t: 2750.000000MHz
revision\t: 2.2 (pvr 004e 1202)

timebase\t: 512000000
platform\t: pSeries
model\t\t: IBM,9009-22A
"""

OS_RELEASE_DEBIAN = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
"""

OS_RELEASE_NO_PRETTY = """# a minimal image
NAME='Rocky Linux'
VERSION="9.3 (Blue Onyx)"
"""

VIRSH_VERSION = """Compiled against library: libvirt 9.0.0
Using library: libvirt 9.0.0
Using API: QEMU 9.0.0
Running hypervisor: QEMU 7.2.19
Running against daemon: 9.0.0
"""

CAPABILITIES = """<capabilities>
  <host>
    <uuid>5a1c2f0e-0000-4000-8000-000000000001</uuid>
    <cpu>
      <arch>x86_64</arch>
      <model>EPYC-Milan</model>
      <vendor>AMD</vendor>
      <topology sockets='1' dies='1' cores='2' threads='1'/>
    </cpu>
  </host>
  <guest><os_type>hvm</os_type></guest>
</capabilities>
"""


# --- parsers ---------------------------------------------------------------------

def test_cpuinfo_x86_model_once_and_count() -> None:
    assert parse_cpuinfo(CPUINFO_X86) == ("AMD EPYC 7713 64-Core Processor", 2)


def test_cpuinfo_power_uses_cpu_line_not_machine_model() -> None:
    # "model : IBM,9009-22A" is the machine, not the CPU; "cpu family" on x86 must not match "cpu".
    assert parse_cpuinfo(CPUINFO_POWER9) == ("POWER9 (architected), altivec supported", 2)


def test_cpuinfo_without_a_model_still_counts() -> None:
    assert parse_cpuinfo(CPUINFO_ARM64) == (None, 2)
    assert parse_cpuinfo("") == (None, None)


def test_cpuinfo_mixed_models_are_all_named() -> None:
    text = "processor : 0\nmodel name : Big\n\nprocessor : 1\nmodel name : Little\n"
    assert parse_cpuinfo(text) == ("Big / Little", 2)


def test_os_release() -> None:
    assert parse_os_release(OS_RELEASE_DEBIAN) == "Debian GNU/Linux 12 (bookworm)"
    assert parse_os_release(OS_RELEASE_NO_PRETTY) == "Rocky Linux 9.3 (Blue Onyx)"
    assert parse_os_release("garbage\nPRETTY_NAME=\"unterminated\n") is None


def test_virsh_version_prefers_the_daemon() -> None:
    assert parse_virsh_version(VIRSH_VERSION) == ("9.0.0", "7.2.19")
    older_daemon = VIRSH_VERSION.replace("Running against daemon: 9.0.0", "Running against daemon: 8.0.0")
    assert parse_virsh_version(older_daemon) == ("8.0.0", "7.2.19")
    assert parse_virsh_version("Using library: libvirt 9.0.0\n") == ("9.0.0", None)


def test_capabilities_cpu_and_uuid() -> None:
    assert parse_capabilities(CAPABILITIES) == ("AMD EPYC-Milan", "5a1c2f0e-0000-4000-8000-000000000001")
    assert parse_capabilities("<capabilities/>") == (None, None)


def test_version_text() -> None:
    assert version_text(9_000_000) == "9.0.0"
    assert version_text(7_002_019) == "7.2.19"
    with pytest.raises(ValueError):
        version_text(-1)


# --- the pair and its JSON form --------------------------------------------------

def facts(name: str, **overrides: object) -> HostFacts:
    values: dict[str, object] = dict(hostname=name, kernel="6.1.0-18-amd64", os="Debian GNU/Linux 12 (bookworm)",
                                     cpu_model="AMD EPYC", cpu_count=2, libvirt_cpu="AMD EPYC-Milan",
                                     libvirt_version="9.0.0", qemu_version="7.2.19", host_uuid=f"uuid-{name}")
    values.update(overrides)
    return HostFacts(name, **values)  # type: ignore[arg-type]


def test_differences_name_only_known_facts_that_differ() -> None:
    same = PairEnvironment(facts("h1"), facts("h2"))
    assert same.differences() == []
    other = PairEnvironment(facts("h1"), facts("h2", kernel="6.1.0-21-amd64", qemu_version=None))
    assert other.differences() == ["kernel"]  # an unknown QEMU is not a difference


def test_json_round_trip_and_unknown_keys() -> None:
    env = PairEnvironment(facts("h1"), facts("h2", errors=("os: no such file",)), "2024-05-01T10:00:00+00:00")
    raw = env.to_dict()
    assert raw["differences"] == []
    raw["src"]["added_by_a_newer_writer"] = 1
    assert PairEnvironment.from_dict(raw) == env


def test_environment_table_marks_differences_and_escapes() -> None:
    env = PairEnvironment(facts("h1"), facts("<h2>", kernel="6.1.0-21-amd64", qemu_version=None,
                                             errors=("versions: <refused>",)))
    out = environment_table.render_html(env)
    assert "<th>kernel (differs)</th>" in out
    assert "<td>6.1.0-21-amd64</td>" in out and "<td>6.1.0-18-amd64</td>" in out
    assert "destination: &lt;h2&gt;" in out and "<h2>h2" not in out
    assert "&lt;refused&gt;" in out
    assert '<td class="unknown">' in out  # QEMU unknown on the destination
    assert "Not gathered: nobody asked." in environment_table.render_html(None, problem="nobody asked")


# --- gathering over a real ssh connection ----------------------------------------

class FakeConn:
    """Stands in for libvirt.virConnect: fixed answers, or one call that fails."""

    def __init__(self, fail: str = "") -> None:
        self.fail = fail

    def _maybe_fail(self, name: str) -> None:
        if name == self.fail:
            raise RuntimeError(f"{name} refused")

    def getLibVersion(self) -> int:  # noqa: N802
        self._maybe_fail("getLibVersion")
        return 9_000_000

    def getVersion(self) -> int:  # noqa: N802
        self._maybe_fail("getVersion")
        return 7_002_019

    def getCapabilities(self) -> str:  # noqa: N802
        self._maybe_fail("getCapabilities")
        return CAPABILITIES


def test_gather_host_over_ssh(sshd: Sshd) -> None:
    with SshHost(sshd.alias, ssh_config=sshd.ssh_config) as host:
        got = gather_host(host, FakeConn())
    assert got.kernel == platform.release()
    assert got.hostname == os.uname().nodename
    local_model, local_count = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    assert (got.cpu_model, got.cpu_count) == (local_model, local_count)
    assert got.os == parse_os_release(Path("/etc/os-release").read_text())
    assert (got.libvirt_version, got.qemu_version) == ("9.0.0", "7.2.19")
    assert (got.libvirt_cpu, got.host_uuid) == ("AMD EPYC-Milan", "5a1c2f0e-0000-4000-8000-000000000001")
    assert got.errors == ()


def test_gather_host_keeps_going_when_one_fact_fails(sshd: Sshd) -> None:
    with SshHost(sshd.alias, ssh_config=sshd.ssh_config) as host:
        got = gather_host(host, FakeConn(fail="getVersion"))
    assert got.qemu_version is None and got.libvirt_version == "9.0.0"
    assert got.kernel == platform.release()
    assert got.errors == ("qemu_version: getVersion refused",)


def test_gather_host_unreachable_lists_every_fact(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host gone\n    HostName 127.0.0.1\n    Port 1\n    User root\n"
                      f"    UserKnownHostsFile {sshd.known_hosts}\n    ConnectTimeout 2\n")
    with SshHost("gone", ssh_config=config) as host:
        got = gather_host(host, None)
    assert got.kernel is None and got.libvirt_version is None
    assert [e.split(":")[0] for e in got.errors] == ["kernel", "hostname", "cpu", "os", "versions"]
