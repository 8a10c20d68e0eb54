"""The guest kernel unpacked for PVH boot: the payload found by the setup header, decompressed, its note checked.

Synthetic bzImages (a setup header, a payload, an ELF with or without
Xen's PHYS32_ENTRY note) test the parsing; the built guest's own kernel
is checked to be the unpacked one, since that is what saves the boot time.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import subprocess

import pytest

from virtmig.guest import pvh
from virtmig.guest.image import build_guest, inputs_digest


def padded(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def note(owner: bytes, kind: int, desc: bytes = b"\0" * 4) -> bytes:
    name = owner + b"\0"
    return struct.pack("<III", len(name), len(desc), kind) + padded(name) + padded(desc)


def elf(notes: bytes) -> bytes:
    """A 64-bit little-endian ELF header with one PT_NOTE program header over *notes*."""
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)  # e_phoff
    struct.pack_into("<HH", header, 0x36, 56, 1)  # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56, 0, 0, len(notes), len(notes), 4)
    return bytes(header) + phdr + notes


def bzimage(payload: bytes, protocol: int = 0x20F) -> bytes:
    setup_sects = 1
    image = bytearray((setup_sects + 1) * 512 + 64)
    image[0x1F1] = setup_sects
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, protocol)
    struct.pack_into("<II", image, 0x248, 64, len(payload))
    return bytes(image) + payload + struct.pack("<I", 12345)  # the size word the kernel appends


PVH_ELF = elf(note(b"Xen", 6) + note(b"Xen", pvh.XEN_ELFNOTE_PHYS32_ENTRY))


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress], ids=["gzip", "xz"])
def test_the_vmlinux_with_a_pvh_note_is_unpacked(compress: object) -> None:
    assert callable(compress)
    assert pvh.pvh_kernel(bzimage(compress(PVH_ELF))) == PVH_ELF


@pytest.mark.skipif(shutil.which("zstd") is None, reason="no zstd tool (Debian package zstd)")
def test_a_zstd_payload_is_unpacked_as_debian_13_ships_it() -> None:
    packed = subprocess.run(["zstd", "-c", "-q"], input=PVH_ELF, capture_output=True, check=True).stdout
    assert pvh.pvh_kernel(bzimage(packed)) == PVH_ELF


def test_a_kernel_without_the_pvh_note_stays_a_bzimage() -> None:
    other_notes = elf(note(b"Xen", 6) + note(b"GNU", pvh.XEN_ELFNOTE_PHYS32_ENTRY))
    with pytest.raises(pvh.NotUnpackable, match="no PVH entry note"):
        pvh.pvh_kernel(bzimage(gzip.compress(other_notes)))


@pytest.mark.parametrize(("image", "why"), [
    (b"\0" * 1024, "not a bzImage"),
    (bzimage(gzip.compress(PVH_ELF, mtime=0), protocol=0x207), "needs 2.08"),
    (bzimage(b"\x02\x21\x4c\x18" + b"\0" * 16), "compression 02214c18"),
], ids=["no-header", "old-protocol", "lz4"])
def test_what_cannot_be_unpacked_says_why(image: bytes, why: str) -> None:
    with pytest.raises(pvh.NotUnpackable, match=why):
        pvh.pvh_kernel(image)


def test_the_built_guest_boots_the_unpacked_kernel() -> None:
    """Debian's kernel (12: xz, 13: zstd) is unpacked: an ELF with the PVH entry note, not the bzImage."""
    kernel = build_guest().kernel.read_bytes()
    assert kernel[:4] == b"\x7fELF", "the guest kernel is still the bzImage: boots 3.5-6 s slower under TCG"
    assert pvh.has_pvh_entry(kernel)


def test_a_guest_built_without_zstd_is_rebuilt_once_zstd_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache key holds what can be unpacked here, so a bzImage kept for want of zstd is not kept for good."""
    monkeypatch.setattr("shutil.which", lambda name: None)
    without = inputs_digest("6.12.118+deb13-amd64")
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    assert inputs_digest("6.12.118+deb13-amd64") != without
