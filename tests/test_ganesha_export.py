"""The ganesha export: its EXPORT block, the markers in ganesha.conf, and the config put back exactly.

Provisioning is driven here against a replayed server (its files, a pid
file, a ganesha process that "reloads" by re-reading the config) so that
every failure path can be provoked; tests/test_lab_ganesha.py runs the
same code against the lab's real ganesha.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pytest

from tests.replay import Answer, Recorded, ReplayHost
from virtmig.storage import exports_to_ganesha as tr
from virtmig.storage import ganesha as g
from virtmig.storage.exports import BEGIN, END, ExportError, ExportSpec, strip_managed_block
from virtmig.storage.ganesha_conf import configured_exports, includes
from virtmig.storage.shared import SharedStorage

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
    # The spec itself refuses them (tests/test_input_hardening.py); render_block's own check stays
    # for a spec built around that check, as here.
    bad_client = ExportSpec(PurePosixPath("/x"), ("h1",))
    object.__setattr__(bad_client, "clients", ("h1; } EXPORT {",))
    with pytest.raises(tr.GaneshaOptionError, match="client"):
        g.render_block(bad_client, 60000)
    bad_path = ExportSpec(PurePosixPath("/x"), ("h1",))
    object.__setattr__(bad_path, "path", PurePosixPath('/x"y'))
    with pytest.raises(tr.GaneshaOptionError, match="cannot quote"):
        g.render_block(bad_path, 60000)


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


# -- provisioning against a replayed server ------------------------------------------

WORK = "/srv/virtmig-export/virtmig"


@dataclass
class GaneshaServer:
    """An NFS server replayed (tests.replay.ReplayHost), and h1 of the pair, which mounts from it.

    ganesha.nfsd runs as pid `ganesha_pid` (no systemd unit); at each SIGHUP
    it loads what its config exports, unless told to refuse; h1's
    `showmount -e nfs` lists what it loaded last.
    """

    host: ReplayHost
    client: ReplayHost
    ganesha_pid: str = "4242"
    exported: set[str] = field(default_factory=set)
    refuse_reload: bool = False

    @property
    def files(self) -> dict[str, str]:
        return self.host.files

    @property
    def writes(self) -> list[str]:
        return self.host.writes

    def reload(self) -> Recorded:
        if not self.refuse_reload:
            self.exported = {e.path for e in configured_exports(self.files[str(CONF)], "") if e.path}
        return (0, "", "")

    def showmount(self) -> Recorded:
        return (0, "Export list for nfs:\n" + "".join(f"{p} 198.18.0.11\n" for p in sorted(self.exported)), "")

    def is_file(self, path: str) -> Answer:
        return lambda: (0 if path in self.files else 1, "", "")


@pytest.fixture
def server() -> GaneshaServer:
    nfs = GaneshaServer(ReplayHost("nfs", files={str(CONF): ORIGINAL, "/etc/ganesha/exports.d/extra.conf": EXTRA}),
                        ReplayHost("h1"))
    nfs.host.recorded.update({
        f"test -f {CONF}": nfs.is_file(str(CONF)),
        "test -f /etc/ganesha/exports.d/extra.conf": nfs.is_file("/etc/ganesha/exports.d/extra.conf"),
        f"systemctl is-active --quiet {g.SERVICE}": (3, "", ""),
        f"cat {g.GANESHA_PIDFILE}": lambda: (0, f"{nfs.ganesha_pid}\n", ""),
        "cat /proc/4242/comm": (0, "ganesha.nfsd\n", ""),
        "kill -HUP 4242": nfs.reload,
        "test -d /srv/virtmig-export": (0, "", ""),
        f"rm -rf --one-file-system {WORK}": (0, "", ""),
        f"install -d -o 64055 -g 107 -m 0755 {WORK}": (0, "", ""),
    })
    nfs.client.recorded["showmount -e nfs"] = nfs.showmount
    return nfs


def provision(server: GaneshaServer, spec: ExportSpec = SPEC, *, timeout: float = 2.0) -> g.GaneshaExport:
    return g.provision_ganesha_export(server.host, spec, (64055, 107), "virtmig", server_name="nfs",
                                      observers=[server.client], timeout=timeout)


def programs(server: GaneshaServer) -> list[str]:
    """The program of each command the server ran."""
    return [line.split()[0] for line in server.host.calls]


def test_provision_reloads_and_restore_puts_the_config_back_byte_for_byte(server: GaneshaServer) -> None:
    handle = provision(server)
    assert handle.export_id == 60001, "60000 is taken in the config, 7 in its include"
    assert "/srv/virtmig-export" in server.exported
    assert 'Path = "/srv/virtmig-export"' in block_of(server.files[str(CONF)])
    assert "kill -HUP 4242" in server.host.calls
    g.restore_ganesha_config(server=server.host, handle=handle, observers=[server.client], timeout=2.0)
    assert server.files[str(CONF)] == ORIGINAL
    assert "/srv/virtmig-export" not in server.exported
    assert f"rm -rf --one-file-system {WORK}" in server.host.calls


def test_a_reload_ganesha_refuses_leaves_the_config_as_it_was(server: GaneshaServer) -> None:
    server.refuse_reload = True
    with pytest.raises(ExportError, match="did not|log says why"):
        provision(server, timeout=0.5)
    assert server.files[str(CONF)] == ORIGINAL
    assert server.writes == [str(CONF), str(CONF)], "written once, then put back"


def test_a_leftover_block_of_an_aborted_run_is_replaced_and_restore_keeps_it_out(server: GaneshaServer) -> None:
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
def test_refusals_come_before_anything_is_written(server: GaneshaServer, spoil: Callable[[GaneshaServer], object],
                                                  message: str) -> None:
    spoil(server)
    before = dict(server.files)
    with pytest.raises(ExportError, match=message):
        provision(server)
    assert server.writes == [] and server.files == before
    assert not any(p in ("install", "rm", "kill") for p in programs(server))


def test_an_option_ganesha_cannot_express_touches_nothing(server: GaneshaServer) -> None:
    with pytest.raises(tr.GaneshaOptionError, match="async"):
        provision(server, ExportSpec(SPEC.path, SPEC.clients, "rw,async"))
    assert server.writes == [] and not any(p in ("install", "kill") for p in programs(server))


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
    assert SharedStorage(PurePosixPath("/m"), "nfs-mount", True, server_kind="ganesha").label == \
        "nfs-mount from nfs-ganesha"
    assert SharedStorage(PurePosixPath("/m"), "nfs-mount", True, server_kind="kernel").label == "nfs-mount"
