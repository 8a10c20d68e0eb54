"""The lab certified as a site would certify its own pair: only the options a real user has.

The inner runs name the hosts (--src/--dst with the lab's ssh config, as a
site admin's would), the storage, the guest's network and address, so
nothing of the lab's defaults is used; the lab is only the hardware.  The
lab is held (and brought up, and down again if it was down) by `lab_up`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.inner_run import certified_round_trip, migrations, output_tail, run_suite
from virtmig.lab import lifecycle, site
from virtmig.lab.network import GUEST_BRIDGE
from virtmig.lab.topology import DEFAULT_SITE, EXPORT_DIR, H1, H2, NFS, SSH_CONFIG
from virtmig.pairlock import LOCK_DIR, Holder

pytestmark = pytest.mark.lab

#: A guest address in the lab's subnet other than the lab's default guest's.
SITE_GUEST_IP = "198.18.0.102/24"
SITE_MOUNT = "/var/lib/virtmig-site-store"


def site_args(*extra: str) -> list[str]:
    return ["--src", H1.name, "--dst", H2.name, "--ssh-config", str(SSH_CONFIG),
            "--nfs-server", NFS.name, "--export", str(EXPORT_DIR), "--mount-point", SITE_MOUNT, *extra]


def test_a_site_run_with_storage_is_shared_certifies(lab_up: None, tmp_path: Path) -> None:
    """--storage-is-shared after virtmig's own check: migrations use --unsafe and every record says why."""
    proc, html = run_suite(tmp_path, "suites/live", "-k", "round_trip and p2p and not tunnelled",
                           *site_args("--guest-network", f"bridge:{GUEST_BRIDGE}", "--guest-ip", SITE_GUEST_IP,
                                      "--storage-is-shared"))
    hops = certified_round_trip(proc, html)
    for hop in hops:
        assert any(note.startswith("--unsafe: --storage-is-shared: the operator vouches that "
                                   f"{SITE_MOUNT} is shared, and virtmig's own check agreed") for note in hop["notes"])


def test_a_site_run_without_it_is_not_certified_and_told_the_option(lab_up: None, tmp_path: Path) -> None:
    """The same run without --storage-is-shared: libvirt refuses the FUSE mount, and the diagnosis names the fix."""
    proc, html = run_suite(tmp_path, "suites/live", "-k", "round_trip and p2p and not tunnelled",
                           *site_args("--guest-network", f"bridge:{GUEST_BRIDGE}", "--guest-ip", SITE_GUEST_IP))
    assert proc.returncode == 1, output_tail(proc)
    assert "NOT CERTIFIED" in proc.stdout, output_tail(proc)
    (hop,) = migrations(html)
    assert "Migration without shared storage is unsafe" in (hop["error"] or "")
    assert "--storage-is-shared" in html.read_text(), "the diagnosis does not name --storage-is-shared"


def test_a_missing_bridge_is_named_per_host_before_any_guest_starts(lab_up: None, tmp_path: Path) -> None:
    proc, html = run_suite(tmp_path, "suites/live", "-k", "round_trip and p2p and not tunnelled",
                           *site_args("--guest-network", "bridge:vmbr9", "--guest-ip", SITE_GUEST_IP,
                                      "--storage-is-shared"))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "h1: bridge vmbr9 missing" in out and "h2: bridge vmbr9 missing" in out, output_tail(proc)
    assert "create bridge vmbr9 on h1, h2" in out, output_tail(proc)
    assert not (html.parent / "results.json").exists() or migrations(html) == [], "a migration ran"


def test_an_address_that_answers_is_refused_before_any_guest_starts(lab_up: None, tmp_path: Path) -> None:
    """The NFS server's address is in use on the guest's network: the run stops, naming it."""
    proc, html = run_suite(tmp_path, "suites/live", "-k", "round_trip and p2p and not tunnelled",
                           *site_args("--guest-network", f"bridge:{GUEST_BRIDGE}", "--guest-ip", f"{NFS.ip}/24",
                                      "--storage-is-shared"))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert f"{NFS.ip} already answers" in out, output_tail(proc)
    assert not (html.parent / "results.json").exists() or migrations(html) == [], "a migration ran"


def _ssh(node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(SSH_CONFIG), node, *argv], capture_output=True, text=True, timeout=30)


def test_a_pair_held_by_another_run_stops_the_run_naming_the_holder(lab_up: None, tmp_path: Path) -> None:
    """A live run from another controller holds h2: a second run stops before it changes anything."""
    other = Holder("ci@ci-runner-7", "ci-runner-7", 4242, "1", "2026-01-01T00:00:00+00:00", "other-run", "h1->h2")
    made = subprocess.run(["ssh", "-F", str(SSH_CONFIG), H2.name, f"mkdir {LOCK_DIR} && cat > {LOCK_DIR}/holder.json"],
                          input=other.to_json(), capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    try:
        proc, html = run_suite(tmp_path, "suites/live", "-k", "round_trip and p2p and not tunnelled",
                               *site_args("--guest-network", f"bridge:{GUEST_BRIDGE}", "--guest-ip", SITE_GUEST_IP,
                                          "--storage-is-shared"))
        assert proc.returncode == 1, output_tail(proc)
        assert "the pair is busy: h2: held by ci@ci-runner-7 (pytest pid 4242, run other-run" in proc.stdout + \
            proc.stderr, output_tail(proc)
        assert _ssh(H1.name, "test", "-e", LOCK_DIR).returncode != 0, "h1's lock was not given back"
        assert _ssh(H2.name, "cat", f"{LOCK_DIR}/holder.json").stdout.strip() == other.to_json()
    finally:
        _ssh(H2.name, "rm", "-rf", LOCK_DIR)


#: A site in which every value differs from the default lab's (tests/test_site_file.py checks the parsing).
OTHER_SITE = """\
nfs_server = "filer"
hypervisors = ["kvm-a", "kvm-b"]
subnet = "198.19.42.0/24"
vm_bridge = "vmbr7"
export = "/export/vmstore"
mount_point = "/var/lib/vmstore"
"""


def test_a_site_where_every_value_differs_certifies_with_a_users_options_only(lab_lock: bool, tmp_path: Path) -> None:
    """The lab raised as another site (names, subnet, VM bridge, export, mount point, ssh config all its own).

    Certified with the options `up --site` prints, which are what the site's
    user would type: if anything of the default lab were still assumed
    (h1, br0, 198.18.0.x, /srv/virtmig-export), this run would not find it.
    `lab_lock` raises the default lab again afterwards if it was up.
    """
    ssh_config = tmp_path / "site-ssh-config"
    path = tmp_path / "site.toml"
    path.write_text(OTHER_SITE + f'ssh_config = "{ssh_config}"\n')
    chosen = site.load(path)
    assert not {n.name for n in chosen.nodes} & {n.name for n in DEFAULT_SITE.nodes}
    assert not {n.ip for n in chosen.nodes} & {n.ip for n in DEFAULT_SITE.nodes}
    lifecycle.up(chosen)
    written = ssh_config.read_text()
    assert "Host kvm-a kvm-a.site.test" in written and "StrictHostKeyChecking" not in written, written
    proc, html = run_suite(tmp_path, "suites/live", "-k", "round_trip and p2p and not tunnelled",
                           *site.certify_options(chosen, ssh_config))
    certified_round_trip(proc, html, "kvm-a", "kvm-b")
    used = json.loads((html.parent / "results.json").read_text())["guest"]
    assert (used["network"], used["address"]) == ("bridge:vmbr7", "198.19.42.100/24"), used
