"""The tiny test guest: Debian's kernel plus a busybox initramfs and an agent.

Why this guest: migration tests need a guest that boots fast under TCG,
has a known address without DHCP, and can be told to dirty memory and to
write/verify RAM and disk patterns.  A distribution image would be slow to
boot, big to copy and full of state we do not control; Debian's own kernel
(every driver a module) plus ~1 MB of busybox is enough.

The image is built once into GUEST_CACHE and reused: `build_guest()` returns
at once when the cached kernel and initrd exist and the stamp's digest
matches the inputs (init script, agent source, module lists, kernel version,
layout version).  The fast path uses the kernel version recorded in the stamp
rather than asking apt which kernel is newest, so a cached guest stays the
same guest (and no apt call, ~1 s here, is paid per test run) until its
inputs change or `force=True` is passed.

Guest agent protocol (UDP port probe.AGENT_PORT = 7; the authoritative text
is at the top of guest_agent.c):

* a datagram not starting with '!' is echoed verbatim at once (downtime probe);
* commands start with '!' and get one ASCII line ending in '\\n':
  ``!ping`` -> ``ok pong``; ``!dirty N`` -> ``ok dirty N`` (dirty N MiB/s in a
  buffer of up to 64 MiB); ``!status`` -> ``ok dirty=N ram_pattern=SEED|none
  uptime_ms=T dirty_buf_mib=M dirtied_mib=D disk=absent|raw|mounted busy=0|1``;
  ``!ram-write SEED`` -> ``ok ram-write SEED <checksum>`` (16 MiB);
  ``!ram-verify SEED`` -> ``ok ram-verify SEED`` or
  ``fail ram-verify SEED offset=N``; ``!disk-write SEED`` /
  ``!disk-verify SEED``: the same on the first 4 MiB of /dev/vda, with
  O_DIRECT (``err no disk`` without one); anything else ->
  ``err unknown command``.  ram/disk commands run on a worker thread, one at
  a time (``err busy`` otherwise), so they never delay an echo.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import ipaddress
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from virtmig.guest import pvh

_HERE = Path(__file__).resolve().parent
INIT_SCRIPT = _HERE / "guest_init.sh"
AGENT_SOURCE = _HERE / "guest_agent.c"
BUSYBOX = Path("/bin/busybox")
#: Where the built guest is kept between runs (built on the controller, staged to the hosts).
GUEST_CACHE = Path("/var/cache/virtmig/guest")

#: Drivers for the virtio NIC and disk, in insmod order (dependencies first).
MODULES: tuple[str, ...] = (
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
)
#: Loaded by /init only when /dev/vda carries an ext2/3/4 filesystem.
FS_MODULES: tuple[str, ...] = ("crc16", "mbcache", "crc32c_generic", "jbd2", "ext4")

#: Bump when the initramfs layout changes in a way the other inputs miss (2: the kernel unpacked for PVH boot).
LAYOUT_VERSION = "2"
META_PACKAGE = "linux-image-amd64"

#: The kernel QEMU boots: the PVH vmlinux (virtmig.guest.pvh) or, where none can be had, the bzImage.
KERNEL_NAME = "kernel"
INITRD_NAME = "initrd.img"
STAMP_NAME = "stamp.json"


class GuestBuildError(RuntimeError):
    """Building the guest failed; the message names the step and its stderr."""


@dataclass(frozen=True)
class GuestImage:
    """A built guest: direct-kernel-boot files plus what they were built from."""

    kernel: Path
    initrd: Path
    kernel_version: str

    def cmdline(self, ip: str, prefix_len: int, dirty_mib_per_s: int = 0, *, gateway: str | None = None) -> str:
        """Kernel command line for this guest; see `guest_cmdline`."""
        return guest_cmdline(ip, prefix_len, dirty_mib_per_s, gateway=gateway)


def guest_cmdline(ip: str, prefix_len: int, dirty_mib_per_s: int = 0, *, gateway: str | None = None) -> str:
    """The kernel command line that gives the guest its address, its default route if any, and load.

    The address travels on the command line because the guest has no DHCP
    client and no config disk: the domain XML alone decides who it is.

    pti=on narrows a QEMU 7.2 TCG bug the lab meets: migration's dirty-bitmap
    sync does not reset the TCG TLB's dirty tracking (fixed upstream in 9.0,
    commit 03bfc2188f "physmem: Fix migration dirty bitmap coherency with TCG
    memory access"), so a store through a TLB entry that outlives a sync is
    never sent and the guest resumes with stale pages (seen as list
    corruption and panics right after the move).  With page-table isolation
    every entry to and exit from the kernel reloads CR3, which flushes the
    TCG TLB, so such stale entries live microseconds instead of seconds.

    The rest shortens the boot under TCG, where the kernel's own checks are
    emulated instruction by instruction (#13: boot to first answer <= 5 s).
    Measured on this kind of machine, idle, boot to first ping, four boots
    each interleaved: 3.6-4.5 s without, 2.5-3.2 s with.  `cryptomgr.notests`
    skips the crypto self-tests and `tsc=reliable no_timer_check` the TSC's
    refinement and watchdog and the IO-APIC timer check (about 0.5 s each);
    the guest ends on the TSC clocksource either way.  Skipping the i8042
    probe gained nothing measurable, and `rodata=off` (W+X check) prints a
    kernel WARNING, so neither is here.
    """
    addr = ipaddress.IPv4Address(ip)  # raises ValueError on garbage
    if not 0 <= prefix_len <= 32:
        raise ValueError(f"prefix length {prefix_len} not in 0..32")
    if dirty_mib_per_s < 0:
        raise ValueError(f"dirty rate {dirty_mib_per_s} MiB/s is negative")
    line = (f"console=ttyS0 quiet pti=on cryptomgr.notests tsc=reliable no_timer_check "
            f"virtmig.ip={addr}/{prefix_len} virtmig.dirty={dirty_mib_per_s}")
    return line if gateway is None else f"{line} virtmig.gw={ipaddress.IPv4Address(gateway)}"


def inputs_digest(kernel_version: str) -> str:
    """Hash of everything the image is built from, for the cache stamp."""
    h = hashlib.sha256()
    for label, data in (
        ("layout", LAYOUT_VERSION.encode()),
        ("kernel", kernel_version.encode()),
        ("modules", " ".join(MODULES).encode()),
        ("fs-modules", " ".join(FS_MODULES).encode()),
        ("init", INIT_SCRIPT.read_bytes()),
        ("agent", AGENT_SOURCE.read_bytes()),
        ("kernel unpacking", pvh.readable_here().encode()),
    ):
        h.update(f"{label}:{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


def cached_guest(cache_dir: Path = GUEST_CACHE) -> GuestImage | None:
    """The cached image if its files exist and its stamp matches the inputs."""
    kernel, initrd, stamp = cache_dir / KERNEL_NAME, cache_dir / INITRD_NAME, cache_dir / STAMP_NAME
    try:
        meta = json.loads(stamp.read_text())
        version = str(meta["kernel_version"])
        digest = str(meta["digest"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (kernel.is_file() and initrd.is_file()) or digest != inputs_digest(version):
        return None
    return GuestImage(kernel=kernel, initrd=initrd, kernel_version=version)


def build_guest(cache_dir: Path = GUEST_CACHE, *, force: bool = False) -> GuestImage:
    """Return the test guest, building it into `cache_dir` if needed.

    Concurrent callers (two pytest workers, the lab and a test) serialise on
    a lock file; files are replaced atomically and the stamp is written last,
    so a crash mid-build leaves a cache that is rebuilt, never half-used.
    """
    if not force and (image := cached_guest(cache_dir)) is not None:
        return image
    cache_dir.mkdir(mode=0o755, parents=True, exist_ok=True)  # QEMU may run unprivileged: keep it readable
    with _locked(cache_dir / ".lock"):
        if not force and (image := cached_guest(cache_dir)) is not None:
            return image  # someone else built it while we waited
        return _build_into(cache_dir)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_into(cache_dir: Path) -> GuestImage:
    """Resolve the kernel, assemble kernel + initrd into the cache, stamp it."""
    package = resolve_kernel_package()
    version = package.removeprefix("linux-image-")
    _assemble(package, version, cache_dir)
    stamp = {"digest": inputs_digest(version), "kernel_version": version, "package": package}
    _atomic_write(cache_dir / STAMP_NAME, json.dumps(stamp, indent=2) + "\n")
    return GuestImage(kernel=cache_dir / KERNEL_NAME, initrd=cache_dir / INITRD_NAME, kernel_version=version)


def _assemble(package: str, version: str, cache_dir: Path) -> None:
    """Download and unpack the kernel package; install its kernel (unpacked for PVH boot) and a new initrd."""
    with tempfile.TemporaryDirectory(prefix="virtmig-guest-") as tmp_s:
        tmp = Path(tmp_s)
        debs, root, staging = tmp / "debs", tmp / "root", tmp / "initramfs"
        for d in (debs, root, staging):
            d.mkdir()
        deb = _apt_download(package, debs)
        _run(["dpkg", "-x", str(deb), str(root)], what="unpack the kernel package")
        vmlinuz = root / "boot" / f"vmlinuz-{version}"
        if not vmlinuz.is_file():
            found = sorted((root / "boot").glob("vmlinuz-*"))
            if not found:
                raise GuestBuildError(f"{deb.name} has no boot/vmlinuz-*")
            vmlinuz = found[0]
        modroot = next(
            (m for m in (root / "lib" / "modules" / version, root / "usr" / "lib" / "modules" / version) if m.is_dir()),
            None,
        )
        if modroot is None:
            raise GuestBuildError(f"{deb.name} has no lib/modules/{version}")
        _stage_initramfs(staging, modroot, tmp / "agent")
        _write_initramfs(staging, tmp / INITRD_NAME)
        _install(_boot_kernel(vmlinuz, tmp / KERNEL_NAME), cache_dir / KERNEL_NAME)
        _install(tmp / INITRD_NAME, cache_dir / INITRD_NAME)


def _boot_kernel(vmlinuz: Path, unpacked: Path) -> Path:
    """The kernel file to boot: *vmlinuz* unpacked into *unpacked* for PVH boot, or *vmlinuz* itself.

    The bzImage stays the answer when it cannot be unpacked here (see
    virtmig.guest.pvh): the guest then boots seconds slower, never differently.
    """
    try:
        unpacked.write_bytes(pvh.pvh_kernel(vmlinuz.read_bytes()))
    except pvh.NotUnpackable:
        return vmlinuz
    return unpacked


def _run(argv: Sequence[str], *, what: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GuestBuildError(f"cannot {what}: {' '.join(argv)!r} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _apt_update() -> None:
    _run(["apt-get", "update"], what="refresh the apt lists")


def resolve_kernel_package() -> str:
    """Name of the versioned kernel package, e.g. linux-image-6.1.0-56-amd64.

    Asks apt which package the meta package depends on; an empty or stale
    package list (a fresh container) gets one `apt-get update` and a retry.
    """
    for attempt in range(2):
        proc = subprocess.run(["apt-cache", "depends", META_PACKAGE], capture_output=True, text=True)
        match = re.search(r"Depends:\s*(linux-image-\d\S*)", proc.stdout)
        if proc.returncode == 0 and match:
            return match.group(1)
        if attempt == 0:
            _apt_update()
    raise GuestBuildError(f"apt knows no versioned dependency of {META_PACKAGE}: {proc.stderr.strip()}")


def _apt_download(package: str, dest: Path) -> Path:
    """`apt-get download` into `dest`, with one `apt-get update` on a stale list."""
    argv = ["apt-get", "download", "-o", "APT::Sandbox::User=root", package]
    proc = subprocess.run(argv, cwd=dest, capture_output=True, text=True)
    if proc.returncode != 0 and "Unable to locate" in proc.stderr + proc.stdout:
        _apt_update()
        proc = subprocess.run(argv, cwd=dest, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GuestBuildError(f"apt-get download {package} exited {proc.returncode}: {proc.stderr.strip()}")
    debs = sorted(dest.glob(f"{package}_*.deb"))
    if not debs:
        raise GuestBuildError(f"apt-get download {package} left no .deb in {dest}")
    return debs[0]


def compile_agent(out: Path) -> Path:
    """Compile guest_agent.c into a static binary (no libc in the guest)."""
    _run(
        ["gcc", "-O2", "-static", "-pthread", "-Wall", "-o", str(out), str(AGENT_SOURCE)],
        what="compile the guest agent",
    )
    return out


def _module_key(name: str) -> str:
    """A module's name as the kernel compares it: '-' and '_' are the same."""
    return name.replace("-", "_")


def builtin_modules(modroot: Path) -> frozenset[str]:
    """Names of the modules this kernel has built in, from its modules.builtin.

    Why: which drivers are built in differs by release (Debian 13's 6.12 has
    virtio, virtio_ring and virtio_pci built in, Debian 12's 6.1 has them as
    modules); a built-in one has no .ko to insmod and needs none.  A kernel
    package without the file has nothing built in that we could know of.
    """
    try:
        text = (modroot / "modules.builtin").read_text()
    except FileNotFoundError:
        return frozenset()
    return frozenset(
        _module_key(line.strip().rsplit("/", 1)[-1].split(".ko", 1)[0]) for line in text.splitlines() if line.strip()
    )


def _find_module(modroot: Path, name: str) -> Path:
    """The module file for `name` (file names may use '-' for '_')."""
    wanted = _module_key(name)
    for path in modroot.rglob("*.ko*"):
        base = _module_key(path.name.split(".ko", 1)[0])
        if base == wanted:
            return path
    raise GuestBuildError(f"module {name} not found under {modroot}")


def _module_bytes(path: Path) -> bytes:
    """Plain module bytes: busybox insmod loads neither .xz nor .zst."""
    data = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(data)
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(data)
    if path.name.endswith(".ko"):
        return data
    raise GuestBuildError(f"cannot decompress module {path.name}")


def _stage_initramfs(staging: Path, modroot: Path, agent_out: Path) -> None:
    """Lay out the initramfs tree: busybox + applet links, modules, agent, /init."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "mnt", "tmp", "etc/virtmig", "lib/modules"):
        (staging / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, staging / "bin" / "busybox")
    applets = _run([str(BUSYBOX), "--list-full"], what="list busybox applets").stdout.split()
    for rel in applets:
        link = staging / rel
        if rel == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    builtin = builtin_modules(modroot)
    modules = [m for m in MODULES if _module_key(m) not in builtin]
    fs_modules = [m for m in FS_MODULES if _module_key(m) not in builtin]
    for name in (*modules, *fs_modules):
        (staging / "lib" / "modules" / f"{name}.ko").write_bytes(_module_bytes(_find_module(modroot, name)))
    (staging / "etc" / "virtmig" / "modules").write_text("".join(f"{m}\n" for m in modules))
    (staging / "etc" / "virtmig" / "fs-modules").write_text("".join(f"{m}\n" for m in fs_modules))
    shutil.copy2(compile_agent(agent_out), staging / "sbin" / "virtmig-agent")
    init = staging / "init"
    shutil.copyfile(INIT_SCRIPT, init)
    init.chmod(0o755)
    (staging / "tmp").chmod(0o1777)
    # The kernel opens /dev/console for /init before devtmpfs exists; not
    # root: /init re-opens the console after mounting devtmpfs.
    with contextlib.suppress(PermissionError):
        os.mknod(staging / "dev" / "console", 0o600 | 0o020000, os.makedev(5, 1))


def _write_initramfs(staging: Path, out: Path) -> None:
    """newc cpio via busybox (no cpio(1) here), gzipped (the kernel has RD_GZIP)."""
    names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(staging):
        dirnames.sort()
        rel = os.path.relpath(dirpath, staging)
        if rel != ".":
            names.append(rel)
        names.extend(os.path.normpath(os.path.join(rel, f)) for f in sorted(filenames))
        # os.walk lists symlinks to directories among dirnames without descending.
        names.extend(
            os.path.normpath(os.path.join(rel, d)) for d in dirnames if os.path.islink(os.path.join(dirpath, d))
        )
    proc = subprocess.run(
        [str(BUSYBOX), "cpio", "-o", "-H", "newc"],
        cwd=staging,
        input="\n".join(names).encode() + b"\n",
        capture_output=True,
    )
    if proc.returncode != 0:
        raise GuestBuildError(f"busybox cpio exited {proc.returncode}: {proc.stderr.decode(errors='replace').strip()}")
    with gzip.GzipFile(out, "wb", compresslevel=9, mtime=0) as gz:
        gz.write(proc.stdout)


def _install(src: Path, dest: Path) -> None:
    """Copy world-readable and rename into place: readers never see half a file."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.chmod(0o644)
    os.replace(tmp, dest)


def _atomic_write(dest: Path, text: str) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, dest)
