"""The lab's ganesha.conf is written for the ganesha installed, and a refused start is reported in ganesha's words.

ganesha 6.x (Debian 13) exits at start without `Allow_Set_Io_Flusher_Fail`
when root lacks CAP_SYS_RESOURCE (as here); 4.x (Debian 12) exits on that
parameter as unknown.  The lab test starts the installed ganesha for real:
once with the config written for the other major version (it must exit,
and the error must carry its own line) and once with the config written for
it (it must start).
Each runs in network and mount namespaces of its own, with no route out, so
ganesha reaches no network and leaves the machine's state directories alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtmig.lab import nfsserver
from virtmig.lab.netns import LabError, is_alive, terminate
from virtmig.waiters import WaitTimeout, wait_for

#: On a veth inside the test's own network namespace only (as tests/test_lab_nfs.py's 198.18.2.0/24).
ADDRESS = "198.18.3.1"


def test_version_is_read_from_ganesha_v() -> None:
    assert nfsserver.parse_version("NFS-Ganesha Release = V4.3\n") == (4, 3)
    assert nfsserver.parse_version("NFS-Ganesha Release = V6.5\n") == (6, 5)
    with pytest.raises(LabError, match="cannot read ganesha's version"):
        nfsserver.parse_version("ganesha.nfsd: not found")


@pytest.mark.parametrize(("version", "has_param"), [((4, 3), False), ((5, 0), True), ((6, 5), True)])
def test_io_flusher_parameter_only_for_the_versions_that_know_it(version: tuple[int, int], has_param: bool) -> None:
    conf = nfsserver.base_config("# exports\n", version=version, bind_addr="198.18.0.10")
    core = conf[conf.index("NFS_CORE_PARAM {"):conf.index("}")]
    assert ("Allow_Set_Io_Flusher_Fail = true;" in core) is has_param
    assert "Bind_addr = 198.18.0.10;" in core
    assert conf.endswith("# exports\n")


def test_failure_lines_prefer_ganesha_fatal_lines() -> None:
    log = ("x : ganesha.nfsd-1[main] main :MAIN :EVENT :ganesha.nfsd Starting: Ganesha Version 6.5\n"
           "x : ganesha.nfsd-1[main] main :MAIN :FATAL :Failed to PR_SET_IO_FLUSHER with EPERM.\n"
           "x : ganesha.nfsd-1[main] main :MAIN :EVENT :bye\n")
    fatal = "x : ganesha.nfsd-1[main] main :MAIN :FATAL :Failed to PR_SET_IO_FLUSHER with EPERM."
    assert nfsserver.failure_lines(log) == [fatal]
    assert nfsserver.failure_lines("one\ntwo\n") == ["two"]
    assert nfsserver.failure_lines("") == ["it logged nothing"]


@pytest.fixture
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="virtmig-ganesha-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _start(conf: str, root: Path) -> list[int]:
    """rpcbind and ganesha.nfsd (foreground) in fresh network and mount namespaces; ganesha's PID first.

    The namespace has lo and a veth pair (both ends inside it) with ADDRESS
    (ganesha resolves its Bind_addr with AI_ADDRCONFIG, which a namespace
    with only lo fails), and no route: ganesha can reach nothing.  Its state
    directories (/var/lib/nfs, /run) are scratch inside its own mount
    namespace, so the machine's are left as they were.
    """
    (root / "ganesha.conf").write_text(conf)
    (root / "var-lib-nfs").mkdir(exist_ok=True)
    (root / "rpcbind.pid").unlink(missing_ok=True)
    script = (
        "ip link set lo up && ip link add vmt-gan type veth peer name vmt-gan-peer && "
        f"ip addr add {ADDRESS}/32 dev vmt-gan && ip link set vmt-gan up && "
        'mount --bind "$1/var-lib-nfs" /var/lib/nfs && mount -t tmpfs tmpfs /run && mkdir -p /run/ganesha && '
        'rpcbind -f -w & echo $! > "$1/rpcbind.pid"; '
        "i=0; while [ ! -S /run/rpcbind.sock ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; "
        'exec ganesha.nfsd -F -L /dev/stderr -f "$1/ganesha.conf" -p /run/ganesha/ganesha.pid'
    )
    with (root / "ganesha.log").open("ab") as out:
        proc = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    pids = [proc.pid]
    with contextlib.suppress(WaitTimeout):
        pids.append(wait_for(lambda: _pid_in(root / "rpcbind.pid"), target="the test's rpcbind", state="started",
                             timeout=5.0, interval=0.05))
    return pids


def _pid_in(path: Path) -> int | None:
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


@pytest.fixture
def installed() -> tuple[int, int]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network and mount namespaces)")
    if shutil.which("ganesha.nfsd") is None:
        pytest.skip("needs nfs-ganesha")
    proc = subprocess.run(["ganesha.nfsd", "-v"], capture_output=True, text=True)
    return nfsserver.parse_version(proc.stdout + proc.stderr)


@pytest.mark.lab
def test_installed_ganesha_starts_with_the_config_written_for_it(installed: tuple[int, int], scratch: Path) -> None:
    log = scratch / "ganesha.log"
    pids = _start(nfsserver.base_config("", version=installed, bind_addr=ADDRESS), scratch)
    try:
        nfsserver.wait_started(pids[0], log, target="ganesha with the config written for it", timeout=30)
        assert is_alive(pids[0])
    finally:
        terminate(pids)
    assert "Unknown parameter" not in log.read_text()


@pytest.mark.lab
def test_the_other_versions_config_is_what_the_installed_ganesha_refuses(installed: tuple[int, int],
                                                                         scratch: Path) -> None:
    """6.x without the parameter exits (no CAP_SYS_RESOURCE), and the error is ganesha's own line; 4.x warns of it.

    ganesha 4.3 only warns "Unknown parameter (Allow_Set_Io_Flusher_Fail)"
    and serves: measured here, so the 4.x check is for that warning.
    """
    log = scratch / "ganesha.log"
    if installed >= nfsserver.IO_FLUSHER_PARAM_SINCE:
        if _has_cap_sys_resource():
            pytest.skip("root here has CAP_SYS_RESOURCE: ganesha can set PR_SET_IO_FLUSHER and starts either way")
        pids = _start(nfsserver.base_config("", version=(4, 3), bind_addr=ADDRESS), scratch)
        try:
            with pytest.raises(LabError, match=r"(?i)exited at start: .*io_flusher"):
                nfsserver.wait_started(pids[0], log, target="ganesha with 4.x's config", timeout=20)
        finally:
            terminate(pids)
    else:
        pids = _start(nfsserver.base_config("", version=(6, 5), bind_addr=ADDRESS), scratch)
        try:
            nfsserver.wait_started(pids[0], log, target="ganesha with 6.x's config", timeout=30)
        finally:
            terminate(pids)
        assert "Unknown parameter (Allow_Set_Io_Flusher_Fail)" in log.read_text()


CAP_SYS_RESOURCE = 24  # linux/capability.h


def _has_cap_sys_resource() -> bool:
    """Whether this process (and so the ganesha it starts as root) has CAP_SYS_RESOURCE."""
    status = Path("/proc/self/status").read_text()
    eff = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
    return bool(int(eff, 16) >> CAP_SYS_RESOURCE & 1)
