"""The guest's place on a site's network: --guest-network, --guest-ip(s), the derived MAC, and the usage errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from virtmig.config import DefaultPair, GuestShape, GuestSite, build_run_config
from virtmig.guestconfig import (
    GuestNetwork,
    guest_mac,
    parse_guest_ip,
    parse_guest_ips,
    parse_guest_network,
    worker_index,
)
from virtmig.option_values import ConfigError

pytest_plugins = ["pytester"]


def test_network_is_a_bridge_or_a_libvirt_network() -> None:
    assert parse_guest_network("bridge:vmbr0") == GuestNetwork("bridge", "vmbr0")
    assert parse_guest_network("default") == GuestNetwork("network", "default")
    assert parse_guest_network("bridge:br0").label == "bridge:br0"
    assert parse_guest_network("vm-net.1").label == "vm-net.1"


@pytest.mark.parametrize("bad", ["bridge:", "bridge:a-name-longer-than-15", "bridge:a b", "net/work", "", "..",
                                 "bridge:..", "x'y"])
def test_bad_network_names_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="--guest-network"):
        parse_guest_network(bad)


def test_one_address_in_cidr_form() -> None:
    one = parse_guest_ip("192.0.2.50/24")
    assert one.addresses == (ipaddress.IPv4Address("192.0.2.50"),)
    assert (one.prefix_len, str(one.subnet), one.label) == (24, "192.0.2.0/24", "192.0.2.50/24")
    assert str(one.for_worker(0)) == "192.0.2.50"


@pytest.mark.parametrize(("bad", "why"), [
    ("192.0.2.50", "not in the form ADDR/PREFIX"),
    ("192.0.2.50/", "not in the form"),
    ("192.0.2.50/33", "not in the form"),
    ("192.0.2.50/4", "not in the form"),
    ("192.0.2.500/24", "not an IPv4 address"),
    ("vm1/24", "not an IPv4 address"),
    ("192.0.2.0/24", "network address"),
    ("192.0.2.255/24", "broadcast address"),
    ("127.0.0.5/8", "cannot be a guest's address"),
    ("169.254.1.1/16", "cannot be a guest's address"),
])
def test_bad_addresses_are_explained(bad: str, why: str) -> None:
    with pytest.raises(ConfigError, match="--guest-ip") as err:
        parse_guest_ip(bad)
    assert why in str(err.value)


def test_a_pool_gives_each_worker_its_own_address() -> None:
    pool = parse_guest_ips("10.20.0.10-10.20.0.12/16")
    assert [str(pool.for_worker(i)) for i in range(3)] == ["10.20.0.10", "10.20.0.11", "10.20.0.12"]
    assert pool.label == "10.20.0.10-10.20.0.12/16"
    with pytest.raises(ConfigError, match="holds 3"):
        pool.for_worker(3)


@pytest.mark.parametrize(("bad", "why"), [
    ("10.0.0.10/24", "FIRST-LAST/PREFIX"),
    ("10.0.0.12-10.0.0.10/24", "comes before"),
    ("10.0.0.10-10.0.1.10/24", "outside"),
    ("10.0.0.1-10.0.3.1/16", "at most 256"),
])
def test_bad_pools_are_explained(bad: str, why: str) -> None:
    with pytest.raises(ConfigError, match="--guest-ips") as err:
        parse_guest_ips(bad)
    assert why in str(err.value)


def test_worker_ids() -> None:
    assert (worker_index("master"), worker_index("gw0"), worker_index("gw12")) == (0, 0, 12)
    with pytest.raises(ValueError):
        worker_index("gwx")


def test_mac_is_libvirts_range_stable_and_distinct_per_run_pair_and_worker() -> None:
    mac = guest_mac("run1", "h1", "h2", "gw0")
    assert mac.startswith("52:54:00:") and len(mac.split(":")) == 6
    assert mac == guest_mac("run1", "h1", "h2", "gw0")
    others = {guest_mac("run2", "h1", "h2", "gw0"), guest_mac("run1", "h1", "h3", "gw0"),
              guest_mac("run1", "h1", "h2", "gw1"), guest_mac("run1", "h2", "h1", "gw0")}
    assert mac not in others and len(others) == 4


# --- together, with the pair ---------------------------------------------------------------

LAB = DefaultPair("h1", "h2", "nfs", "/srv/virtmig-export", Path("/nonexistent/ssh_config"),
                  GuestSite(parse_guest_network("bridge:br0"), parse_guest_ip("198.18.0.100/24")),
                  GuestShape(cpu="qemu64"))


@pytest.fixture
def ssh_cfg(tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text("Host alpha\n    HostName 127.0.0.1\n    Port 2201\n"
                    "Host beta\n    HostName 192.0.2.12\n")
    return path


def test_the_lab_hands_in_its_guest_as_defaults_a_site_can_override() -> None:
    rc = build_run_config(None, None, None, None, "/mnt/nfs", None, LAB)
    assert (rc.guest.network.label, rc.guest.addresses.label) == ("bridge:br0", "198.18.0.100/24")
    other = build_run_config(None, None, None, None, "/mnt/nfs", None, LAB,
                             guest_addresses=parse_guest_ip("198.18.0.101/24"))
    assert other.guest.addresses.label == "198.18.0.101/24"


def test_a_site_must_name_its_guest_network_and_address(ssh_cfg: Path) -> None:
    with pytest.raises(ConfigError, match="--guest-network and --guest-ip or --guest-ips missing"):
        build_run_config("alpha", "beta", None, None, "/mnt/nfs", ssh_cfg, LAB)
    with pytest.raises(ConfigError, match="^--guest-ip or --guest-ips missing"):
        build_run_config("alpha", "beta", None, None, "/mnt/nfs", ssh_cfg, LAB,
                         guest_network=parse_guest_network("default"))


def test_the_guest_may_not_take_a_hosts_address(ssh_cfg: Path) -> None:
    with pytest.raises(ConfigError, match=r"192\.0\.2\.12 is the address of --dst 'beta'"):
        build_run_config("alpha", "beta", None, None, "/mnt/nfs", ssh_cfg, LAB,
                         guest_network=parse_guest_network("default"),
                         guest_addresses=parse_guest_ips("192.0.2.10-192.0.2.20/24"))
    rc = build_run_config("alpha", "beta", None, None, "/mnt/nfs", ssh_cfg, LAB,
                          guest_network=parse_guest_network("default"), guest_addresses=parse_guest_ip("192.0.2.13/24"))
    assert rc.guest.addresses.label == "192.0.2.13/24"


@pytest.mark.parametrize(("args", "message"), [
    (["--guest-ip", "192.0.2.50"], "not in the form ADDR/PREFIX"),
    (["--guest-ips", "192.0.2.50-192.0.2.40/24"], "comes before"),
    (["--guest-network", "bridge:"], "not an interface name"),
    (["--guest-ip", "198.18.0.101/24", "--guest-ips", "198.18.0.110-198.18.0.111/24"], "not both"),
])
def test_bad_guest_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    """Exit 4 while options are parsed: no fixture, no host, no lab."""
    result = pytester.runpytest("-p", "fixtures.options", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_a_site_run_without_its_guest_network_is_a_usage_error(pytester: pytest.Pytester, ssh_cfg: Path) -> None:
    result = pytester.runpytest("-p", "fixtures.options", "--src", "alpha", "--dst", "beta",
                                "--ssh-config", str(ssh_cfg))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--guest-network and --guest-ip or --guest-ips missing*"])


@pytest.mark.parametrize(("addresses", "gateway", "message"), [
    ("192.0.2.50/24", "198.51.100.1", "outside the guest's subnet 192.0.2.0/24"),
    ("192.0.2.50/24", "192.0.2.50", "is the guest's own address"),
    ("192.0.2.50-192.0.2.57/24", "192.0.2.53", "is the guest's own address"),
    ("192.0.2.50/24", "192.0.2.255", "broadcast address"),
    ("192.0.2.50/24", "gw.example", "is not an IPv4 address"),
])
def test_a_gateway_off_the_guests_subnet_or_on_its_address_is_refused(addresses: str, gateway: str,
                                                                       message: str) -> None:
    parsed = parse_guest_ips(addresses) if "-" in addresses else parse_guest_ip(addresses)
    with pytest.raises(ConfigError, match=message):
        parsed.with_gateway(gateway)


def test_a_gateway_on_the_subnet_is_kept() -> None:
    assert str(parse_guest_ip("192.0.2.50/24").with_gateway("192.0.2.1").gateway) == "192.0.2.1"
    assert parse_guest_ip("192.0.2.50/24").gateway is None
