"""The ganesha export: its EXPORT block, the markers in ganesha.conf, and the config put back exactly.

Provisioning is driven here against an in-memory server (files, a pid
file, a ganesha process that "reloads" by re-reading the config) so that
every failure path can be provoked; tests/test_lab_ganesha.py runs the
same code against the lab's real ganesha.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import cast

import pytest

from virtmig.storage import exports_to_ganesha as tr
from virtmig.storage import ganesha as g
from virtmig.storage.ganesha_conf import configured_exports, includes
from virtmig.host import CommandError, CommandResult, Host
from virtmig.storage.exports import BEGIN, END, ExportError, ExportSpec, strip_managed_block

pytest_plugins = ["pytester"]

SPEC = ExportSpec(PurePosixPath("/srv/virtmig-export"), ("198.18.0.11", "198.18.0.12"))
CONF = PurePosixPath("/etc/ganesha/ganesha.conf")
#: An operator's config: comments, quotes, nested blocks, an include, no newline at the end.
ORIGINAL = """\
# operator's ganesha.conf   { not a block }
NFS_CORE_PARAM { Protocols = 3, 4; }
EXPORT_DEFAULTS { Access_Type = None; }
EXPORT {
    Export_Id = 60000;   # taken: ours must be another
    Path = "/srv/other";
    Pseudo = /other;
    FSAL { Name = VFS; }
    CLIENT { Clients = 10.0.0.0/8; Access_Type = RO; }
}
%include "exports.d/extra.conf"
LOG { Default_Log_Level = EVENT; }"""
EXTRA = "export { export_id = 7; path = /srv/extra; pseudo = /extra; fsal { name = VFS; } }\n"


def block_of(text: str) -> str:
    return text[text.index(BEGIN):text.index(END) + len(END) + 1]


def test_default_spec_renders_root_squashed_rw_for_the_two_hosts_only() -> None:
    block = g.render_block(SPEC, 60001)
    assert "Export_Id = 60001;" in block
    assert 'Path = "/srv/virtmig-export";' in block and 'Pseudo = "/srv/virtmig-export";' in block
    assert "Protocols = 3, 4;" in block and "FSAL { Name = VFS; }" in block
    assert "Squash = Root_Squash;" in block and "SecType = sys;" in block
    assert "PrivilegedPort = true;" in block, "exports(5) is `secure` unless told `insecure`"
    export_level, client = block.split("CLIENT {")
    assert "Access_Type = None;" in export_level, "unlisted clients must get nothing"
    assert "Clients = 198.18.0.11, 198.18.0.12;" in client and "Access_Type = RW;" in client
    assert block.count("{") == block.count("}")


@pytest.mark.parametrize(("options", "expected"), [
    ("ro,sync", tr.ClientSettings(access="RO")),
    ("sync", tr.ClientSettings(access="RO")),  # exports(5)'s default is ro
    ("rw,no_root_squash,insecure", tr.ClientSettings(access="RW", squash="No_Root_Squash", privileged_port=False)),
    ("rw,all_squash,anonuid=1000,anongid=100", tr.ClientSettings(access="RW", squash="All_Squash",
                                                                 anon_uid=1000, anon_gid=100)),
    ("rw,ro,insecure,secure", tr.ClientSettings(access="RO")),  # later words win, as in exportfs
    ("rw,sec=sys:krb5p,wdelay,hide,no_subtree_check", tr.ClientSettings(access="RW", sec=("sys", "krb5p"))),
])
def test_exports5_options_map_to_ganesha_settings(options: str, expected: tr.ClientSettings) -> None:
    assert tr.settings(options) == expected


@pytest.mark.parametrize(("options", "named"), [
    ("rw,async", ["async: ganesha cannot acknowledge writes"]),
    ("rw,bogus_option", ["bogus_option: not an exports(5) option"]),
    ("rw,subtree_check,fsid=0,crossmnt", ["subtree_check", "fsid=0", "crossmnt"]),  # all at once
    ("rw,anonuid=nobody", ["anonuid=nobody: not a uid/gid"]),
    ("rw,sec=ntlm", ["sec=ntlm"]),
])
def test_options_ganesha_cannot_express_are_refused_by_name(options: str, named: list[str]) -> None:
    with pytest.raises(tr.GaneshaOptionError) as err:
        tr.settings(options)
    assert all(n in str(err.value) for n in named), str(err.value)


def test_a_client_or_path_that_would_break_the_syntax_is_refused() -> None:
    with pytest.raises(tr.GaneshaOptionError, match="client"):
        g.render_block(ExportSpec(PurePosixPath("/x"), ("h1; } EXPORT {",)), 60000)
    with pytest.raises(tr.GaneshaOptionError, match="cannot quote"):
        g.render_block(ExportSpec(PurePosixPath('/x"y'), ("h1",)), 60000)


def test_block_is_appended_and_stripped_back_to_the_original() -> None:
    text = g.with_block(ORIGINAL, g.render_block(SPEC, 60001))
    assert text.startswith(ORIGINAL + "\n") and text.endswith(f"{END}\n")
    twice = g.with_block(text, g.render_block(SPEC, 60002))
    assert twice.count(BEGIN) == 1 and "60001" not in twice, "an aborted run's block is replaced, not doubled"
    assert strip_managed_block(twice) == ORIGINAL + "\n"


def test_existing_exports_are_found_with_their_ids() -> None:
    found = configured_exports(ORIGINAL, "main") + configured_exports(EXTRA, "extra")
    assert [(e.export_id, e.path, e.pseudo) for e in found] == [(60000, "/srv/other", "/other"),
                                                                (7, "/srv/extra", "/extra")]
    assert includes(ORIGINAL) == ["exports.d/extra.conf"]
    assert includes("# %include nope\n") == []
    assert g.choose_export_id({7, 60000}) == 60001
    assert g.choose_export_id(set()) == g.ID_BASE
    with pytest.raises(ExportError, match="Export_Id"):
        g.choose_export_id(set(range(g.ID_BASE, g.ID_MAX + 1)))


# -- provisioning against an in-memory server ---------------------------------------

@dataclass
class FakeServer:
    """Files, `ganesha.nfsd` as pid 4242, and the exports it loaded at its last reload."""

    files: dict[str, str]
    name: str = "nfs"
    ganesha_pid: str = "4242"
    exported: set[str] = field(default_factory=set)
    refuse_reload: bool = False
    writes: list[str] = field(default_factory=list)
    commands: list[tuple[str, ...]] = field(default_factory=list)

    def read_text(self, remote: str) -> str:
        return self.files[remote]

    def write_text(self, remote: str, text: str, mode: int | None = None) -> None:
        self.writes.append(remote)
        self.files[remote] = text

    def run(self, *argv: str, check: bool = True) -> CommandResult:
        self.commands.append(argv)
        rc, out = 0, ""
        if argv[:2] == ("test", "-f"):
            rc = 0 if argv[2] in self.files else 1
        elif argv[:2] == ("test", "-d"):
            rc = 0
        elif argv[0] == "systemctl":
            rc = 1
        elif argv[0] == "cat":
            if argv[1] == str(g.GANESHA_PIDFILE):
                out = f"{self.ganesha_pid}\n"
            elif argv[1] == "/proc/4242/comm":
                out = "ganesha.nfsd\n"
            else:
                rc = 1
        elif argv[:2] == ("kill", "-HUP"):
            if not self.refuse_reload:
                self.exported = {e.path for e in configured_exports(self.files[str(CONF)], "") if e.path}
        result = CommandResult(rc=rc, stdout=out, stderr="", command=" ".join(argv), host=self.name)
        if check and rc:
            raise CommandError(result)
        return result


@dataclass
class FakeClient:
    """A host whose `showmount -e nfs` lists what the fake server exports."""

    server: FakeServer
    name: str = "h1"

    def run(self, *argv: str, check: bool = True) -> CommandResult:
        assert argv == ("showmount", "-e", "nfs")
        out = "Export list for nfs:\n" + "".join(f"{p} 198.18.0.11\n" for p in sorted(self.server.exported))
        return CommandResult(rc=0, stdout=out, stderr="", command="showmount", host=self.name)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer({str(CONF): ORIGINAL, "/etc/ganesha/exports.d/extra.conf": EXTRA})


def provision(server: FakeServer, spec: ExportSpec = SPEC, **kw: object) -> g.GaneshaExport:
    call = cast(Callable[..., g.GaneshaExport], g.provision_ganesha_export)
    return call(cast(Host, server), spec, (64055, 107), "virtmig", server_name="nfs",
                observers=[cast(Host, FakeClient(server))], timeout=kw.pop("timeout", 2.0), **kw)


def test_provision_reloads_and_restore_puts_the_config_back_byte_for_byte(server: FakeServer) -> None:
    handle = provision(server)
    assert handle.export_id == 60001, "60000 is taken in the config, 7 in its include"
    assert "/srv/virtmig-export" in server.exported
    assert 'Path = "/srv/virtmig-export"' in block_of(server.files[str(CONF)])
    assert ("kill", "-HUP", "4242") in server.commands
    g.restore_ganesha_config(server=cast(Host, server), handle=handle, observers=[cast(Host, FakeClient(server))],
                             timeout=2.0)
    assert server.files[str(CONF)] == ORIGINAL
    assert "/srv/virtmig-export" not in server.exported
    assert ("rm", "-rf", "--one-file-system", "/srv/virtmig-export/virtmig") in server.commands


def test_a_reload_ganesha_refuses_leaves_the_config_as_it_was(server: FakeServer) -> None:
    server.refuse_reload = True
    with pytest.raises(ExportError, match="did not|log says why"):
        provision(server, timeout=0.5)
    assert server.files[str(CONF)] == ORIGINAL
    assert server.writes == [str(CONF), str(CONF)], "written once, then put back"


def test_a_leftover_block_of_an_aborted_run_is_replaced_and_restore_keeps_it_out(server: FakeServer) -> None:
    aborted = g.with_block(ORIGINAL, g.render_block(SPEC, 60001))
    server.files[str(CONF)] = aborted
    handle = provision(server)
    assert server.files[str(CONF)].count(BEGIN) == 1
    assert handle.original == aborted  # restore gives back what was there, leftovers included


@pytest.mark.parametrize(("spoil", "message"), [
    (lambda s: s.files.__setitem__(str(CONF), ORIGINAL.replace("/srv/other", "/srv/virtmig-export")),
     "already exports /srv/virtmig-export"),
    (lambda s: setattr(s, "ganesha_pid", "999"), "pid 999, which is not running"),
    (lambda s: s.files.pop("/etc/ganesha/exports.d/extra.conf"), "extra.conf does not exist"),
])
def test_refusals_come_before_anything_is_written(server: FakeServer, spoil: Callable[[FakeServer], object],
                                                  message: str) -> None:
    spoil(server)
    before = dict(server.files)
    with pytest.raises(ExportError, match=message):
        provision(server)
    assert server.writes == [] and server.files == before
    assert not any(c[0] in ("install", "rm", "kill") for c in server.commands)


def test_an_option_ganesha_cannot_express_touches_nothing(server: FakeServer) -> None:
    with pytest.raises(tr.GaneshaOptionError, match="async"):
        provision(server, ExportSpec(SPEC.path, SPEC.clients, "rw,async"))
    assert server.writes == [] and not any(c[0] in ("install", "kill") for c in server.commands)


# -- the option -----------------------------------------------------------------------

def test_server_kind_is_validated_before_any_host_is_touched(pytester: pytest.Pytester) -> None:
    plugins = ("-p", "fixtures.options", "-p", "fixtures.storage")
    result = pytester.runpytest(*plugins, "--nfs-server-kind", "nfsd")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--nfs-server-kind*'nfsd' is not one of kernel, ganesha*"])
    result = pytester.runpytest(*plugins, "--nfs-server-kind", "ganesha", "--export-options", "rw,async")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--export-options with --nfs-server-kind ganesha*async*"])
    result = pytester.runpytest(*plugins, "--ganesha-config", "/etc/g.conf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ganesha-config applies only with --nfs-server-kind ganesha*"])


def test_server_kind_reaches_the_storage_config(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_it(storage_config):
            assert storage_config.server_kind == "ganesha"
            assert str(storage_config.ganesha_config) == "/etc/g.conf"
            assert storage_config.effective_export_options == "rw,sync,root_squash,no_subtree_check"
        """
    )
    pytester.runpytest("-p", "fixtures.options", "-p", "fixtures.storage", "--nfs-server-kind", "ganesha",
                       "--ganesha-config", "/etc/g.conf").assert_outcomes(passed=1)


def test_a_ganesha_export_is_named_in_the_storage_label() -> None:
    from fixtures.storage import SharedStorage

    assert SharedStorage(PurePosixPath("/m"), "nfs-mount", True, server_kind="ganesha").label == \
        "nfs-mount from nfs-ganesha"
    assert SharedStorage(PurePosixPath("/m"), "nfs-mount", True, server_kind="kernel").label == "nfs-mount"
