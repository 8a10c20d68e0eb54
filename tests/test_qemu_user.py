"""The one qemu-user lookup: an explicit user, else qemu.conf's, else the distribution's default.

Every place that acts or checks as the qemu user (staging, the storage check,
preflight, diagnosis) goes through it; these tests pin its order on recorded
hosts, and that the callers honour an explicit user.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from tests.replay import ReplayHost, handwritten_rhel9, script_key
from virtmig.diagnose.evidence import qemu_user
from virtmig.storage import shared_check
from virtmig.storage.qemu_user import QEMU_CONF, QemuIdentity, find_qemu_identity, qemu_identity

DEBIAN = "libvirt-qemu:x:64055:108:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin\n"
OPERATOR = "vmrunner:x:2001:2001::/home/vmrunner:/bin/sh\n"


def host(conf: str | None = None, **users: str) -> ReplayHost:
    """A host whose passwd database holds `users` (name -> getent line) and, if given, a qemu.conf."""
    recorded: dict[str, tuple[int, str, str]] = {f"getent passwd {name}": (0, line, "")
                                                  for name, line in users.items()}
    recorded[f"cat {QEMU_CONF}"] = (0, conf, "") if conf is not None else (1, "", "No such file or directory\n")
    return ReplayHost("h1", recorded)


def test_the_distribution_default_when_nothing_says_otherwise() -> None:
    assert qemu_identity(host(**{"libvirt-qemu": DEBIAN})) == QemuIdentity("libvirt-qemu", 64055, 108)
    rhel9 = host(handwritten_rhel9("qemu.conf"), qemu=handwritten_rhel9("getent-passwd-qemu.out"))
    assert qemu_identity(rhel9) == QemuIdentity("qemu", 107, 107), "commented-out settings are not settings"


def test_qemu_conf_names_the_user_libvirt_starts_qemu_as() -> None:
    configured = host('user = "vmrunner"\n', vmrunner=OPERATOR, **{"libvirt-qemu": DEBIAN})
    assert qemu_identity(configured).user == "vmrunner"
    numeric = host('user = "+2001"\n', **{"2001": OPERATOR})
    assert qemu_identity(numeric) == QemuIdentity("vmrunner", 2001, 2001)


def test_an_explicit_user_is_the_only_candidate() -> None:
    both = host('user = "libvirt-qemu"\n', vmrunner=OPERATOR, **{"libvirt-qemu": DEBIAN})
    assert qemu_identity(both, "vmrunner").user == "vmrunner"
    assert f"cat {QEMU_CONF}" not in both.calls, "an explicit user needs no qemu.conf"
    assert find_qemu_identity(both, "nosuchuser") is None, "a named user is never swapped for another"
    with pytest.raises(LookupError, match="nosuchuser.*on h1"):
        qemu_identity(both, "nosuchuser")
    with pytest.raises(LookupError, match="libvirt-qemu or qemu"):
        qemu_identity(host())


def test_diagnosis_and_the_storage_check_honour_an_explicit_user() -> None:
    both = host('user = "libvirt-qemu"\ndynamic_ownership = 0\n', vmrunner=OPERATOR, **{"libvirt-qemu": DEBIAN})
    assert qemu_user(both) == ("libvirt-qemu", False)
    assert qemu_user(both, "vmrunner") == ("vmrunner", False)
    assert qemu_user(host(), "ghost") == ("ghost", None), "a missing user is still named for the diagnosis"
    assert qemu_user(host()) == ("root", None)
    checked = host(vmrunner=OPERATOR)
    checked.recorded["cat /proc/self/mountinfo"] = (0, "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n", "")
    access = ["2001", "2001", "-x", "/", "-x", "/mnt", "-x", "/mnt/nfs"]
    checked.recorded[script_key(shared_check._ACCESS_SCRIPT, access)] = (0, "ok\nok\nok\n", "")
    facts = shared_check.gather(checked, PurePosixPath("/mnt/nfs"), None, "vmrunner")
    assert (facts.qemu.user, facts.qemu.uid, facts.qemu.gid, facts.qemu.ok) == ("vmrunner", 2001, 2001, True)
