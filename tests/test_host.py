"""virtmig.host against a real sshd on 127.0.0.1 (see the `sshd` fixture)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Sshd
from virtmig.host import CommandError, CommandResult, CommandTimeout, Host, HostConnectionError, ssh_wrapper

AWKWARD = ["a b", "it's", '"dq"', "$HOME", "`id`", "x;y", "back\\slash", "*", "", "tab\there", "new\nline", "-n"]


@pytest.fixture
def host(sshd: Sshd) -> Iterator[Host]:
    with Host(sshd.alias, sshd.ssh_config) as h:
        yield h


@pytest.fixture
def remote_dir(host: Host) -> Iterator[str]:
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


def test_argv_reaches_the_command_verbatim(host: Host) -> None:
    result = host.run("printf", "[%s]", *AWKWARD)
    assert result.stdout == "".join(f"[{a}]" for a in AWKWARD)
    assert result.rc == 0 and result.stderr == "" and result.ok


def test_rc_stderr_and_check(host: Host) -> None:
    result = host.run("sh", "-c", 'echo out; echo "err $1" >&2; exit 3', "sh", "a;b", check=False)
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err a;b\n")
    with pytest.raises(CommandError) as info:
        host.run("sh", "-c", "echo boom >&2; exit 7")
    assert str(info.value).startswith(f"{host.name}: command failed with rc=7: sh -c ")
    assert "stderr: boom" in str(info.value)


def test_stdin_is_sent_and_closed(host: Host) -> None:
    assert host.run("cat", stdin="x $y\n'z'\n").stdout == "x $y\n'z'\n"
    assert host.run("cat").stdout == ""  # EOF at once, never the harness's stdin


def test_run_script_takes_values_as_arguments(host: Host) -> None:
    script = 'printf "[%s]" "$@" | tr a-z A-Z\necho\necho "$#"\n'
    result = host.run_script(script, args=AWKWARD)
    assert result.stdout == "".join(f"[{a.upper()}]" for a in AWKWARD) + f"\n{len(AWKWARD)}\n"
    with pytest.raises(CommandError, match="sh -c <<'SCRIPT' x\nexit 4\nSCRIPT"):
        host.run_script("exit 4\n", args=["x"])


def test_run_script_has_an_empty_stdin(host: Host) -> None:
    """The script travels as an argument: a command in it that reads stdin sees EOF at once."""
    assert host.run_script("cat; echo done", timeout=10).stdout == "done\n"


def test_timeout(host: Host) -> None:
    with pytest.raises(CommandTimeout, match="timed out after 0.5 s: sleep 10"):
        host.run("sleep", "10", timeout=0.5)
    assert host.run("echo", "still usable").stdout == "still usable\n"


def test_files_round_trip(host: Host, remote_dir: str, tmp_path: Path) -> None:
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


def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with Host(sshd.alias, sshd.client_config("unknown", empty)) as h:
        with pytest.raises(HostConnectionError, match=r"testhost: cannot ssh to root@127.0.0.1:\d+: .*not found"):
            h.run("true")


def test_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    with Host(sshd.alias, sshd.client_config("changed", wrong)) as h:
        with pytest.raises(HostConnectionError, match="does not match"):
            h.run("true")


def test_libvirt_uri(sshd: Sshd) -> None:
    assert Host("h1").libvirt_uri() == "qemu+ssh://h1/system"
    given = Host("h1", sshd.ssh_config, ssh_wrapper=Path("/a dir/ssh?&"))
    assert given.libvirt_uri() == "qemu+ssh://h1/system?command=/a%20dir/ssh%3F%26"
    with Host("h1", sshd.ssh_config) as made:
        uri = made.libvirt_uri()
        wrapper = Path(uri.split("command=", 1)[1])
        assert wrapper.read_text() == f'#!/bin/sh\nexec ssh -F {sshd.ssh_config} "$@"\n'
    assert not wrapper.exists()  # close() removes what the Host created


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
    uri = Host(sshd.alias, sshd.ssh_config, ssh_wrapper=spy).libvirt_uri()
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # no stderr noise
    try:
        libvirt.open(uri).close()  # succeeds only if a libvirtd runs on this machine
    except libvirt.libvirtError as exc:
        # The far end of ssh ran: its helper could not reach a libvirtd socket.
        assert "virt-ssh-helper" in str(exc) or "libvirt-sock" in str(exc), exc
    assert sshd.alias in calls.read_text().splitlines()
