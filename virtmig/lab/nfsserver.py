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

The config is written for the ganesha installed: 6.x (Debian 13) exits at
start unless `Allow_Set_Io_Flusher_Fail = true`, because it cannot set
PR_SET_IO_FLUSHER without CAP_SYS_RESOURCE, which the lab's root lacks; 4.x
(Debian 12) does not know that parameter and exits on it.
"""

from __future__ import annotations

import re
from pathlib import Path

from virtmig.lab.netns import LabError, Node, is_alive
from virtmig.lab.topology import EXPORT_DIR, NFS
from virtmig.waiters import wait_for

GANESHA_DIR = "/etc/ganesha"
GANESHA_CONF = f"{GANESHA_DIR}/ganesha.conf"
#: The exports alone; ganesha.conf includes it.  Rewritten by `exportfs -ra`.
GANESHA_EXPORTS = f"{GANESHA_DIR}/exports.conf"
GANESHA_PIDFILE = "/run/ganesha/ganesha.pid"


#: The first ganesha release that knows NFS_CORE_PARAM's Allow_Set_Io_Flusher_Fail.
IO_FLUSHER_PARAM_SINCE = (5, 0)
#: What ganesha logs once it serves (both 4.3 and 6.5).
STARTED_LINE = "NFS SERVER INITIALIZED"
_RELEASE = re.compile(r"Release\s*=\s*V(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int]:
    """(major, minor) from `ganesha.nfsd -v` ("NFS-Ganesha Release = V4.3")."""
    match = _RELEASE.search(text)
    if match is None:
        raise LabError(f"cannot read ganesha's version from `ganesha.nfsd -v`: {text.strip()!r}")
    return int(match.group(1)), int(match.group(2))


def installed_version(node: Node) -> tuple[int, int]:
    """The version of the ganesha.nfsd the node would run (asked inside it: its root is the node's)."""
    result = node.run(["ganesha.nfsd", "-v"])
    return parse_version(result.stdout + result.stderr)


def base_config(exports: str, *, version: tuple[int, int], bind_addr: str = NFS.ip) -> str:
    """ganesha.conf for ganesha `version`: server settings, then `exports` (blocks or an %include)."""
    io_flusher = (
        "    # No CAP_SYS_RESOURCE here: run without PR_SET_IO_FLUSHER rather than exit.\n"
        "    Allow_Set_Io_Flusher_Fail = true;\n"
        if version >= IO_FLUSHER_PARAM_SINCE else ""
    )
    return (
        f"# virtmig lab: nfs-ganesha {version[0]}.{version[1]} on the nfs node's lab address only.\n"
        "NFS_CORE_PARAM {\n"
        f"    Bind_addr = {bind_addr};\n"
        "    Protocols = 3, 4;\n"
        + io_flusher
        + "}\n"
        "NFSV4 {\n"
        "    # No 90 s grace period after start: the lab is new every time.\n"
        "    Graceless = true;\n"
        "}\n"
        + exports
    )


def prepare(state_dir: Path, *, version: tuple[int, int], bind_addr: str = NFS.ip, exports: str = "") -> None:
    """Per-node ganesha config and the exported directory (node's private copies).

    `exports` are ganesha EXPORT blocks, none by default: the exports come
    from /etc/exports through the lab's exportfs (exportfs_adapter).
    """
    etc = state_dir / "etc-ganesha"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "exports.conf").write_text(exports)
    conf = base_config(f'%include "{GANESHA_EXPORTS}"\n', version=version, bind_addr=bind_addr)
    (etc / "ganesha.conf").write_text(conf)
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
    prepare(state, version=installed_version(node), bind_addr=bind_addr or node.spec.ip, exports=exports)
    node.run(["mkdir", "-p", str(export_dir), "/run/ganesha", "/run/rpcbind"])
    node.bind(state / "export", str(export_dir))
    node.bind(state / "etc-ganesha", GANESHA_DIR)
    node.bind(state / "var-lib-nfs", "/var/lib/nfs")
    node.run(["mkdir", "-p", "/var/lib/nfs/ganesha"])
    pids = {"rpcbind": node.spawn(["rpcbind", "-f", "-w"], logs / "rpcbind.log")}
    wait_for(lambda: node.run(["test", "-S", "/run/rpcbind.sock"], check=False).ok or None,
             target=f"rpcbind on lab node {node.spec.name}", state="listening on /run/rpcbind.sock",
             timeout=5.0, interval=0.1)
    log = logs / "ganesha.log"
    offset = log.stat().st_size if log.exists() else 0
    pids["ganesha"] = node.spawn(
        ["ganesha.nfsd", "-F", "-L", "/dev/stderr", "-f", GANESHA_CONF, "-p", GANESHA_PIDFILE], log,
    )
    wait_started(pids["ganesha"], log, offset, target=f"ganesha on lab node {node.spec.name}")
    return pids


def wait_started(pid: int, log: Path, offset: int = 0, *, target: str, timeout: float = 30.0) -> None:
    """Wait until ganesha logs that it serves; if it exits first, raise with its own words.

    Why: a ganesha that refused its config exits within a second, and
    without this the lab would fail later and elsewhere (exportfs finding no
    pid, clients finding no server) with ganesha's reason left in a log file.
    """
    def started() -> bool | None:
        text = _read_from(log, offset)
        if STARTED_LINE in text:
            return True
        if not is_alive(pid):
            raise LabError(f"{target} exited at start: {'; '.join(failure_lines(_read_from(log, offset)))}")
        return None

    wait_for(started, target=target, state=f"logging {STARTED_LINE!r}", timeout=timeout, interval=0.1,
             describe=lambda: " | ".join(failure_lines(_read_from(log, offset))))


def failure_lines(log: str) -> list[str]:
    """What to show when ganesha did not start: its FATAL and CONFIG lines, else CRIT/MAJ, else its last line.

    D-Bus and Kerberos complaints (CRIT, but ganesha carries on without
    them) are shown only when nothing else was logged at that level.
    """
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    decisive = [line for line in lines if ":FATAL :" in line or ":CONFIG :" in line]
    severe = [line for line in lines if ":CRIT :" in line or ":MAJ :" in line]
    quiet = [line for line in severe if ":DBUS :" not in line and "credentials for principal" not in line]
    return decisive or quiet or severe or lines[-1:] or ["it logged nothing"]


def _read_from(log: Path, offset: int) -> str:
    try:
        with log.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
