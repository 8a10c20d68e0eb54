"""One exports(5) -> ganesha translator: the harness's ganesha export and the lab's exportfs agree.

The option-by-option mapping is tested in tests/test_ganesha_export.py; here,
that the two users of the translator give the same EXPORT block for the same
exports line, and the lab's own policy (warn, serve the rest) for options
ganesha cannot express.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from virtmig.lab import exportfs_adapter
from virtmig.storage import exports_to_ganesha as tr
from virtmig.storage import ganesha
from virtmig.storage.exports import DEFAULT_OPTIONS, ExportSpec

PATH = PurePosixPath("/srv/virtmig-export")
CLIENTS = ("198.18.0.11", "198.18.0.12")


def lab_block(line: str, export_id: int) -> str:
    """What the lab's exportfs writes for one /etc/exports line, without its header comment."""
    table = exportfs_adapter.parse_exports(line + "\n")
    text = exportfs_adapter.ganesha_exports(table, {t.path: export_id for t in table})
    return text.split("\n", 1)[1]


@pytest.mark.parametrize("options", [
    DEFAULT_OPTIONS,
    DEFAULT_OPTIONS + ",insecure",  # --disk-access qemu-nfs
    "rw,sync,no_root_squash,no_subtree_check",
    "ro,sync",
    "sync",  # exports(5)'s default access is ro, on both sides
    "rw,all_squash,anonuid=1000,anongid=100",
    "rw,sec=sys:krb5p,wdelay,hide,no_subtree_check",
    "rw,ro,insecure,secure",
])
def test_the_lab_and_the_harness_render_the_same_block_for_the_same_line(options: str) -> None:
    spec = ExportSpec(PATH, CLIENTS, options)
    harness = ganesha.render_block(spec, 60001)
    assert lab_block(spec.line(), 60001) == harness
    assert harness.count("CLIENT {") == 1 and f"Clients = {', '.join(CLIENTS)};" in harness


def test_the_lab_keeps_one_client_block_per_distinct_rule_in_file_order() -> None:
    block = lab_block(f"{PATH} 10.0.0.1(rw) 10.0.0.2(rw) 10.0.0.0/24(ro) 10.0.0.3(rw)", 1)
    clients = [part.split(";", 1)[0] for part in block.split("Clients = ")[1:]]
    assert clients == ["10.0.0.1, 10.0.0.2", "10.0.0.0/24", "10.0.0.3"], "first match wins: order is kept"
    assert block.count("Access_Type = RW;") == 2 and block.count("Access_Type = RO;") == 1


def test_defaults_meet_options_by_one_rule() -> None:
    assert tr.settings("") == tr.ClientSettings()
    assert tr.ClientSettings().anon_uid == tr.ClientSettings().anon_gid == tr.ANON_ID == 65534
    merged = tr.merge(tr.DEFAULTS, "rw,insecure,anonuid=7,anonuid=8")
    assert "ro" not in merged and "secure" not in merged and merged[-3:] == ("rw", "insecure", "anonuid=8")
    assert tr.settings(",".join(merged)) == tr.settings("rw,insecure,anonuid=8")
    with pytest.raises(tr.GaneshaOptionError, match="bogus: not an exports"):
        tr.merge(tr.DEFAULTS, "rw,bogus")


def test_the_lab_serves_what_ganesha_cannot_express_with_a_warning_the_harness_refuses_it() -> None:
    table = exportfs_adapter.parse_exports(f"{PATH} 10.0.0.1(rw,async,crossmnt)\n")
    assert [why.split(": ")[1] for why in exportfs_adapter.unexpressed(table)] == ["async", "crossmnt"]
    assert "Access_Type = RW;" in exportfs_adapter.ganesha_exports(table)
    with pytest.raises(tr.GaneshaOptionError, match="async.*crossmnt"):
        ganesha.render_block(ExportSpec(PATH, ("10.0.0.1",), "rw,async,crossmnt"), 60000)


def test_the_lab_refuses_what_exports5_itself_refuses() -> None:
    with pytest.raises(exportfs_adapter.ExportsError, match="/etc/exports:2: bogus: not an exports"):
        exportfs_adapter.parse_exports(f"# comment\n{PATH} 10.0.0.1(rw,bogus)\n")
    table = exportfs_adapter.parse_exports(f"{PATH} 10.0.0.1(rw,anonuid=nobody)\n")
    with pytest.raises(tr.GaneshaOptionError, match="anonuid=nobody: not a uid/gid"):
        exportfs_adapter.unexpressed(table)
