"""Bring the embedded lab up and down.

`up` destroys first (molecule's rule), so a run cleans what an aborted run
left: namespaces outlive a crashed process.  `down` ends only the lab's own
processes (everything living in a `virtmig-*` namespace), by PID, then removes
every namespace, link and file the lab made.  Both are idempotent.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from virtmig.lab import exportfs_adapter, hostfs, inventory_file, network, nfs_fuse, nfsserver, realkernel, sysctls
from virtmig.lab.netns import LabError, Node, lab_netns_names, netns_exists, netns_pids, sh, terminate
from virtmig.lab.topology import DEFAULT_SITE, LAB_ROOT, SHARED_DIR, SSH_CONFIG, SSH_WRAPPER, LabNode, Site
from virtmig.waiters import wait_for

STATE_FILE = LAB_ROOT / "state.json"
LOG_DIR = LAB_ROOT / "logs"
SYSCTLS_BEFORE = LAB_ROOT / "sysctls-before.json"


@dataclass
class NodeState:
    """What `up` started on one node, kept so that `status` can check it."""

    holder_pid: int
    daemons: dict[str, int] = field(default_factory=dict)


@dataclass
class LabState:
    nodes: dict[str, NodeState]
    ssh_config: str
    started_s: float
    #: The topology that is up (the default site unless `up --site FILE`).
    site: Site = DEFAULT_SITE

    def save(self) -> None:
        raw = asdict(self)
        raw["site"] = self.site.to_dict()
        STATE_FILE.write_text(json.dumps(raw, indent=2))

    @classmethod
    def load(cls) -> LabState | None:
        if not STATE_FILE.exists():
            return None
        raw = json.loads(STATE_FILE.read_text())
        nodes = {k: NodeState(**v) for k, v in raw["nodes"].items()}
        site = Site.from_dict(raw["site"]) if "site" in raw else DEFAULT_SITE
        return cls(nodes=nodes, ssh_config=raw["ssh_config"], started_s=raw["started_s"], site=site)


def up(site: Site = DEFAULT_SITE, *, timeout: float = 90.0) -> LabState:
    """Create the lab (as *site*: 2-6 hypervisors and an NFS server) from nothing and wait until every service answers.

    Each hypervisor gets the same set-up (its own /etc copies, link, sshd,
    libvirtd, the `mount -t nfs` adapter); /etc/hosts and the ssh configs
    name every node; the Ansible inventory (inventory_file) lists them all.
    """
    started = time.monotonic()
    down()
    LAB_ROOT.mkdir(parents=True, exist_ok=True)
    LAB_ROOT.chmod(0o755)
    sysctls.apply(SYSCTLS_BEFORE)
    hostfs.prepare_journal_mountpoint()
    SHARED_DIR.mkdir(parents=True, exist_ok=True)
    hostfs.make_lab_key()
    for spec in site.nodes:
        hostfs.prepare_node(spec, site)
    state = LabState(nodes={}, ssh_config=str(SSH_CONFIG), started_s=0.0, site=site)
    state.save()  # before the first link, so that `down` after a crash knows which site's links to remove
    hostfs.write_controller_ssh(site)
    inventory_file.write(site)
    network.create_bridge(site)
    try:
        for spec in site.nodes:
            node = Node.create(spec)
            state.nodes[spec.name] = NodeState(holder_pid=node.holder_pid)
            network.wire_node(node, site)
            hostfs.bind_node(node)
            state.nodes[spec.name].daemons = _start_daemons(node, site)
            state.save()
        for spec in site.nodes:
            _wait_ssh(spec, timeout)
        for spec in site.hypervisors:
            _wait_libvirt(spec, timeout)
            hostfs.save_caps_cache(spec)
    except BaseException:
        down()
        raise
    state.started_s = round(time.monotonic() - started, 2)
    state.save()
    return state


#: How the lab runs libvirtd: in the foreground, started by us (no systemd in a node), under the lab's
#: reaper, which reaps its QEMUs when they end as systemd would (`virtmig.lab.reaper` says why).
LIBVIRTD = ["/usr/sbin/libvirtd"]


def _start_daemons(node: Node, site: Site) -> dict[str, int]:
    logs = LOG_DIR / node.spec.name
    daemons = {"sshd": node.spawn(["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config"], logs / "sshd.log")}
    if node.spec.hypervisor:
        daemons["libvirtd"] = node.spawn(LIBVIRTD, logs / "libvirtd.log", reap_orphans=True)
        # Lab adapter: `mount -t nfs` through the userspace client (no kernel NFS here).
        nfs_fuse.setup_node(node, node.spec.state_dir)
    if node.spec == site.nfs:
        # A fresh NFS server: ganesha with no exports, an empty /etc/exports and
        # the lab's `exportfs` adapter; the harness provisions the export.
        daemons.update(nfsserver.start(node, logs, export_dir=Path(str(site.export)), exports=""))
        exportfs_adapter.setup_node(node, node.spec.state_dir)
        node.run(["exportfs", "-ra"])
    return daemons


def restart_libvirtd(name: str, *, timeout: float = 90.0) -> int:
    """Start libvirtd again on hypervisor *name* after it died (the fault suite kills it); its new PID.

    The lab's stand-in for `systemctl restart libvirtd`: started as `up`
    starts it, and recorded in the lab's state, so `status` and `is_up`
    see the new daemon (else the next session would raise the lab again).
    A libvirtd still running is left as it is.
    """
    state = LabState.load()
    spec = next((n for n in (state.site.nodes if state else ()) if n.name == name and n.hypervisor), None)
    if state is None or spec is None:
        raise LabError(f"no lab hypervisor {name!r} is up")
    recorded = state.nodes[name]
    old = recorded.daemons.get("libvirtd")
    if old is not None and old in netns_pids(spec.netns):
        return old
    recorded.daemons["libvirtd"] = Node(spec, recorded.holder_pid).spawn(
        LIBVIRTD, LOG_DIR / name / "libvirtd.log", reap_orphans=True)
    state.save()
    _wait_libvirt(spec, timeout)
    return recorded.daemons["libvirtd"]


def _wait_ssh(spec: LabNode, timeout: float) -> None:
    wait_for(lambda: _ssh_answers(spec) or None, target=f"sshd on lab node {spec.name} ({spec.ip}:22)",
             state="answering", timeout=timeout)


def _wait_libvirt(spec: LabNode, timeout: float) -> None:
    def answers() -> bool | None:
        proc = subprocess.run(
            ["virsh", "-c", f"qemu+ssh://{spec.name}/system?command={SSH_WRAPPER}", "uri"],
            capture_output=True, text=True,
        )
        return proc.returncode == 0 or None

    wait_for(answers, target=f"libvirtd on lab node {spec.name}", state="answering over qemu+ssh", timeout=timeout)


def down() -> None:
    """End every process living in a lab namespace, then remove what the lab made (whichever site was up)."""
    saved = LabState.load() if STATE_FILE.exists() else None
    realkernel.stop()  # the real-kernel VM first, by its recorded PIDs
    names = lab_netns_names()
    for name in names:
        terminate(netns_pids(name))
    for name in names:
        sh(["ip", "netns", "del", name], check=False)
    network.remove_links(saved.site if saved else DEFAULT_SITE)
    leftover = [n for n in names if netns_exists(n)]
    if leftover:
        raise LabError(f"namespaces still present after down: {leftover}")
    sysctls.restore(SYSCTLS_BEFORE)
    hostfs.remove_journal_mountpoint()
    if LAB_ROOT.exists():
        shutil.rmtree(LAB_ROOT)


@dataclass(frozen=True)
class NodeStatus:
    name: str
    netns: bool
    daemons: dict[str, bool]
    ssh: bool


def status() -> list[NodeStatus]:
    """What is up: namespaces, recorded daemons alive, sshd answering (nodes of the site that was raised)."""
    state = LabState.load()
    result = []
    for spec in (state.site if state else DEFAULT_SITE).nodes:
        recorded = state.nodes.get(spec.name) if state else None
        daemons = {}
        if recorded:
            members = set(netns_pids(spec.netns)) if netns_exists(spec.netns) else set()
            daemons = {name: pid in members for name, pid in recorded.daemons.items()}
        result.append(NodeStatus(spec.name, netns_exists(spec.netns), daemons, _ssh_answers(spec)))
    return result


def site_up() -> Site | None:
    """The site the lab was raised as, if a lab was raised (up or not)."""
    state = LabState.load()
    return state.site if state else None


def is_up(site: Site = DEFAULT_SITE) -> bool:
    """Every node of *site* has its namespace, its daemons and an answering sshd (another site up: False)."""
    if (site_up() or DEFAULT_SITE) != site:
        return False
    return all(s.netns and s.ssh and s.daemons and all(s.daemons.values()) for s in status())


def _ssh_answers(spec: LabNode) -> bool:
    if not netns_exists(spec.netns):
        return False
    try:
        with socket.create_connection((spec.ip, 22), timeout=1) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False

