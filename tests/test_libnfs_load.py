"""Finding libnfs by soname: the binding loads whichever known soname is installed.

These load real shared objects (the installed libnfs, and libc as a library
that lacks libnfs's functions); nothing is faked.  What the mounts do with
the library is tested against ganesha in tests/test_lab_nfs.py.
"""

from __future__ import annotations

import ctypes.util

import pytest

from virtmig.lab import libnfs


def test_the_installed_libnfs_loads_with_every_function_the_binding_calls() -> None:
    lib = libnfs.library()
    assert all(hasattr(lib, name) for name in libnfs._SIGNATURES)
    assert lib.nfs_init_context.restype is ctypes.c_void_p  # signatures applied at load


def test_the_installed_soname_is_one_the_binding_knows() -> None:
    found = ctypes.util.find_library("nfs")
    assert found in {soname for soname, _package in libnfs.KNOWN_SONAMES}, found


def test_no_libnfs_names_the_packages_to_install() -> None:
    with pytest.raises(libnfs.LibnfsMissing, match=r"install Debian's libnfs14 \(libnfs.so.14\) or libnfs13") as e:
        libnfs.load(["libnfs.so.999"])
    assert "libnfs.so.999" in str(e.value)


def test_a_library_without_libnfs_functions_is_refused() -> None:
    libc = ctypes.util.find_library("c")
    assert libc is not None
    with pytest.raises(libnfs.LibnfsMissing, match=f"{libc}: lacks nfs_init_context"):
        libnfs.load([libc])
