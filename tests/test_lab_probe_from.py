"""--probe-from where the controller has no route to the VM network: the run still certifies (#10 item 2).

The guest lives on a subnet of its own, 198.19.200.0/24 on the hosts' br0
(h1 and h2 get an address in it for the test, removed afterwards).  The
controller is a network namespace of this test's (`CTL_NETNS`): one veth
into the lab's root bridge with 198.18.0.2/24 and no default route, so the
hosts answer over SSH and the guest's subnet is unreachable from it, as from
a CI runner outside a site's VM network.  The inner runs are started inside
it with only the options a site has; with `--probe-from h1` the run must
certify, and without it the same run must fail (the guest unreachable), so
the test can fail.  Everything stays on links inside the lab's namespaces.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inner_run import certified_round_trip, migrations, output_tail, run_suite
from virtmig.guest.image import GuestImage, build_guest
from virtmig.lab.network import GUEST_BRIDGE
from virtmig.lab.topology import BRIDGE, EXPORT_DIR, H1, H2, NFS, SSH_CONFIG
from virtmig.sshhost import SshHost

pytestmark = pytest.mark.lab

#: The controller's namespace and the root end of its link (names the lab's `down` does not claim).
CTL_NETNS = "vmctl-probe"
CTL_VETH = "vmctl-o"
CTL_ADDRESS = "198.18.0.2/24"
#: The guest's subnet, which only the hosts reach.
GUEST_IP = "198.19.200.100"
HOST_ADDRESSES = {H1.name: "198.19.200.11/24", H2.name: "198.19.200.12/24"}
MOUNT = "/var/lib/virtmig-probe-from-store"


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)


def _remove_controller() -> None:
    _sh("ip", "netns", "del", CTL_NETNS, check=False)  # takes its end of the veth, and so the pair
    _sh("ip", "link", "del", CTL_VETH, check=False)


@pytest.fixture
def guest_built() -> GuestImage:
    """The test guest built (or found in its cache) here, before any inner run starts in the namespace.

    The namespace has no route off the lab's bridge at all, so an inner run
    there cannot fetch the guest's kernel package when the shared cache
    holds another version's build (seen: GuestBuildError, apt "Temporary
    failure resolving"); built here, the inner run finds it in the cache.
    """
    return build_guest()


@pytest.fixture
def controller_without_route(lab_up: None, guest_built: GuestImage) -> Iterator[str]:
    """A controller namespace on the lab's bridge with no route to the guest's subnet; removed afterwards."""
    _remove_controller()  # a killed earlier run's
    try:
        _sh("ip", "netns", "add", CTL_NETNS)
        _sh("ip", "link", "add", CTL_VETH, "type", "veth", "peer", "name", "vmctl-i")
        _sh("ip", "link", "set", "vmctl-i", "netns", CTL_NETNS)
        _sh("ip", "link", "set", CTL_VETH, "master", BRIDGE, "up")
        _sh("ip", "-n", CTL_NETNS, "link", "set", "lo", "up")
        _sh("ip", "-n", CTL_NETNS, "addr", "add", CTL_ADDRESS, "dev", "vmctl-i")
        _sh("ip", "-n", CTL_NETNS, "link", "set", "vmctl-i", "up")
        yield CTL_NETNS
    finally:
        _remove_controller()


@pytest.fixture
def guest_subnet(lab_up: None) -> Iterator[None]:
    """h1 and h2 on the guest's subnet (an extra address on br0, over ssh); removed also after a failure."""
    hosts = [SshHost(name, ssh_config=SSH_CONFIG) for name in HOST_ADDRESSES]
    added: list[tuple[SshHost, str]] = []
    try:
        for host in hosts:
            address = HOST_ADDRESSES[host.name]
            host.run("ip", "addr", "del", address, "dev", GUEST_BRIDGE, check=False)  # a killed run's
            host.run("ip", "addr", "add", address, "dev", GUEST_BRIDGE)
            added.append((host, address))
        yield
    finally:
        for host, address in added:
            host.run("ip", "addr", "del", address, "dev", GUEST_BRIDGE, check=False)
        for host in hosts:
            host.close()


def site_args(*extra: str) -> list[str]:
    return ["-k", "round_trip and p2p and not tunnelled", "--src", H1.name, "--dst", H2.name,
            "--ssh-config", str(SSH_CONFIG), "--nfs-server", NFS.name, "--export", str(EXPORT_DIR),
            "--mount-point", MOUNT, "--storage-is-shared", "--guest-network", f"bridge:{GUEST_BRIDGE}",
            "--guest-ip", f"{GUEST_IP}/24", *extra]


def test_the_controller_namespace_reaches_the_hosts_and_not_the_guests_subnet(
        controller_without_route: str, guest_subnet: None) -> None:
    """The premise of the next tests: ssh to the hosts works from the namespace, the guest's subnet has no route."""
    ns = ["ip", "netns", "exec", controller_without_route]
    ssh = _sh(*ns, "ssh", "-F", str(SSH_CONFIG), H1.name, "ip", "-o", "-4", "addr", "show", GUEST_BRIDGE,
              check=False)
    assert ssh.returncode == 0 and HOST_ADDRESSES[H1.name] in ssh.stdout, ssh.stderr
    route = _sh(*ns, "ip", "route", "get", GUEST_IP, check=False)
    assert route.returncode != 0 and "unreachable" in route.stderr, route.stdout


def test_probe_from_a_host_certifies_where_the_controller_has_no_route(
        controller_without_route: str, guest_subnet: None, tmp_path: Path) -> None:
    proc, html = run_suite(tmp_path, "suites/live", *site_args("--probe-from", H1.name),
                           netns=controller_without_route)
    hops = certified_round_trip(proc, html)
    for hop in hops:
        probe = hop["probe"]
        assert probe["vantage"] == H1.name
        assert probe["sent"] > 0 and probe["received"] > 0 and probe["interval_ms"] == 5.0
        assert probe["clock_uncertainty_ms"] is not None and probe["clock_uncertainty_ms"] >= 0
        # One kernel clock under the lab's namespaces: the measured offset must be 0 within its bound.
        assert abs(probe["clock_offset_ms"]) <= probe["clock_uncertainty_ms"] + 1e-6
        assert any(note.startswith(f"probe ran on {H1.name} (--probe-from)") for note in hop["notes"])
        assert hop["integrity"] == {"ram": "ok", "disk": "ok"}
    assert f"{H1.name}: 5.0 / " in html.read_text(), "the report's probe-from column does not name h1"


def test_without_probe_from_the_same_run_cannot_reach_the_guest(
        controller_without_route: str, guest_subnet: None, tmp_path: Path) -> None:
    proc, html = run_suite(tmp_path, "suites/live", *site_args(), netns=controller_without_route)
    assert proc.returncode != 0, output_tail(proc)
    out = proc.stdout + proc.stderr
    assert f"guest agent {GUEST_IP}:7" in out and "Network is unreachable" in out, output_tail(proc)
    assert not (html.parent / "results.json").exists() or migrations(html) == [], "a migration ran"
