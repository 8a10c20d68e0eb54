"""The storage options checked without pytest: virtmig.config's checks and virtmig.storage.shared's builder.

tests/test_ganesha_export.py checks the same messages end to end, as usage
errors of a pytest run; these pin that the library raises them itself, so a
bench script or the lab CLI gets the same refusals.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from virtmig.option_values import ConfigError, check_option_list, check_server_kind
from virtmig.storage.ganesha import GANESHA_CONF
from virtmig.storage.shared import StorageConfig, build_storage_config

EXPORT_OPTIONS = "rw,sync,root_squash,no_subtree_check"


def build(*, provision: bool = True, export_options: str = EXPORT_OPTIONS, mount_options: str | None = None,
          disk_access: str = "mount", server_kind: str = "kernel",
          ganesha_config: PurePosixPath | None = None, vouched_shared: bool = False) -> StorageConfig:
    """build_storage_config with the command line's defaults, but for what a test changes."""
    return build_storage_config(provision=provision, export_options=export_options, mount_options=mount_options,
                                qemu_user=None, disk_access=disk_access, server_kind=server_kind,
                                ganesha_config=ganesha_config, vouched_shared=vouched_shared)


def test_option_words_and_server_kinds() -> None:
    assert check_option_list("rw,sec=sys:krb5p,anonuid=7") == "rw,sec=sys:krb5p,anonuid=7"
    for bad in ("rw,,sync", "rw sync", "rw,(x)", ""):
        with pytest.raises(ConfigError, match="comma-separated option list"):
            check_option_list(bad)
    assert check_server_kind("ganesha") == "ganesha"
    with pytest.raises(ConfigError, match="'nfsd' is not one of kernel, ganesha"):
        check_server_kind("nfsd")


def test_the_defaults_build_the_kernel_config() -> None:
    built = build()
    assert built == StorageConfig(True, EXPORT_OPTIONS, (), None, "mount")
    assert built.ganesha_config == GANESHA_CONF and built.mounts
    qemu_nfs = build(disk_access="qemu-nfs", mount_options="vers=3,hard")
    assert qemu_nfs.effective_export_options.endswith(",insecure") and qemu_nfs.mount_options == ("vers=3", "hard")


def test_contradictions_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="--disk-access qemu-nfs needs the export provisioned"):
        build(disk_access="qemu-nfs", provision=False)
    with pytest.raises(ConfigError, match="--ganesha-config applies only with --nfs-server-kind ganesha"):
        build(ganesha_config=PurePosixPath("/etc/g.conf"))
    with pytest.raises(ConfigError, match="--export-options with --nfs-server-kind ganesha: .*async"):
        build(server_kind="ganesha", export_options="rw,async")
    with pytest.raises(ConfigError, match="'nfsd' is not one of"):
        build(server_kind="nfsd")
    with pytest.raises(ConfigError, match="--storage-is-shared applies to a mount"):
        build(disk_access="qemu-nfs", vouched_shared=True)
    assert build(vouched_shared=True).vouched_shared
    assert build(server_kind="ganesha", ganesha_config=PurePosixPath("/etc/g.conf")).ganesha_config == \
        PurePosixPath("/etc/g.conf")
