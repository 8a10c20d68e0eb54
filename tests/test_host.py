"""The host transports against the real thing: `SshHost` on a real sshd on 127.0.0.1 (see the
`sshd` fixture), `LocalHost` with real subprocesses.

The behaviour every caller relies on (quoting, rc/stdout/stderr, check, stdin,
timeout, atomic files) is asserted once, for both transports: they must be
interchangeable behind the `Host` protocol.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Sshd
from tests.replay import ReplayHost
from virtmig.guest.domains import quiet_libvirt
from virtmig.host import CommandError, CommandResult, CommandTimeout, Host, HostConnectionError
from virtmig.lab.netns import LabError, Node
from virtmig.lab.topology import H1
from virtmig.localhost import LocalHost
from virtmig.sshhost import SshHost, ssh_wrapper
from virtmig.waiters import wait_for

AWKWARD = ["a b", "it's", '"dq"', "$HOME", "`id`", "x;y", "back\\slash", "*", "", "tab\there", "new\nline", "-n"]


#: Either transport (both have get(), which the protocol leaves out).
AnyHost = SshHost | LocalHost


@pytest.fixture(params=[pytest.param("ssh", marks=pytest.mark.sshd), "local"])  # ssh: the sshd fixture, by name
def host(request: pytest.FixtureRequest) -> Iterator[AnyHost]:
    if request.param == "local":
        yield LocalHost("local")
        return
    sshd: Sshd = request.getfixturevalue("sshd")
    with SshHost(sshd.alias, sshd.ssh_config) as h:
        yield h


@pytest.fixture
def remote_dir(host: AnyHost) -> Iterator[str]:
    path = host.run("mktemp", "-d").stdout.strip()
    yield path
    host.run("rm", "-rf", "--", path)


def test_result_check() -> None:
    good = CommandResult(rc=0, stdout="", stderr="", command="true", host="h")
    assert good.ok and good.check() is good
    bad = CommandResult(rc=2, stdout="", stderr="x\n" * 5000 + "the reason\n", command="false", host="h9")
    with pytest.raises(CommandError) as info:
        bad.check()
    message = str(info.value)
    assert message.startswith("h9: command failed with rc=2: false\nstderr: ...")
    assert message.endswith("the reason") and len(message) < 2200


def test_argv_reaches_the_command_verbatim(host: AnyHost) -> None:
    result = host.run("printf", "[%s]", *AWKWARD)
    assert result.stdout == "".join(f"[{a}]" for a in AWKWARD)
    assert result.rc == 0 and result.stderr == "" and result.ok


def test_rc_stderr_and_check(host: AnyHost) -> None:
    result = host.run("sh", "-c", 'echo out; echo "err $1" >&2; exit 3', "sh", "a;b", check=False)
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err a;b\n")
    with pytest.raises(CommandError) as info:
        host.run("sh", "-c", "echo boom >&2; exit 7")
    assert str(info.value).startswith(f"{host.name}: command failed with rc=7: sh -c ")
    assert "stderr: boom" in str(info.value)


def test_stdin_is_sent_and_closed(host: AnyHost) -> None:
    assert host.run("cat", stdin="x $y\n'z'\n").stdout == "x $y\n'z'\n"
    assert host.run("cat").stdout == ""  # EOF at once, never the harness's stdin


def test_run_script_takes_values_as_arguments(host: AnyHost) -> None:
    script = 'printf "[%s]" "$@" | tr a-z A-Z\necho\necho "$#"\n'
    result = host.run_script(script, args=AWKWARD)
    assert result.stdout == "".join(f"[{a.upper()}]" for a in AWKWARD) + f"\n{len(AWKWARD)}\n"
    with pytest.raises(CommandError, match="sh -c <<'SCRIPT' x\nexit 4\nSCRIPT"):
        host.run_script("exit 4\n", args=["x"])


def test_run_script_has_an_empty_stdin(host: AnyHost) -> None:
    """The script travels as an argument: a command in it that reads stdin sees EOF at once."""
    assert host.run_script("cat; echo done", timeout=10).stdout == "done\n"


def test_timeout(host: AnyHost) -> None:
    with pytest.raises(CommandTimeout, match="timed out after 0.5 s: sleep 10"):
        host.run("sleep", "10", timeout=0.5)
    assert host.run("echo", "still usable").stdout == "still usable\n"


def test_files_round_trip(host: AnyHost, remote_dir: str, tmp_path: Path) -> None:
    local = tmp_path / "in.bin"
    local.write_bytes(bytes(range(256)) * 100)
    host.put(local, f"{remote_dir}/a", mode=0o640)
    assert host.run("stat", "-c", "%a", f"{remote_dir}/a").stdout == "640\n"
    host.get(f"{remote_dir}/a", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == local.read_bytes()

    target = f"{remote_dir}/dir with space/it's.txt"
    host.run("mkdir", f"{remote_dir}/dir with space")
    host.write_text(target, "first\n", mode=0o600)
    host.write_text(target, "héllo $x\n")  # keeps the old mode
    assert host.read_text(target) == "héllo $x\n"
    assert host.run("stat", "-c", "%a", target).stdout == "600\n"
    assert host.run("ls", "-A", f"{remote_dir}/dir with space").stdout == "it's.txt\n"  # no temp left
    with pytest.raises(FileNotFoundError):
        host.read_text(f"{remote_dir}/absent")


def test_a_failed_write_leaves_the_file_as_it_was(host: AnyHost, remote_dir: str) -> None:
    target = f"{remote_dir}/kept.txt"
    host.write_text(target, "original\n")
    with pytest.raises(UnicodeEncodeError):
        host.write_text(target, "half \udcff")  # fails after the temp file was made
    assert host.read_text(target) == "original\n"
    assert host.run("ls", "-A", remote_dir).stdout == "kept.txt\n"  # no temp left


def test_transports_are_hosts(sshd: Sshd) -> None:
    """Each transport satisfies the protocol (statically: these assignments are type-checked)."""
    hosts: list[Host] = [SshHost("h1", sshd.ssh_config), LocalHost(), ReplayHost("r")]
    assert all(isinstance(h, Host) for h in hosts)
    assert not isinstance("h1", Host)


# -- LocalHost only: what a shell would answer, with no shell in between -----------------


def test_local_missing_or_unexecutable_program_answers_as_a_shell(tmp_path: Path) -> None:
    local = LocalHost("here")
    missing = local.run("virtmig-no-such-program", "x", check=False)
    assert (missing.rc, missing.stdout) == (127, "") and "virtmig-no-such-program: not found" in missing.stderr
    with pytest.raises(CommandError, match="here: command failed with rc=127: virtmig-no-such-program x"):
        local.run("virtmig-no-such-program", "x")
    plain = tmp_path / "not-executable"
    plain.write_text("echo hi\n")
    assert local.run(str(plain), check=False).rc == 126


def test_local_signal_is_128_plus_n() -> None:
    assert LocalHost().run("sh", "-c", "kill -TERM $$", check=False).rc == 128 + 15


def test_local_timeout_ends_the_command_and_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    with pytest.raises(CommandTimeout, match="timed out after 0.5 s") as info:
        LocalHost().run_script('echo started; sleep 60 >/dev/null 2>&1 & echo $! > "$1"; wait', args=[str(pidfile)],
                               timeout=0.5)
    assert info.value.stdout == "started\n"
    child = int(pidfile.read_text())

    def gone() -> bool | None:
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        return True if state in ("Z", "X") else None

    wait_for(gone, target=f"the timed-out command's child (pid {child})", state="ended", timeout=10)


def test_local_write_replaces_the_file_whole(tmp_path: Path) -> None:
    """A reader that opened the old file reads all of it; new readers get all of the new one."""
    target = tmp_path / "f"
    target.write_text("old\n")
    target.chmod(0o640)
    with target.open() as reader:
        LocalHost().write_text(str(target), "new\n")
        assert reader.read() == "old\n"
    assert target.read_text() == "new\n" and oct(target.stat().st_mode & 0o777) == oct(0o640)
    assert os.listdir(tmp_path) == ["f"]


def test_the_lab_node_runner_answers_the_same_result() -> None:
    """virtmig.lab.netns.Node.run is LocalHost through nsenter (here into this process's own namespaces)."""
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        pytest.skip("needs root and nsenter")
    node = Node(H1, os.getpid())
    result = node.run(["sh", "-c", 'cat; echo "err $1" >&2; exit 3', "sh", "a b"], check=False, stdin="in\n")
    assert (result.rc, result.stdout, result.stderr, result.host) == (3, "in\n", "err a b\n", H1.name)
    assert result.command.startswith(f"nsenter -t {os.getpid()} ") and result.command.endswith(" sh 'a b'")
    with pytest.raises(LabError, match="h1: command failed with rc=1: .* false") as info:
        node.run(["false"])
    assert isinstance(info.value.__cause__, CommandError)


def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    h = SshHost(sshd.alias, sshd.client_config("unknown", empty))
    with h, pytest.raises(HostConnectionError, match=r"testhost: cannot ssh to root@127.0.0.1:\d+: .*not found"):
        h.run("true")


def test_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    h = SshHost(sshd.alias, sshd.client_config("changed", wrong))
    with h, pytest.raises(HostConnectionError, match="does not match"):
        h.run("true")


def test_libvirt_uri(sshd: Sshd) -> None:
    assert SshHost("h1").libvirt_uri() == "qemu+ssh://h1/system"
    given = SshHost("h1", sshd.ssh_config, ssh_wrapper=Path("/a dir/ssh?&"))
    assert given.libvirt_uri() == "qemu+ssh://h1/system?command=/a%20dir/ssh%3F%26"
    with SshHost("h1", sshd.ssh_config) as made:
        uri = made.libvirt_uri()
        wrapper = Path(uri.split("command=", 1)[1])
        assert wrapper.read_text() == f'#!/bin/sh\nexec ssh -F {sshd.ssh_config} "$@"\n'
    assert not wrapper.exists()  # close() removes what the SshHost created


def test_ssh_wrapper_makes_ssh_use_the_config(sshd: Sshd, tmp_path: Path) -> None:
    wrapper = ssh_wrapper(sshd.ssh_config, tmp_path / "bin dir" / "ssh")
    result = subprocess.run([str(wrapper), sshd.alias, "echo", "hi"], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr


def test_libvirt_runs_the_uri_command(sshd: Sshd, tmp_path: Path) -> None:
    """libvirt's qemu+ssh transport runs `command=` (checked with a spy that then execs the wrapper)."""
    libvirt = pytest.importorskip("libvirt")
    real = ssh_wrapper(sshd.ssh_config, tmp_path / "ssh")
    calls = tmp_path / "calls"
    spy = tmp_path / "spy"
    spy.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{calls}"\nexec "{real}" "$@"\n')
    spy.chmod(0o755)
    uri = SshHost(sshd.alias, sshd.ssh_config, ssh_wrapper=spy).libvirt_uri()
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # no stderr noise
    try:
        libvirt.open(uri).close()  # succeeds only if a libvirtd runs on this machine
    except libvirt.libvirtError as exc:
        # The far end of ssh ran: its helper could not reach a libvirtd socket.
        assert "virt-ssh-helper" in str(exc) or "libvirt-sock" in str(exc), exc
    finally:  # the process-wide handler back to the harness's, for the tests after this one
        quiet_libvirt.cache_clear()
        quiet_libvirt()
    assert sshd.alias in calls.read_text().splitlines()


# --- line channels ------------------------------------------------------------


def test_line_channel_answers_line_by_line_and_names_its_end(host: AnyHost) -> None:
    channel = host.open_channel('echo "ready $1"; while read -r x; do echo "got $x"; done', args=["a b"])
    try:
        assert channel.read_line(5) == "ready a b"
        assert [channel.exchange(w, 5) for w in ("a", "b c")] == ["got a", "got b c"]
    finally:
        channel.close()
    with pytest.raises(ConnectionError, match="closed"):
        channel.exchange("again", 5)
    ended = host.open_channel("printf partial")
    try:
        with pytest.raises(ConnectionError, match="ended; it had printed 'partial'"):
            ended.read_line(5)
    finally:
        ended.close()


def test_line_channel_times_out(host: AnyHost) -> None:
    channel = host.open_channel("exec sleep 3")
    with pytest.raises(CommandTimeout, match=f"{host.name}: command timed out after 0.2 s"):
        channel.exchange("hello", 0.2)
    channel.close()  # locally: killed after its grace period; over ssh: the channel closes
