"""Steps shared by the SELinux suite's tests (a plain module, not a conftest)."""

from __future__ import annotations

from virtmig.diagnose import Diagnosis


def filed_diagnosis(libvirt_message: str, found: Diagnosis) -> str:
    """What a denial case files as its DIAGNOSIS_PROPERTY: who was denied (`reason: ...`), libvirt's own
    message, then the diagnosis as the report shows it (tests/test_realkernel_lab.py reads it back)."""
    return f"reason: {found.reason}\nlibvirt: {libvirt_message}\n{found.text()}"


def with_local_disk(xml: str, shared_disk: str, disk: str) -> str:
    """The domain XML with its disk at *disk* (libvirt still relabels it for the domain, as by default)."""
    old = f"<source file='{shared_disk}'/>"
    assert old in xml, f"disk source {old} not in the domain XML"
    return xml.replace(old, f"<source file='{disk}'/>")
