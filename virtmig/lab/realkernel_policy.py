"""The real-kernel node's own SELinux policy module, and what it changes besides.

Why a module at all: Debian 12's stock policy (refpolicy 2:2.20221101) lacks
permissions libvirt 9.0 needs to start any domain, or to live-migrate one,
none of them about NFS.
They were found by making `virtd_t` permissive for a moment and reading the
denials (../shared/SELINUX-HOST-NOTES.md).  Without them every start fails,
so the `virt_use_nfs` denial the suite is after could never be told apart.

Each rule carries a comment saying why; the module is loaded at build time in
the image's chroot (5 s there, 25-51 s inside the booted VM).  The one rule
on `nfs_t` is under `virt_use_nfs` itself: with the boolean off the stock
denial under test is unchanged, and with it on QEMU may map the guest's
direct-boot files as it may read them.
"""

from __future__ import annotations

from pathlib import Path

#: The module's name as `semodule -l` lists it.
MODULE_NAME = "virtmig_lab"

#: (why, CIL rule) pairs, in the order they appear in the module.
RULES: tuple[tuple[str, str], ...] = (
    ("libvirt 9.0 loads a BPF device-cgroup program for each domain (cgroup v2): it needs CAP_BPF and "
     "CAP_PERFMON",
     "(allow virtd_t self (capability2 (bpf perfmon)))"),
    ("... and makes the BPF map and program itself",
     "(allow virtd_t self (bpf (map_create map_read map_write prog_load prog_run)))"),
    ("libvirt reads /sys/fs/selinux/booleans/* to learn the host's policy before labelling a domain",
     "(allow virtd_t boolean_t (file (getattr open read)))"),
    ("libvirt registers each domain with systemd-machined over D-Bus (CreateMachineWithNetwork); "
     "the stock policy denies the call",
     "(allow virtd_t systemd_machined_t (dbus (send_msg)))"),
    ("... and machined's reply",
     "(allow systemd_machined_t virtd_t (dbus (send_msg)))"),
    ("libvirt asks logind for inhibitor locks and sessions over D-Bus",
     "(allow virtd_t systemd_logind_t (dbus (send_msg)))"),
    ("... and logind's reply",
     "(allow systemd_logind_t virtd_t (dbus (send_msg)))"),
    ("a native live migration: libvirtd connects the migration stream itself and hands the socket to QEMU, "
     "created with the domain's label (setsockcreatecon); the stock policy denies the create, and dontaudits "
     "it, so the source fails with 'Unable to create socket: Permission denied' and no AVC (seen with "
     "semodule -DB; the rules are what a migration with virtd_t permissive needed)",
     "(allow virtd_t virt_domain (tcp_socket (create setopt connect getattr)))"),
    ("... and, under the same label, the netlink socket getaddrinfo opens to resolve the destination",
     "(allow virtd_t virt_domain (netlink_route_socket (create bind getattr write nlmsg_read read)))"),
    ("QEMU mmaps the guest's direct-boot initrd; Debian 12's virt_use_nfs grants virt_domain read on nfs_t "
     "files but not map ('mmap() failed: Permission denied' with the boolean on): granted under the same boolean",
     "(booleanif virt_use_nfs (true (allow virt_domain nfs_t (file (map)))))"),
)

#: The QEMU-side denial shape's rules (libvirtd may use NFS files, as on Fedora/RHEL): the module
#: tests/data/selinux/capture.sh loads on any host.  k1 has them under a boolean of its own, off by
#: default, so that a test turns the shape on with setsebool at once instead of loading a module (25-50 s
#: each way under TCG).
QEMU_SIDE_CIL = Path(__file__).with_name("qemu-side-variant.cil")
QEMU_SIDE_BOOLEAN = "virtmig_qemu_side"

#: Booleans set persistently at build time (in the policy store), with why.
BOOLEANS: tuple[tuple[str, bool, str], ...] = (
    ("virt_use_execmem", True,
     "the nested QEMU runs on TCG, which maps its translated code executable: "
     "without it QEMU dies with 'mprotect failed: Permission denied'"),
)


def module_text() -> str:
    """The CIL module, one comment line per rule saying why."""
    lines = [
        f"; {MODULE_NAME}: the virtmig lab's local policy for Debian 12 refpolicy + libvirt 9.0.",
        "; Permissions the stock policy lacks (found with virtd_t permissive, and from the AVCs of a start);",
        "; nfs_t is touched only under virt_use_nfs: that boolean's denial is what the suite tests.",
    ]
    for why, rule in RULES:
        lines += [f"; {why}", rule]
    side = " ".join(line for line in QEMU_SIDE_CIL.read_text().splitlines() if line.startswith("(allow"))
    lines += [f"; {QEMU_SIDE_BOOLEAN}: the QEMU-side denial shape ({QEMU_SIDE_CIL.name}), off unless a test "
              "turns it on", f"(boolean {QEMU_SIDE_BOOLEAN} false)",
              "; ... and its rules: libvirtd may use NFS files, so that QEMU is the process denied",
              f"(booleanif {QEMU_SIDE_BOOLEAN} (true {side}))"]
    return "\n".join(lines) + "\n"


def booleans_local() -> str:
    """The policy store's booleans.local: what `semanage boolean -m` would write (semanage is not installed)."""
    return "".join(f"{name}={int(value)}\n" for name, value, _why in BOOLEANS)
