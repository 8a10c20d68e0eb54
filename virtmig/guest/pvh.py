"""A guest kernel QEMU starts already decompressed: the vmlinux inside Debian's bzImage, booted through PVH.

Why: a bzImage decompresses itself in the guest, and under TCG that
emulated decompression took 3.5-6 s of the lab guest's 9 s boot (measured
with the guest's printk times against the host's clock: the kernel's first
line came 3.6 s after QEMU started with the bzImage, 1.0 s with the
vmlinux).  Debian's x86 kernels are built with PVH entry (CONFIG_PVH), so
the ELF vmlinux carried in the bzImage's payload boots as it is: QEMU
finds the PVH entry note (Xen's PHYS32_ENTRY) and jumps straight into the
kernel.  Nothing is rebuilt or patched: the file is the distribution's own
kernel, only unpacked ahead of time.

The payload is read as the boot protocol defines it (setup header fields
payload_offset/payload_length, protocol 2.08+), not found by scanning for
magic bytes.  Debian 12 compresses it with xz, Debian 13 with zstd (read
with the zstd tool: Python's stdlib has no zstd before 3.14).  A kernel in
another format, or without the PVH note, is left as the bzImage: slower to
boot, never wrong.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import subprocess

#: The ELF note (owner "Xen", type 18) that marks a kernel QEMU can enter through PVH.
XEN_ELFNOTE_PHYS32_ENTRY = 18


class NotUnpackable(ValueError):
    """The bzImage's payload cannot be turned into a PVH-bootable vmlinux here; the message says why."""


def payload(bzimage: bytes) -> bytes:
    """The compressed kernel inside *bzimage*, located through its setup header."""
    if bzimage[0x202:0x206] != b"HdrS":
        raise NotUnpackable("not a bzImage (no HdrS setup header)")
    version = struct.unpack_from("<H", bzimage, 0x206)[0]
    if version < 0x208:
        raise NotUnpackable(f"boot protocol {version >> 8}.{version & 0xff} has no payload fields (needs 2.08)")
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    return bzimage[start:start + length]


def decompress(data: bytes) -> bytes:
    """*data* (a kernel payload) decompressed: gzip, xz or zstd; anything else is NotUnpackable."""
    if data.startswith(b"\x1f\x8b"):
        return gzip.decompress(data)
    if data.startswith(b"\xfd7zXZ\x00"):
        # The kernel appends the uncompressed size after the stream: read one stream, ignore the rest.
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        tool = shutil.which("zstd")
        if tool is None:
            raise NotUnpackable("zstd payload and no zstd tool (Debian package zstd)")
        # The trailing size word is not zstd: decompress the first frame only.
        proc = subprocess.run([tool, "-dc", "--no-progress"], input=data, capture_output=True)
        if not proc.stdout.startswith(b"\x7fELF"):
            raise NotUnpackable(f"zstd could not read the payload: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout
    raise NotUnpackable(f"payload compression {data[:6].hex()} not read here (gzip, xz, zstd are)")


def readable_here() -> str:
    """The payload formats this machine can unpack, e.g. "gzip xz zstd": part of the guest cache's key.

    A guest built where zstd was missing keeps the bzImage; once zstd is
    installed the key changes and the guest is rebuilt with the unpacked
    kernel, instead of the slow one being cached for good (seen on Debian 13:
    a build before `make deps` installed zstd kept the bzImage).
    """
    return "gzip xz" + (" zstd" if shutil.which("zstd") else "")


def has_pvh_entry(elf: bytes) -> bool:
    """Whether *elf* (a 64-bit little-endian ELF) carries the PVH entry note in a PT_NOTE segment."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type == 4 and _notes_have(elf[p_offset:p_offset + p_filesz], b"Xen\x00", XEN_ELFNOTE_PHYS32_ENTRY):
            return True
    return False


def _notes_have(notes: bytes, owner: bytes, note_type: int) -> bool:
    at = 0
    while at + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from("<III", notes, at)
        name = notes[at + 12:at + 12 + namesz]
        if name == owner and kind == note_type:
            return True
        at += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def pvh_kernel(bzimage: bytes) -> bytes:
    """The PVH-bootable vmlinux inside *bzimage*, or NotUnpackable saying why there is none."""
    elf = decompress(payload(bzimage))
    if not has_pvh_entry(elf):
        raise NotUnpackable("the kernel has no PVH entry note (built without CONFIG_PVH)")
    return elf
