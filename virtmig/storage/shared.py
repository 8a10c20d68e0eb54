"""The run's shared storage as values: its settings, the export made for it, where the guest's files go.

These are the storage layer's own types; the pytest fixtures build them and
pass them on, and suites annotate with them.  `build_storage_config` checks
the storage options together, before any host is touched: a combination
that cannot work (QEMU's own NFS client without an export to reach, an
export option nfs-ganesha cannot honour) is a ConfigError in a second, not
a failure after the hosts were set up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from virtmig.option_values import ConfigError, check_storage_options
from virtmig.storage import exports_to_ganesha
from virtmig.storage.exports import ProvisionedExport
from virtmig.storage.ganesha import GANESHA_CONF, GaneshaExport

#: The export the storage fixtures made, on either kind of server.
ServerExport = ProvisionedExport | GaneshaExport
#: Where the permission cases' per-host gate directories live (local to each hypervisor, as
#: /var/lib/libvirt is); here, not in suites/, so the project's tests can look for leftovers without
#: importing the repository's `suites` package (which would shadow the ones their pytester runs create).
GATE_ROOT = "/var/lib/libvirt/virtmig-perm"


@dataclass(frozen=True)
class StorageConfig:
    """The storage options, parsed once (see virtmig.config for each one's check)."""

    provision: bool
    export_options: str
    mount_options: tuple[str, ...]
    qemu_user: str | None
    disk_access: str
    server_kind: str = "kernel"
    ganesha_config: PurePosixPath = GANESHA_CONF
    #: --storage-is-shared: the operator vouches the mount is shared though libvirt does not
    #: recognise its file system; honoured only once virtmig's own shared-storage check passed.
    vouched_shared: bool = False

    @property
    def mounts(self) -> bool:
        """Whether the hosts mount the export (not with QEMU's own NFS client)."""
        return self.disk_access == "mount"

    @property
    def effective_export_options(self) -> str:
        """--export-options, plus `insecure` for QEMU's own client.

        QEMU runs unprivileged: its libnfs client cannot bind a reserved port.
        """
        if not self.mounts and "insecure" not in self.export_options.split(","):
            return self.export_options + ",insecure"
        return self.export_options


def build_storage_config(*, provision: bool, export_options: str, mount_options: str | None,
                         qemu_user: str | None, disk_access: str, server_kind: str,
                         ganesha_config: PurePosixPath | None, vouched_shared: bool = False) -> StorageConfig:
    """The StorageConfig of already well-formed options, checked together; ConfigError names the option.

    The export options are translated for ganesha here, as provisioning will
    (virtmig.storage.exports_to_ganesha), so a word ganesha cannot express
    stops the run before the hosts are set up.
    """
    check_storage_options(provision=provision, disk_access=disk_access, server_kind=server_kind,
                          ganesha_config_given=ganesha_config is not None)
    storage = StorageConfig(
        provision=provision,
        export_options=export_options,
        mount_options=tuple(mount_options.split(",")) if mount_options else (),
        qemu_user=qemu_user,
        disk_access=disk_access,
        server_kind=server_kind,
        ganesha_config=ganesha_config or GANESHA_CONF,
        vouched_shared=vouched_shared,
    )
    if vouched_shared and not storage.mounts:
        raise ConfigError("--storage-is-shared applies to a mount (--disk-access mount); QEMU's own NFS "
                          "client's disks are network disks, which libvirt already counts as shared")
    if server_kind == "ganesha":
        try:
            exports_to_ganesha.settings(storage.effective_export_options)
        except exports_to_ganesha.GaneshaOptionError as exc:
            raise ConfigError(f"--export-options with --nfs-server-kind ganesha: {exc}") from exc
    return storage


@dataclass(frozen=True)
class SharedStorage:
    """Where the guest's files live, identically on both hosts.

    unsafe: libvirt cannot recognise this storage as shared, so migrations
    need VIR_MIGRATE_UNSAFE; `why` says so in every record.
    save_blocker: why libvirt cannot save a guest's state here (None: it can).
    """

    path: PurePosixPath
    kind: str
    unsafe: bool
    why: str | None = None
    insecure: tuple[str, ...] = ()
    nfs_server: str | None = None
    export: PurePosixPath | None = None
    save_blocker: str | None = None
    server_kind: str | None = None  # the kind of server we provisioned on (None: not ours)

    @property
    def label(self) -> str:
        """How the report names this storage; an export weaker than the default is flagged.

        An export served by nfs-ganesha says so (the kernel server is the
        unnamed default), so that its runs are not mistaken for the other's.
        """
        served = " from nfs-ganesha" if self.server_kind == "ganesha" else ""
        return self.kind + served + "".join(f" [INSECURE: {why}]" for why in self.insecure)

    @property
    def qemu_nfs(self) -> bool:
        """QEMU reaches the disk itself (network disk); `path` is then inside `export`."""
        return self.kind == "qemu-nfs"
