"""The real-kernel node `k1`: a QEMU/TCG VM on the lab's network, reached over SSH like any host.

Why: SELinux and kernel NFS cannot happen under this machine's kernel (it has
neither), so the lab adds one host with a kernel of its own: Debian 12's cloud
kernel, SELinux enforcing, auditd, kernel NFS, libvirt and QEMU
(`virtmig.lab.realkernel_image` builds and caches its disk).

The VM's QEMU runs inside a lab namespace `virtmig-k1`, wired to the lab
bridge like every other node; in there a bridge joins that link and the VM's
tap, and the namespace itself has no address and no route.  The VM has the
lab address K1.ip and no gateway: nothing it sends can leave the lab.

Each boot runs on a fresh qcow2 overlay of the cached disk (under LAB_ROOT,
which `down` removes), so the cached image never changes, and `stop` can end
QEMU by its PID without a shutdown: there is nothing to keep.  Root logs in
with the node's own key, made with the image (the lab's key is made anew at
every `lab up` and cannot be in a cached image; a per-boot key disk mounted
by fstab waited 90 s for its udev link under this policy).  After boot, `up`
mounts the node's own kernel export of /srv/vm on /mnt/nfs.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from virtmig.lab import hostfs, realkernel_files
from virtmig.lab.netns import LabError, Node, is_alive, netns_exists, sh, terminate
from virtmig.lab.network import link_exists, plug
from virtmig.lab.realkernel_image import Image, ensure_image
from virtmig.lab.topology import BRIDGE, LAB_ROOT, PREFIX_LEN, SSH_CONFIG, LabNode
from virtmig.sshhost import SshHost
from virtmig.waiters import wait_for

K1 = LabNode("k1", "198.18.0.20", hypervisor=True)
MAC = "52:54:00:12:00:20"
#: The VM's memory (the prototype used 6 GiB).  Measured after the SELinux suite (a paused nested
#: 128 MiB guest): 358 MiB used, 169 MiB cache, the same with 2048 and with 1024.
MEMORY_MIB = 1024
VCPUS = 2
#: How long a boot may take to answer ssh (25 s measured alone; others share the 2 cores).
BOOT_TIMEOUT_S = 180.0
#: TCG's fullest CPU.  Measured: with svm=off,vmx=off this kernel came up with /proc unlabeled
#: (unlabeled_t: every generator, udev and sshd login denied), with plain max it is labelled.
#: The VM's libvirt then offers KVM, but a run's --virt-type auto takes KVM only when both hosts
#: offer it, and the lab's h1/h2 do not: the nested guest runs on TCG.
CPU = "max"
STATE = LAB_ROOT / "realkernel.json"
BUILD_LOG = LAB_ROOT / "logs" / "k1-build.log"
#: Inside the namespace: the bridge joining the lab link and the VM's tap.
NS_BRIDGE = "k1br"
TAP = "k1tap"


@dataclass
class RealKernelState:
    """What `up` started and measured, kept for `stop` and `status`."""

    holder_pid: int
    qemu_pid: int
    image: str
    build_s: float | None
    image_used_bytes: int
    boot_s: float

    def save(self) -> None:
        STATE.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls) -> RealKernelState | None:
        return cls(**json.loads(STATE.read_text())) if STATE.exists() else None


def qemu_command(image: Image, overlay: Path, console: Path, *,
                 memory_mib: int = MEMORY_MIB, vcpus: int = VCPUS) -> list[str]:
    """QEMU's command line: TCG, direct kernel boot with SELinux enforcing, a tap NIC, a console file."""
    return [
        "qemu-system-x86_64", "-name", K1.name, "-nodefaults", "-no-reboot", "-display", "none",
        "-accel", "tcg,thread=multi", "-cpu", CPU, "-smp", str(vcpus), "-m", str(memory_mib),
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", "root=/dev/vda rw console=ttyS0 security=selinux enforcing=1",
        "-drive", f"file={overlay},format=qcow2,if=virtio,cache=unsafe",
        "-netdev", f"tap,id=lan,ifname={TAP},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=lan,mac={MAC}",
        "-device", "virtio-rng-pci",
        "-serial", f"file:{console}",
    ]


def up(*, timeout: float = BOOT_TIMEOUT_S) -> RealKernelState:
    """Add k1 to a lab that is up: image (cached or built), namespace, VM, ssh, the NFS mount."""
    if not link_exists(BRIDGE):
        raise LabError(f"the lab is not up (no {BRIDGE}): raise it first (python -m virtmig.lab up)")
    stop()
    image, built = ensure_image(K1.ip, PREFIX_LEN, K1.name, log=BUILD_LOG)
    state_dir = K1.state_dir
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    overlay, console = state_dir / "overlay.qcow2", state_dir / "console.log"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk), str(overlay)])
    node = Node.create(K1)
    booted = time.monotonic()
    try:
        _wire(node)
        qemu = node.spawn(qemu_command(image, overlay, console), LAB_ROOT / "logs" / "k1-qemu.log")
        build_s = float(str(image.info["built_s"])) if built else None
        state = RealKernelState(node.holder_pid, qemu, image.directory.name, build_s,
                                int(str(image.info["disk_used_bytes"])), 0.0)
        state.save()
        hostfs.add_controller_host(K1, image.host_key, image.login_key)
        hostfs.add_hosts_entry(K1)  # h1 and h2 may mount k1's exports by name
        _wait_ssh(qemu, console, timeout)
        state.boot_s = round(time.monotonic() - booted, 1)
        state.save()
        _prepare(console)
    except BaseException:
        stop()
        raise
    return state


def stop() -> None:
    """End k1's QEMU and namespace holder by PID, and remove its namespace, link and files."""
    state = RealKernelState.load()
    if state is not None:
        terminate([state.qemu_pid, state.holder_pid])
        STATE.unlink()
    if netns_exists(K1.netns):
        sh(["ip", "netns", "del", K1.netns], check=False)
    if link_exists(K1.veth_outer):
        sh(["ip", "link", "del", K1.veth_outer], check=False)
    hostfs.remove_controller_host(K1)
    hostfs.remove_hosts_entry(K1)
    shutil.rmtree(K1.state_dir, ignore_errors=True)


def is_up() -> bool:
    state = RealKernelState.load()
    return state is not None and is_alive(state.qemu_pid) and _ssh_login(K1.name) is True


def console_tail(console: Path, lines: int = 25) -> str:
    """The serial console's last lines (what a boot that went wrong said last)."""
    if not console.exists():
        return "(no console output)"
    text = console.read_bytes().decode(errors="replace").replace("\r", "")
    return "\n".join(text.splitlines()[-lines:])


def _wire(node: Node) -> None:
    """A veth from the lab bridge into the namespace, bridged there with the VM's tap (no address, no route)."""
    plug(node)
    node.run(["ip", "link", "add", NS_BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    node.run(["ip", "tuntap", "add", "dev", TAP, "mode", "tap"])
    for link in ("eth0", TAP):
        node.run(["ip", "link", "set", link, "master", NS_BRIDGE, "up"])
    node.run(["ip", "link", "set", NS_BRIDGE, "up"])


def _ssh_login(name: str) -> bool | None:
    proc = sh(["ssh", "-F", str(SSH_CONFIG), name, "true"], check=False)
    return True if proc.returncode == 0 else None


def _wait_ssh(qemu: int, console: Path, timeout: float) -> None:
    """Until root logs in over ssh with the lab's key; QEMU ending or the bound passing shows the console."""
    def logged_in() -> bool | None:
        if not is_alive(qemu):
            raise LabError(f"k1's QEMU (PID {qemu}) ended during boot; console's last lines:\n"
                           f"{console_tail(console)}")
        return _ssh_login(K1.name)

    wait_for(logged_in, target=f"the real-kernel node {K1.name} ({K1.ip}:22)", state="accepting the lab's key",
             timeout=timeout, interval=1.0,
             describe=lambda: f"no ssh login; console's last lines:\n{console_tail(console)}")


#: After boot: SELinux must be enforcing, the export listed, and mounted on the node itself (a boot
#: of the overlay, so nothing here reaches the cached image).
PREPARE_SCRIPT = f"""set -e
test "$(getenforce)" = Enforcing || {{ echo "SELinux is $(getenforce), not Enforcing"; exit 1; }}
# the export's root belongs to the qemu user, as a site's storage for guests does (runs put files there as it)
chown libvirt-qemu:libvirt-qemu {realkernel_files.EXPORT}
exportfs -ra
mountpoint -q {realkernel_files.NFS_MOUNT} || mount -t nfs localhost:{realkernel_files.EXPORT} \
{realkernel_files.NFS_MOUNT}
findmnt -n -o FSTYPE {realkernel_files.NFS_MOUNT}
virsh -c qemu:///system uri
"""


def _prepare(console: Path) -> None:
    with SshHost(K1.name, SSH_CONFIG) as host:
        result = host.run_script(PREPARE_SCRIPT, check=False)
    if not result.ok:
        raise LabError(f"preparing {K1.name} failed: {result.stdout.strip()} {result.stderr.strip()}; "
                       f"console's last lines:\n{console_tail(console)}")


def timings(state: RealKernelState) -> str:
    """One line for the operator: build time (if built now), image size, boot to ssh."""
    built = f"image built in {state.build_s:.0f} s" if state.build_s is not None else "image cached"
    return (f"real-kernel node {K1.name} ({K1.ip}) up: {built} ({state.image}, "
            f"{state.image_used_bytes / 2**20:.0f} MiB on disk); boot to ssh {state.boot_s:.1f} s; "
            f"reach it with: ssh -F {SSH_CONFIG} {K1.name}")
