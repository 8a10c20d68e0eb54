"""The lab's NFS server: rpcbind and nfs-ganesha inside the `nfs` node.

This kernel has no NFS server, so the lab runs nfs-ganesha (userspace, VFS
backend).  It keeps the semantics the failure-mode suites rely on: root_squash,
modes and ownership are enforced by the server.  ganesha registers with
rpcbind, which must run in the same namespace first (else `Cannot register NFS
V3 on UDP` and clients get `nfs_service failed`).

ganesha.conf holds the server settings and includes `exports.conf`, so that
the exports can be rewritten alone (by `exportfs_adapter`, from the standard
/etc/exports) and reloaded with SIGHUP without touching the rest.  The
harness's `--nfs-server-kind ganesha` (virtmig.storage.ganesha) writes its
EXPORT block into ganesha.conf itself, as on a real ganesha server: the two
never write the same file, and its Export_Ids (60000 up) are not the
adapter's (1 up).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from virtmig.lab.netns import Node
from virtmig.lab.topology import EXPORT_DIR, H1, H2, NFS
from virtmig.waiters import wait_for

GANESHA_DIR = "/etc/ganesha"
GANESHA_CONF = f"{GANESHA_DIR}/ganesha.conf"
#: The exports alone; ganesha.conf includes it.  Rewritten by `exportfs -ra`.
GANESHA_EXPORTS = f"{GANESHA_DIR}/exports.conf"
GANESHA_PIDFILE = "/run/ganesha/ganesha.pid"
#: The kernel server's default anonymous uid/gid (nobody/nogroup); ganesha's
#: own default is (uint32)-2, which no /etc/passwd names.
ANON_ID = 65534


def client_block(clients: Sequence[str], options: str) -> str:
    """A ganesha CLIENT block with the semantics of one /etc/exports client entry.

    Understood (exports(5)): rw/ro, root_squash/no_root_squash/all_squash,
    anonuid/anongid, secure/insecure (reserved source port only if `secure` is
    given), sec=sys.  sync/async, no_subtree_check
    and friends have no ganesha equivalent (ganesha honours the client's
    stable flag and has no subtree checks) and are accepted silently.
    """
    opts: dict[str, str] = {}
    for word in options.split(","):
        key, _, value = word.strip().partition("=")
        if key:
            opts[key] = value
    access = "RO" if "ro" in opts and "rw" not in opts else "RW"
    squash = "No_Root_Squash" if "no_root_squash" in opts else (
        "All_Squash" if "all_squash" in opts else "Root_Squash")
    anonuid = opts.get("anonuid") or str(ANON_ID)
    anongid = opts.get("anongid") or str(ANON_ID)
    # Only an explicit `secure` (exportfs_adapter adds the exports(5) default)
    # requires a reserved source port: the lab's own blocks never did, and
    # QEMU's libnfs, running unprivileged, cannot bind one.
    privileged = "true" if "secure" in opts and "insecure" not in opts else "false"
    sec = opts.get("sec", "sys").replace(":", ", ")
    return (
        "    CLIENT {\n"
        f"        Clients = {', '.join(clients)};\n"
        f"        Access_Type = {access};\n"
        f"        Squash = {squash};\n"
        f"        Anonymous_Uid = {anonuid};\n"
        f"        Anonymous_Gid = {anongid};\n"
        f"        PrivilegedPort = {privileged};\n"
        f"        SecType = {sec};\n"
        "    }\n"
    )


def export_rules_block(export_id: int, path: Path | str, rules: Sequence[tuple[Sequence[str], str]]) -> str:
    """A ganesha EXPORT block with one CLIENT block per (clients, options) rule.

    Unlisted clients get no access (Access_Type = None at export level), as
    with the kernel server.
    """
    return (
        "EXPORT {\n"
        f"    Export_Id = {export_id};\n"
        f"    Path = {path};\n"
        f"    Pseudo = {path};\n"
        "    Protocols = 3, 4;\n"
        "    Transports = TCP;\n"
        "    Access_Type = None;\n"
        "    # Short attribute cache, so a chmod on the server is seen soon (ganesha 4.x\n"
        "    # takes this per export; in a CACHEINODE block it is ignored as unknown).\n"
        "    Attr_Expiration_Time = 1;\n"
        "    FSAL { Name = VFS; }\n"
        + "".join(client_block(clients, options) for clients, options in rules)
        + "}\n"
    )


def export_block(export_id: int, path: Path, clients: list[str], *, options: str = "rw,sync,root_squash") -> str:
    """A ganesha EXPORT block equivalent to an /etc/exports line's options."""
    return export_rules_block(export_id, path, [(clients, options)])


def base_config(exports: str, *, bind_addr: str = NFS.ip) -> str:
    """ganesha.conf: server settings, then `exports` (blocks or an %include)."""
    return (
        "# virtmig lab: nfs-ganesha on the nfs node's lab address only.\n"
        "NFS_CORE_PARAM {\n"
        f"    Bind_addr = {bind_addr};\n"
        "    Protocols = 3, 4;\n"
        "}\n"
        "NFSV4 {\n"
        "    # No 90 s grace period after start: the lab is new every time.\n"
        "    Graceless = true;\n"
        "}\n"
        + exports
    )


def prepare(state_dir: Path, *, bind_addr: str = NFS.ip, exports: str | None = None) -> None:
    """Per-node ganesha config and the exported directory (node's private copies).

    `exports` are ganesha EXPORT blocks; by default the lab's export to h1 and h2.
    """
    etc = state_dir / "etc-ganesha"
    etc.mkdir(parents=True, exist_ok=True)
    if exports is None:
        exports = export_block(1, EXPORT_DIR, [H1.ip, H2.ip])
    (etc / "exports.conf").write_text(exports)
    (etc / "ganesha.conf").write_text(base_config(f'%include "{GANESHA_EXPORTS}"\n', bind_addr=bind_addr))
    (state_dir / "export").mkdir(exist_ok=True)
    (state_dir / "export").chmod(0o755)
    (state_dir / "var-lib-nfs").mkdir(exist_ok=True)


def start(node: Node, logs: Path, *, state_dir: Path | None = None, bind_addr: str | None = None,
          export_dir: Path = EXPORT_DIR, exports: str | None = None) -> dict[str, int]:
    """Start rpcbind then ganesha inside the node; return their PIDs.

    The node must have a private /run (hostfs mounts a tmpfs there): rpcbind's
    socket and ganesha's pid file live in it.  `state_dir` defaults to the
    node's lab state dir, `bind_addr` to the node's address.
    """
    state = state_dir if state_dir is not None else node.spec.state_dir
    prepare(state, bind_addr=bind_addr or node.spec.ip, exports=exports)
    node.run(["mkdir", "-p", str(export_dir), "/run/ganesha", "/run/rpcbind"])
    node.bind(state / "export", str(export_dir))
    node.bind(state / "etc-ganesha", GANESHA_DIR)
    node.bind(state / "var-lib-nfs", "/var/lib/nfs")
    node.run(["mkdir", "-p", "/var/lib/nfs/ganesha"])
    pids = {"rpcbind": node.spawn(["rpcbind", "-f", "-w"], logs / "rpcbind.log")}
    wait_for(lambda: node.run(["test", "-S", "/run/rpcbind.sock"], check=False).returncode == 0 or None,
             target=f"rpcbind on lab node {node.spec.name}", state="listening on /run/rpcbind.sock",
             timeout=5.0, interval=0.1)
    pids["ganesha"] = node.spawn(
        ["ganesha.nfsd", "-F", "-L", "/dev/stderr", "-f", GANESHA_CONF, "-p", GANESHA_PIDFILE],
        logs / "ganesha.log",
    )
    return pids
