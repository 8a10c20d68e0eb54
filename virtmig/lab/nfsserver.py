"""The lab's NFS server: rpcbind and nfs-ganesha inside the `nfs` node.

This kernel has no NFS server, so the lab runs nfs-ganesha (userspace, VFS
backend).  It keeps the semantics the failure-mode suites rely on: root_squash,
modes and ownership are enforced by the server.  ganesha registers with
rpcbind, which must run in the same namespace first (else `Cannot register NFS
V3 on UDP` and clients get `nfs_service failed`).

ganesha.conf holds the server settings and includes `exports.conf`, so that
the exports can be rewritten alone (by `exportfs_adapter`, from the standard
/etc/exports, through virtmig.storage.exports_to_ganesha: the translator the
harness uses too) and reloaded with SIGHUP without touching the rest.  The
harness's `--nfs-server-kind ganesha` (virtmig.storage.ganesha) writes its
EXPORT block into ganesha.conf itself, as on a real ganesha server: the two
never write the same file, and its Export_Ids (60000 up) are not the
adapter's (1 up).
"""

from __future__ import annotations

from pathlib import Path

from virtmig.lab.netns import Node
from virtmig.lab.topology import EXPORT_DIR, NFS
from virtmig.waiters import wait_for

GANESHA_DIR = "/etc/ganesha"
GANESHA_CONF = f"{GANESHA_DIR}/ganesha.conf"
#: The exports alone; ganesha.conf includes it.  Rewritten by `exportfs -ra`.
GANESHA_EXPORTS = f"{GANESHA_DIR}/exports.conf"
GANESHA_PIDFILE = "/run/ganesha/ganesha.pid"


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


def prepare(state_dir: Path, *, bind_addr: str = NFS.ip, exports: str = "") -> None:
    """Per-node ganesha config and the exported directory (node's private copies).

    `exports` are ganesha EXPORT blocks, none by default: the exports come
    from /etc/exports through the lab's exportfs (exportfs_adapter).
    """
    etc = state_dir / "etc-ganesha"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "exports.conf").write_text(exports)
    (etc / "ganesha.conf").write_text(base_config(f'%include "{GANESHA_EXPORTS}"\n', bind_addr=bind_addr))
    (state_dir / "export").mkdir(exist_ok=True)
    (state_dir / "export").chmod(0o755)
    (state_dir / "var-lib-nfs").mkdir(exist_ok=True)


def start(node: Node, logs: Path, *, state_dir: Path | None = None, bind_addr: str | None = None,
          export_dir: Path = EXPORT_DIR, exports: str = "") -> dict[str, int]:
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
    wait_for(lambda: node.run(["test", "-S", "/run/rpcbind.sock"], check=False).ok or None,
             target=f"rpcbind on lab node {node.spec.name}", state="listening on /run/rpcbind.sock",
             timeout=5.0, interval=0.1)
    pids["ganesha"] = node.spawn(
        ["ganesha.nfsd", "-F", "-L", "/dev/stderr", "-f", GANESHA_CONF, "-p", GANESHA_PIDFILE],
        logs / "ganesha.log",
    )
    return pids
