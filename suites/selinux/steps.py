"""Steps shared by the SELinux suite's tests (a plain module, not a conftest)."""

from __future__ import annotations


def with_local_disk(xml: str, shared_disk: str, disk: str) -> str:
    """The domain XML with its disk at *disk* (libvirt still relabels it for the domain, as by default)."""
    old = f"<source file='{shared_disk}'/>"
    assert old in xml, f"disk source {old} not in the domain XML"
    return xml.replace(old, f"<source file='{disk}'/>")
