"""The real-kernel node's disk image: Debian 12 built from Debian's packages, labelled, cached.

Why a VM at all: this machine's kernel has neither SELinux nor NFS, so the
`virt_use_nfs` denial and the kernel NFS paths can only happen under a kernel
of their own.  The image is Debian 12 (whatever this machine runs) with the
cloud kernel, SELinux enforcing, auditd, kernel NFS, libvirt and QEMU, built
the way ../shared/SELINUX-HOST-NOTES.md measured it:

- `debootstrap --variant=minbase` with RECIPE_PACKAGES (libpam-systemd among
  them: without it polkitd's `logind` dependency cannot be met);
- the lab's files written into the root file system (network, sshd, qemu.conf,
  exports), the lab's policy module loaded and booleans set in a chroot;
- `setfiles` in the chroot with /proc mounted (it fails on every file
  otherwise), so no autorelabel boot is needed;
- `mkfs.ext4 -d`, which copies the SELinux xattrs into a sparse raw disk.

Nothing is fetched from inside the VM.  The image is cached under IMAGE_CACHE,
keyed by the versions apt resolves for RECIPE_PACKAGES plus the recipe's own
text, and moved there only once complete: a failed build leaves no cache
entry.  A machine that reaches no Debian archive gets `ImageUnavailable`
(the tests skip with its reason), unless an image was built here before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from virtmig.lab import realkernel_files, realkernel_policy
from virtmig.lab.netns import LabError, sh

IMAGE_CACHE = Path("/var/cache/virtmig/realkernel")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: The raw disk's apparent size (sparse: about 1 GB is used).
DISK_SIZE = "4G"
#: Bumped when the build steps change in a way the recipe text does not show.
LAYOUT = 2

RECIPE_PACKAGES: tuple[str, ...] = (
    "linux-image-cloud-amd64", "systemd-sysv", "libpam-systemd", "udev", "kmod", "dbus", "iproute2", "procps",
    "iputils-ping",
    "openssh-server", "selinux-basics", "selinux-policy-default", "selinux-utils", "auditd", "policycoreutils",
    "setools", "nfs-kernel-server", "nfs-common", "rpcbind", "libvirt-daemon-system", "libvirt-clients",
    "qemu-system-x86", "qemu-utils", "initramfs-tools", "e2fsprogs",
)

#: The policy's file contexts, inside the root file system.
FILE_CONTEXTS = "/etc/selinux/default/contexts/files/file_contexts"
POLICY_STORE = "var/lib/selinux/default/active"


class ImageUnavailable(RuntimeError):
    """No image can be had on this machine (no Debian archive reachable, no cached image): tests skip with this."""


@dataclass(frozen=True)
class Image:
    """A built image in the cache: its directory and what the build recorded."""

    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "disk.raw"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def login_key(self) -> Path:
        """The private key root logs in with (made at build time: the cached image cannot hold a per-lab key)."""
        return self.directory / "id_ed25519"

    @property
    def host_key(self) -> str:
        """The image's sshd ed25519 public key (for the controller's known_hosts)."""
        return (self.directory / "ssh_host_ed25519_key.pub").read_text().strip()

    @property
    def info(self) -> dict[str, object]:
        raw: dict[str, object] = json.loads((self.directory / "build.json").read_text())
        return raw

    def complete(self) -> bool:
        return all(p.exists() for p in (self.disk, self.kernel, self.initrd, self.login_key,
                                    self.directory / "build.json"))


def recipe_text(address: str, prefix_len: int, hostname: str) -> str:
    """Everything that decides the image other than the package versions, as one text (for the cache key)."""
    files = realkernel_files.rootfs_files(address, prefix_len, hostname, _host_uuid(hostname))
    parts = [f"layout {LAYOUT}", f"suite {SUITE}", f"disk {DISK_SIZE}", "packages " + " ".join(RECIPE_PACKAGES),
             realkernel_policy.module_text(), realkernel_policy.booleans_local()]
    parts += [f"file {path}\n{text}" for path, text in sorted(files.items())]
    return "\n".join(parts)


def cache_key(versions: Mapping[str, str], recipe: str) -> str:
    """A short digest of the resolved package versions and the recipe text."""
    h = hashlib.sha256()
    for name in sorted(versions):
        h.update(f"{name}={versions[name]}\n".encode())
    h.update(recipe.encode())
    return h.hexdigest()[:16]


def parse_apt_show(text: str) -> dict[str, str]:
    """Package -> Version from `apt-cache show --no-all-versions` output."""
    versions: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1].strip()
        elif line.startswith("Version: ") and name is not None:
            versions.setdefault(name, line.split(": ", 1)[1].strip())
    return versions


def apt_options(state: Path) -> list[str]:
    """apt options for a private view of SUITE's archive (this machine's apt lists and state untouched)."""
    return ["-o", f"Dir::State={state}", "-o", f"Dir::State::Lists={state / 'lists'}",
            "-o", f"Dir::State::status={state / 'status'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", f"Dir::Etc::SourceList={state / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", "APT::Get::List-Cleanup=0", "-o", "Acquire::Languages=none"]


def resolve_versions(work: Path) -> dict[str, str]:
    """The versions SUITE's archive offers today for RECIPE_PACKAGES (apt-get update in a private state dir)."""
    state = work / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").write_text("")
    (state / "sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} {SUITE} main\n")
    opts = apt_options(state)
    update = subprocess.run(["apt-get", *opts, "-q", "update"], capture_output=True, text=True, timeout=300)
    if update.returncode != 0 or "Err:" in update.stdout:
        raise ImageUnavailable(f"no Debian archive reachable ({MIRROR} {SUITE}): "
                               f"{(update.stderr or update.stdout).strip()[-400:]}")
    show = subprocess.run(["apt-cache", *opts, "show", "--no-all-versions", *RECIPE_PACKAGES],
                          capture_output=True, text=True, timeout=120)
    versions = parse_apt_show(show.stdout)
    missing = sorted(set(RECIPE_PACKAGES) - set(versions))
    if missing:
        raise ImageUnavailable(f"{MIRROR} {SUITE} has no candidate for {', '.join(missing)}")
    return versions


def newest_cached() -> Image | None:
    """The most recently built complete image, for a machine that cannot reach the archive now."""
    found = [Image(d) for d in IMAGE_CACHE.glob("*") if d.is_dir() and Image(d).complete()]
    return max(found, key=lambda i: i.directory.stat().st_mtime, default=None)


def ensure_image(address: str, prefix_len: int, hostname: str, *, log: Path) -> tuple[Image, bool]:
    """The image for this recipe and today's archive, cached or built now (and then cached); and whether built."""
    for tool in ("debootstrap", "mkfs.ext4", "qemu-system-x86_64", "qemu-img"):
        if shutil.which(tool) is None:
            raise ImageUnavailable(f"{tool} is not installed (make deps installs it: debian-packages.txt)")
    IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    recipe = recipe_text(address, prefix_len, hostname)
    with tempfile.TemporaryDirectory(dir=IMAGE_CACHE, prefix=".resolve-") as tmp:
        try:
            versions = resolve_versions(Path(tmp))
        except ImageUnavailable:
            cached = newest_cached()
            if cached is None:
                raise
            return cached, False
    image = Image(IMAGE_CACHE / cache_key(versions, recipe))
    if image.complete():
        return image, False
    build(image.directory, versions, address, prefix_len, hostname, log=log)
    prune(keep=image)
    return image, True


def prune(keep: Image) -> None:
    """Remove every other image in the cache (about 1 GB each): a new build replaces the one before it.

    Only under the lab's lock (realkernel.up): no other lab can be booting from one.
    """
    for entry in IMAGE_CACHE.iterdir():
        if entry.is_dir() and entry != keep.directory and not entry.name.startswith("."):
            _remove_tree(entry)


def build(target: Path, versions: Mapping[str, str], address: str, prefix_len: int, hostname: str, *,
          log: Path) -> None:
    """Build the image into a scratch directory beside *target*, then rename it into place (atomic)."""
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(dir=IMAGE_CACHE, prefix=".build-"))
    try:
        rootfs = scratch / "rootfs"
        log.parent.mkdir(parents=True, exist_ok=True)
        steps: dict[str, float] = {}
        with _step(steps, "debootstrap"):
            _logged(debootstrap_command(rootfs), log)
        with _step(steps, "configure"):
            for rel, text in realkernel_files.rootfs_files(address, prefix_len, hostname,
                                                           _host_uuid(hostname)).items():
                path = rootfs / rel.lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            (rootfs / POLICY_STORE / "booleans.local").write_text(realkernel_policy.booleans_local())
            (rootfs / "root" / f"{realkernel_policy.MODULE_NAME}.cil").write_text(realkernel_policy.module_text())
            for d in realkernel_files.DIRECTORIES:
                (rootfs / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"virtmig-lab-{hostname}",
                "-f", str(scratch / "id_ed25519")])
            authorized = rootfs / realkernel_files.AUTHORIZED_KEYS.lstrip("/")
            authorized.write_text((scratch / "id_ed25519.pub").read_text())
            authorized.chmod(0o600)
            authorized.parent.chmod(0o700)
        with _step(steps, "policy and labels"), _proc_mounted(rootfs):
            for argv in chroot_commands():
                _logged(["chroot", str(rootfs), *argv], log)
        kernel = _one(rootfs / "boot", "vmlinuz-*")
        shutil.copy2(kernel, scratch / "vmlinuz")
        shutil.copy2(_one(rootfs / "boot", "initrd.img-*"), scratch / "initrd.img")
        shutil.copy2(rootfs / "etc/ssh/ssh_host_ed25519_key.pub", scratch / "ssh_host_ed25519_key.pub")
        with _step(steps, "mkfs.ext4 -d"):
            _logged(["mkfs.ext4", "-q", "-F", "-L", "virtmig-k1", "-d", str(rootfs), str(scratch / "disk.raw"),
                     DISK_SIZE], log)
        installed = sh(["chroot", str(rootfs), "dpkg-query", "-W", "-f", "${Package}=${Version}\n"]).stdout
        _remove_tree(rootfs)
        used = (scratch / "disk.raw").stat().st_blocks * 512
        info = {"built_s": round(time.monotonic() - started, 1), "steps_s": steps, "disk_used_bytes": used,
                "kernel": kernel.name.removeprefix("vmlinuz-"), "recipe_versions": dict(versions),
                "installed": installed.split()}
        (scratch / "build.json").write_text(json.dumps(info, indent=2))
        if target.exists():
            _remove_tree(target)
        scratch.rename(target)
    except BaseException:
        _remove_tree(scratch)
        raise


def debootstrap_command(rootfs: Path) -> list[str]:
    return ["debootstrap", "--variant=minbase", f"--keyring={KEYRING}",
            "--include=" + ",".join(RECIPE_PACKAGES), SUITE, str(rootfs), MIRROR]


def chroot_commands() -> list[list[str]]:
    """What runs inside the image's chroot: the policy module, the network, then the labels (last)."""
    return [
        ["semodule", "-i", f"/root/{realkernel_policy.MODULE_NAME}.cil"],
        ["systemctl", "enable", "systemd-networkd"],
        # nothing here waits for "online"; left enabled it holds the boot for up to 2 minutes
        ["systemctl", "mask", "systemd-networkd-wait-online.service"],
        ["setfiles", "-F", "-e", "/proc", "-e", "/sys", "-e", "/dev", FILE_CONTEXTS, "/"],
    ]


@contextlib.contextmanager
def _step(steps: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    steps[name] = round(time.monotonic() - started, 1)


@contextlib.contextmanager
def _proc_mounted(rootfs: Path) -> Iterator[None]:
    """/proc inside the chroot (setfiles and semodule need it), always unmounted after."""
    proc = rootfs / "proc"
    sh(["mount", "-t", "proc", "proc", str(proc)])
    try:
        yield
    finally:
        sh(["umount", str(proc)], check=False)


def _remove_tree(path: Path) -> None:
    """Remove a build tree, but never through a mount left inside it (a chroot's /proc, say)."""
    if not path.exists():
        return
    mounts = sh(["findmnt", "-rn", "-o", "TARGET"], check=False).stdout.split()
    inside = [m for m in mounts if m == str(path) or m.startswith(f"{path}/")]
    for m in sorted(inside, reverse=True):
        sh(["umount", "-l", m], check=False)
    shutil.rmtree(path, ignore_errors=True)


def _logged(argv: Sequence[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"# {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise LabError(f"real-kernel image build: {argv[0]} exited {proc.returncode}; last lines of {log}:\n{tail}")


def _one(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    if len(found) != 1:
        raise LabError(f"expected one {pattern} in {directory}, found {[p.name for p in found]}")
    return found[0]


def _host_uuid(hostname: str) -> str:
    """libvirt's host UUID for the node, fixed by name as the lab's other hosts' are (hostfs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{hostname}.virtmig-lab"))
