"""The lab's NFS server: rpcbind and nfs-ganesha inside the `nfs` node.

This kernel has no NFS server, so the lab runs nfs-ganesha (userspace, VFS
backend).  It keeps the semantics the failure-mode suites rely on: root_squash,
modes and ownership are enforced by the server.  ganesha registers with
rpcbind, which must run in the same namespace first (else `Cannot register NFS
V3 on UDP` and clients get `nfs_service failed`).
"""

from __future__ import annotations

from pathlib import Path

from virtmig.lab.netns import Node
from virtmig.lab.topology import EXPORT_DIR, H1, H2, NFS

GANESHA_CONF = "/etc/ganesha/ganesha.conf"


def export_block(export_id: int, path: Path, clients: list[str], *, options: str = "rw,sync,root_squash") -> str:
    """A ganesha EXPORT block equivalent to an /etc/exports line's options."""
    opts = set(options.split(","))
    access = "RO" if "ro" in opts else "RW"
    squash = "No_Root_Squash" if "no_root_squash" in opts else ("All_Squash" if "all_squash" in opts else "Root_Squash")
    return (
        "EXPORT {\n"
        f"    Export_Id = {export_id};\n"
        f"    Path = {path};\n"
        f"    Pseudo = {path};\n"
        "    Protocols = 3, 4;\n"
        "    Transports = TCP;\n"
        "    SecType = sys;\n"
        "    Access_Type = None;\n"
        "    FSAL { Name = VFS; }\n"
        "    CLIENT {\n"
        f"        Clients = {', '.join(clients)};\n"
        f"        Access_Type = {access};\n"
        f"        Squash = {squash};\n"
        "    }\n"
        "}\n"
    )


def base_config(exports: str) -> str:
    return (
        "# virtmig lab: nfs-ganesha on the nfs node's lab address only.\n"
        "NFS_CORE_PARAM {\n"
        f"    Bind_addr = {NFS.ip};\n"
        "    Protocols = 3, 4;\n"
        "}\n"
        "NFSV4 {\n"
        "    # No 90 s grace period after start: the lab is new every time.\n"
        "    Graceless = true;\n"
        "}\n"
        "CACHEINODE {\n"
        "    # Short attribute cache, so a chmod on the server is seen soon.\n"
        "    Attr_Expiration_Time = 1;\n"
        "}\n"
        + exports
    )


def prepare(state_dir: Path) -> None:
    """Per-node ganesha config and the exported directory (node's private copies)."""
    etc = state_dir / "etc-ganesha"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "ganesha.conf").write_text(base_config(export_block(1, EXPORT_DIR, [H1.ip, H2.ip])))
    (state_dir / "export").mkdir(exist_ok=True)
    (state_dir / "export").chmod(0o755)
    (state_dir / "var-lib-nfs").mkdir(exist_ok=True)


def start(node: Node, logs: Path) -> dict[str, int]:
    """Start rpcbind then ganesha inside the node; return their PIDs."""
    state = node.spec.state_dir
    prepare(state)
    node.run(["mkdir", "-p", str(EXPORT_DIR), "/run/ganesha", "/run/rpcbind"])
    node.bind(state / "export", str(EXPORT_DIR))
    node.bind(state / "etc-ganesha", "/etc/ganesha")
    node.bind(state / "var-lib-nfs", "/var/lib/nfs")
    node.run(["mkdir", "-p", "/var/lib/nfs/ganesha"])
    pids = {"rpcbind": node.spawn(["rpcbind", "-f", "-w"], logs / "rpcbind.log")}
    node.run(["sh", "-c", "for i in $(seq 50); do [ -S /run/rpcbind.sock ] && exit 0; sleep 0.1; done; exit 1"])
    pids["ganesha"] = node.spawn(
        ["ganesha.nfsd", "-F", "-L", "/dev/stderr", "-f", GANESHA_CONF, "-p", "/run/ganesha/ganesha.pid"],
        logs / "ganesha.log",
    )
    return pids
