"""exports(5) options in nfs-ganesha's terms: the one translator, for the harness and the lab.

Two callers need it.  The harness's `--nfs-server-kind ganesha`
(virtmig.storage.ganesha) renders the run's export as an EXPORT block on a
real ganesha server; the lab's stand-in for exportfs(8)
(exportfs_adapter, in the lab package) turns the lab server's /etc/exports into
EXPORT blocks for its ganesha.  Both must mean by `rw,root_squash` what the
kernel server means, and the same line must give the same block, or a run on
the lab certifies other semantics than the run on a real server.  So the
option rules live here once: which words exports(5) knows, its defaults,
how a later word overrides an earlier one, what each means in ganesha, and
which ganesha cannot express.

A word ganesha cannot express (`async`, `subtree_check`, `fsid=`, ...) is the
callers' policy: the harness refuses it before any host is touched
(`settings`), the lab's exportfs warns and serves the rest (`translate`), as
the kernel tool serves options it cannot honour on a given file system.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: The kernel server's anonymous uid/gid (nobody/nogroup).  ganesha's own
#: default is (uint32)-2, which no /etc/passwd names: root_squash would then
#: create files owned by a number instead of by nobody.
ANON_ID = 65534

#: Flags that come in opposite pairs: of a word and its opposite, the later wins (as in exportfs).
OPPOSITES = {
    "rw": "ro", "ro": "rw", "sync": "async", "async": "sync", "wdelay": "no_wdelay", "no_wdelay": "wdelay",
    "hide": "nohide", "nohide": "hide", "secure": "insecure", "insecure": "secure",
    "root_squash": "no_root_squash", "no_root_squash": "root_squash", "all_squash": "no_all_squash",
    "no_all_squash": "all_squash", "subtree_check": "no_subtree_check", "no_subtree_check": "subtree_check",
}
#: What exports(5) assumes before a client's own options, in the order exportfs(8) keeps them.
DEFAULTS: tuple[str, ...] = ("ro", "sync", "wdelay", "hide", "no_subtree_check", "sec=sys", "secure",
                             "root_squash", "no_all_squash")

#: exports(5) options that change nothing under ganesha, and why.
_NO_OPS = {
    "sync": "ganesha makes stable writes stable before replying and honours COMMIT, which is what sync means",
    "no_subtree_check": "ganesha never checks subtrees",
    "wdelay": "write gathering is a kernel nfsd heuristic; no effect on what clients see",
    "no_wdelay": "write gathering is a kernel nfsd heuristic; no effect on what clients see",
    "hide": "ganesha does not cross into file systems mounted below the export",
    "no_all_squash": "the default",
}
#: exports(5) options with no ganesha equivalent, with the reason.
_INEXPRESSIBLE = {
    "async": "ganesha cannot acknowledge writes before they are stable (the kernel's async)",
    "subtree_check": "ganesha has no subtree checking",
    "nohide": "ganesha cannot show file systems mounted below the export",
    "crossmnt": "ganesha cannot show file systems mounted below the export",
    "fsid": "ganesha's Filesystem_Id is not the kernel's fsid (fsid=0 is the kernel's NFSv4 root)",
    "mp": "ganesha has no mountpoint requirement", "mountpoint": "ganesha has no mountpoint requirement",
    "refer": "NFSv4 referrals are configured differently", "replicas": "NFSv4 replicas are configured differently",
    "acl": "ACL handling is the FSAL's", "no_acl": "ACL handling is the FSAL's",
    "pnfs": "pNFS is configured per FSAL", "no_pnfs": "pNFS is configured per FSAL",
    "security_label": "no labelled NFS export option in ganesha",
    "insecure_locks": "no ganesha equivalent", "secure_locks": "no ganesha equivalent",
    "no_auth_nlm": "no ganesha equivalent", "auth_nlm": "no ganesha equivalent",
}
#: Every option key exports(5) knows; like exportfs(8), anything else is an error.
KNOWN_KEYS = frozenset(OPPOSITES) | frozenset(_INEXPRESSIBLE) | {"sec", "anonuid", "anongid"}
_SEC_FLAVOURS = {"sys", "krb5", "krb5i", "krb5p", "none"}
#: Characters a Clients entry may hold (host, IP, CIDR, wildcard, @netgroup):
#: anything else could end the value or the block in ganesha's syntax.
_CLIENT = re.compile(r"^[A-Za-z0-9_.:/*?@\[\]-]+$")


class GaneshaOptionError(ValueError):
    """An export option that is not exports(5), or that ganesha cannot express; raised before writing."""


@dataclass(frozen=True)
class ClientSettings:
    """What an exports(5) option list means, in ganesha's terms (defaults: exports(5)'s)."""

    access: str = "RO"
    squash: str = "Root_Squash"
    anon_uid: int = ANON_ID
    anon_gid: int = ANON_ID
    privileged_port: bool = True
    sec: tuple[str, ...] = ("sys",)


def _words(options: str) -> list[str]:
    return [w for w in (w.strip() for w in options.split(",")) if w]


def merge(base: Sequence[str], options: str) -> tuple[str, ...]:
    """`options` applied over `base`: a word replaces its opposite, itself, or an earlier value of its key.

    This is exportfs(8)'s table rule, and the only place defaults meet a
    client's options: `settings` reads the result of `merge(DEFAULTS, ...)`.
    """
    result = list(base)
    for word in _words(options):
        key = word.split("=", 1)[0]
        if key not in KNOWN_KEYS:
            raise GaneshaOptionError(f"{word}: not an exports(5) option")
        result = [o for o in result if o != OPPOSITES.get(word) and o != word
                  and not ("=" in word and o.split("=", 1)[0] == key)]
        result.append(word)
    return tuple(result)


def _malformed(word: str) -> str | None:
    """Why `word` is not a usable exports(5) option (None: it is)."""
    key, eq, value = word.partition("=")
    if key not in KNOWN_KEYS:
        return f"{word}: not an exports(5) option"
    if key in ("anonuid", "anongid") and (not eq or not value.isdigit() or int(value) > 0xFFFFFFFF):
        return f"{word}: not a uid/gid"
    if key == "sec" and (not value or any(f not in _SEC_FLAVOURS for f in value.split(":"))):
        return f"{word}: ganesha knows sec flavours {', '.join(sorted(_SEC_FLAVOURS))}"
    return None


def _read(options: str) -> tuple[ClientSettings, list[str], list[str]]:
    """(settings, malformed words, words ganesha cannot express), each problem as "word: why"."""
    malformed = [why for why in map(_malformed, _words(options)) if why]
    final = merge(DEFAULTS, ",".join(w for w in _words(options) if not _malformed(w)))
    inexpressible = [f"{w}: {_INEXPRESSIBLE[w.split('=', 1)[0]]}" for w in final
                     if w.split("=", 1)[0] in _INEXPRESSIBLE]
    values = {k: v for k, _, v in (w.partition("=") for w in final if "=" in w)}
    squash = ("All_Squash" if "all_squash" in final
              else "No_Root_Squash" if "no_root_squash" in final else "Root_Squash")
    found = ClientSettings(access="RW" if "rw" in final else "RO", squash=squash,
                           anon_uid=int(values.get("anonuid", ANON_ID)), anon_gid=int(values.get("anongid", ANON_ID)),
                           privileged_port="secure" in final, sec=tuple(values.get("sec", "sys").split(":")))
    return found, malformed, inexpressible


def settings(options: str) -> ClientSettings:
    """The ganesha settings of an exports(5) option list, refusing anything ganesha would not do as asked.

    Raises GaneshaOptionError naming every option that is unknown, malformed
    or has no ganesha equivalent, so an operator fixes them in one go.
    """
    found, malformed, inexpressible = _read(options)
    if malformed or inexpressible:
        raise GaneshaOptionError("export options nfs-ganesha cannot express: "
                                 + "; ".join(malformed + inexpressible))
    return found


def translate(options: str) -> tuple[ClientSettings, tuple[str, ...]]:
    """(settings, the options ganesha cannot express and leaves out, as "word: why").

    Raises GaneshaOptionError only for what exports(5) itself refuses:
    unknown words and malformed values.
    """
    found, malformed, inexpressible = _read(options)
    if malformed:
        raise GaneshaOptionError("; ".join(malformed))
    return found, tuple(inexpressible)


def _check_syntax(path: str, clients: Sequence[str]) -> None:
    """Refuse a path or client that would break out of its value in ganesha's syntax."""
    if any(c in path for c in '"\\\n;{}#'):
        raise GaneshaOptionError(f"export path {path!r} has characters ganesha.conf cannot quote")
    for client in clients:
        if not _CLIENT.match(client):
            raise GaneshaOptionError(f"client {client!r} is not a host, address, network, wildcard or @netgroup")


def _client_block(clients: Sequence[str], s: ClientSettings) -> str:
    return (
        "    CLIENT {\n"
        f"        Clients = {', '.join(clients)};\n"
        f"        Access_Type = {s.access};\n"
        f"        Squash = {s.squash};\n"
        f"        Anonymous_Uid = {s.anon_uid};\n"
        f"        Anonymous_Gid = {s.anon_gid};\n"
        f"        PrivilegedPort = {'true' if s.privileged_port else 'false'};\n"
        f"        SecType = {', '.join(s.sec)};\n"
        "    }\n"
    )


def export_block(export_id: int, path: str, rules: Sequence[tuple[Sequence[str], ClientSettings]]) -> str:
    """An EXPORT block for `path`: one CLIENT block per (clients, settings) rule, nobody else any access.

    Access_Type is None at export level on purpose: in ganesha that level is
    what clients *not* listed in a CLIENT block get, and exports(5) gives
    unlisted clients nothing.  ganesha, like exportfs, uses the first CLIENT
    block that matches, so adjacent rules with equal settings are one block:
    `h1(rw) h2(rw)` and the harness's (h1, h2) with `rw` render alike.

    Attr_Expiration_Time is 1 s (ganesha 4.x takes it per export): the
    kernel server has no attribute cache of its own, so a mode or owner
    changed on the server's file system is seen by clients at once;
    ganesha's default (60 s) would hide it.
    """
    _check_syntax(path, [c for clients, _ in rules for c in clients])
    grouped: list[tuple[list[str], ClientSettings]] = []
    for clients, s in rules:
        if grouped and grouped[-1][1] == s:
            grouped[-1][0].extend(clients)
        else:
            grouped.append((list(clients), s))
    return (
        "EXPORT {\n"
        f"    Export_Id = {export_id};\n"
        f'    Path = "{path}";\n'
        f'    Pseudo = "{path}";\n'
        "    Protocols = 3, 4;\n"
        "    Access_Type = None;\n"
        "    Attr_Expiration_Time = 1;\n"
        "    FSAL { Name = VFS; }\n"
        + "".join(_client_block(clients, s) for clients, s in grouped)
        + "}\n"
    )
