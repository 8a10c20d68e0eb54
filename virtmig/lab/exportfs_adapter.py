"""Lab adapter: the standard `/etc/exports` + `exportfs -ra` for nfs-ganesha.

On a real NFS server an administrator edits /etc/exports and runs
`exportfs -ra`; the kernel server picks the change up.  The lab's server is
nfs-ganesha (this kernel has no nfsd), which has its own config syntax.  This
module is the lab's stand-in for exportfs(8): it reads /etc/exports (and
/etc/exports.d/*.exports), keeps the export table in /var/lib/nfs/etab as the
real tool does, writes the equivalent ganesha EXPORT blocks into the file
ganesha.conf includes, makes ganesha re-read them with SIGHUP, and checks in
the export list ganesha logs after the reload that it now serves what was
asked (virtmig.lab.ganesha_reload).

Inside the nfs node only, `setup_node` puts it in place:
  * /usr/local/sbin (empty on Debian, first in root's PATH, and not where any
    distribution package installs) gets a per-node directory holding an
    `exportfs` launcher: no machine path is shadowed that exists;
  * /etc gets a per-node overlay, because /etc/exports does not exist on this
    machine (no nfs-kernel-server) and a bind needs an existing target; writes
    to /etc inside the node stay in the node's upper dir.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from virtmig.lab import ganesha_reload, launcher, nfsserver
from virtmig.lab.netns import LabError, Node
from virtmig.storage import exports_to_ganesha
from virtmig.storage.exports_to_ganesha import GaneshaOptionError

EXPORTS = Path("/etc/exports")
EXPORTS_D = Path("/etc/exports.d")
ETAB = Path("/var/lib/nfs/etab")
#: path -> ganesha Export_Id, kept across reloads.
EXPORT_IDS = Path("/var/lib/nfs/virtmig-export-ids.json")
_CLIENT = re.compile(r"^([^()]*)(?:\(([^()]*)\))?$")


class ExportsError(ValueError):
    """/etc/exports has a line this stand-in cannot express; names file and line."""


@dataclass(frozen=True)
class Export:
    """One (path, client) pair of the export table, with its full option list."""

    path: str
    client: str
    options: tuple[str, ...]

    def etab_line(self) -> str:
        return f"{self.path}\t{self.client}({','.join(self.options)})\n"


def merge_options(base: tuple[str, ...], words: str, where: str) -> tuple[str, ...]:
    """Apply an exports(5) option list over `base` by exportfs's rule (virtmig.storage.exports_to_ganesha)."""
    try:
        return exports_to_ganesha.merge(base, words)
    except GaneshaOptionError as exc:
        raise ExportsError(f"{where}: {exc}") from exc


def normalise_client(client: str, where: str) -> str:
    """A ganesha Clients entry for an exports(5) client: *, host, IP, CIDR or IP/netmask."""
    if client.startswith("@"):
        raise ExportsError(f"{where}: netgroups ({client}) are not supported by the lab's server")
    if "/" in client:
        addr, _, mask = client.partition("/")
        if "." in mask:  # dotted netmask -> prefix length
            bits = "".join(f"{int(part):08b}" for part in mask.split("."))
            client = f"{addr}/{bits.count('1')}"
    return client


def parse_exports(text: str, source: str = str(EXPORTS)) -> list[Export]:
    """Parse exports(5) text: `path [-defaults] client(opts) ...`, `\\` continuations, # comments."""
    exports: list[Export] = []
    text = text.replace("\\\n", " ")
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        words = shlex.split(line)
        path, rest = words[0], words[1:]
        if not path.startswith("/"):
            raise ExportsError(f"{where}: export path {path!r} is not absolute")
        defaults = exports_to_ganesha.DEFAULTS
        if rest and rest[0].startswith("-"):
            defaults = merge_options(defaults, rest.pop(0)[1:], where)
        if not rest:
            rest = ["*"]  # a path alone is exported to the world, read-only
        for word in rest:
            match = _CLIENT.match(word)
            if not match:
                raise ExportsError(f"{where}: cannot parse client entry {word!r}")
            client = normalise_client(match.group(1) or "*", where)
            exports.append(Export(path, client, merge_options(defaults, match.group(2) or "", where)))
    return exports


def read_exports(etc: Path = Path("/etc")) -> list[Export]:
    """Every export of /etc/exports and /etc/exports.d/*.exports, in that order."""
    exports: list[Export] = []
    files = [etc / "exports"] + sorted((etc / "exports.d").glob("*.exports"))
    for file in files:
        if file.is_file():
            exports += parse_exports(file.read_text(), str(file))
    return exports


def read_etab(etab: Path = ETAB) -> list[Export]:
    if not etab.exists():
        return []
    return parse_exports(etab.read_text(), str(etab))


def export_ids(paths: list[str], ids_file: Path = EXPORT_IDS) -> dict[str, int]:
    """Stable ganesha Export_Ids: ganesha refuses a reload that gives an id another path."""
    known: dict[str, int] = json.loads(ids_file.read_text()) if ids_file.exists() else {}
    for path in paths:
        if path not in known:
            known[path] = max(known.values(), default=0) + 1
    ids_file.parent.mkdir(parents=True, exist_ok=True)
    ids_file.write_text(json.dumps(known))
    return {p: known[p] for p in paths}


def ganesha_exports(exports: list[Export], ids: dict[str, int] | None = None) -> str:
    """ganesha EXPORT blocks: one per path, its clients' CLIENT blocks in file order.

    Translated as the harness translates its own ganesha export
    (virtmig.storage.exports_to_ganesha), so a line means the same on the lab
    as with --nfs-server-kind ganesha; what ganesha cannot express is left
    out here and named by `unexpressed`.
    """
    by_path: dict[str, list[tuple[list[str], exports_to_ganesha.ClientSettings]]] = {}
    for e in exports:
        settings, _ = exports_to_ganesha.translate(",".join(e.options))
        by_path.setdefault(e.path, []).append(([e.client], settings))
    ids = ids or {path: i for i, path in enumerate(by_path, 1)}
    blocks = [exports_to_ganesha.export_block(ids[path], path, rules) for path, rules in by_path.items()]
    return "# Written by the lab's exportfs from /etc/exports; edit that instead.\n" + "".join(blocks)


def unexpressed(exports: list[Export]) -> list[str]:
    """The options of the table that the lab's ganesha cannot honour, as "client:path: option: why".

    exportfs(8) serves an export whose options the file system cannot honour
    and says so; the stand-in does the same instead of refusing the table.
    """
    return [f"{e.client}:{e.path}: {why}" for e in exports
            for why in exports_to_ganesha.translate(",".join(e.options))[1]]


def verbose_listing(exports: list[Export], *, verbose: bool) -> str:
    """exportfs(8)'s listing: a path over 14 characters puts its client on the next line."""
    out = []
    for e in exports:
        head = f"{e.path:<14}\n\t\t" if len(e.path) > 14 else f"{e.path:<14}\t"
        opts = f"({','.join(_verbose_order(e.options))})" if verbose else ""
        out.append(f"{head}{'<world>' if e.client == '*' else e.client}{opts}\n")
    return "".join(out)


def _verbose_order(options: tuple[str, ...]) -> list[str]:
    """The kernel tool prints flags first, then sec=, then the per-flavour flags."""
    per_flavour = ("rw", "ro", "secure", "insecure", "root_squash", "no_root_squash", "all_squash", "no_all_squash")
    order = ("sync", "async", "wdelay", "no_wdelay", "hide", "nohide", "crossmnt", "subtree_check",
             "no_subtree_check", "anonuid", "anongid")
    flags = sorted((o for o in options if o not in per_flavour and not o.startswith("sec=")),
                   key=lambda o: order.index(o.split("=")[0]) if o.split("=")[0] in order else len(order))
    sec = [o for o in options if o.startswith("sec=")] or ["sec=sys"]
    flavour = [o for o in per_flavour if o in options]
    return flags + sec + flavour


def apply(exports: list[Export], *, timeout: float = 15.0) -> None:
    """Record the table, rewrite ganesha's exports, reload ganesha and check that it serves them.

    The check reads the export list ganesha logs after the reload
    (virtmig.lab.ganesha_reload): every path of the table under its
    Export_Id, and none of the ids this adapter gave paths no longer in it.
    """
    ETAB.parent.mkdir(parents=True, exist_ok=True)
    ETAB.write_text("".join(e.etab_line() for e in exports))
    ids = export_ids(list(dict.fromkeys(e.path for e in exports)))
    Path(nfsserver.GANESHA_EXPORTS).write_text(ganesha_exports(exports, ids) + ganesha_reload.LOG_BLOCK)
    pid = int(Path(nfsserver.GANESHA_PIDFILE).read_text().split()[0])
    managed = json.loads(EXPORT_IDS.read_text()).values()
    ganesha_reload.reload(pid, {export_id: path for path, export_id in ids.items()}, managed, timeout=timeout)


def main(argv: list[str]) -> int:
    """exportfs(8) subset: -r/-a re-export all, -u [client:/path], -v, plain listing, -o."""
    flags: set[str] = set()
    options = ""
    targets: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "-o":
            options = next(args, "")
        elif arg.startswith("-") and len(arg) > 1:
            flags.update(arg[1:])
        else:
            targets.append(arg)
    unknown = flags - set("raruvfis")
    if unknown:
        print(f"exportfs (virtmig lab): unsupported option(s) -{''.join(sorted(unknown))}", file=sys.stderr)
        return 1
    try:
        table = read_etab()
        if "u" in flags:
            table = [] if "a" in flags else [e for e in table if f"{e.client}:{e.path}" not in targets]
        elif "r" in flags or "a" in flags:
            table = read_exports()
        if targets and "u" not in flags:  # exportfs [-o opts] client:/path
            for target in targets:
                client, _, path = target.rpartition(":")
                new = Export(path, normalise_client(client or "*", "command line"),
                             merge_options(exports_to_ganesha.DEFAULTS, options, "command line"))
                table = [e for e in table if (e.path, e.client) != (new.path, new.client)] + [new]
        if flags & set("rau") or targets:
            for why in unexpressed(table):
                print(f"exportfs: warning: {why}; the lab's server (nfs-ganesha) leaves it out", file=sys.stderr)
            apply(table)
        elif "v" in flags or not flags:
            sys.stdout.write(verbose_listing(table, verbose="v" in flags))
    except (ExportsError, GaneshaOptionError, LabError, OSError) as err:
        print(f"exportfs: {err}", file=sys.stderr)
        return 1
    if "v" in flags and flags & set("rau"):
        for e in table:
            print(f"exporting {e.client}:{e.path}")
    return 0


def setup_node(node: Node, state_dir: Path) -> None:
    """Give the nfs node a private /etc (overlay) and `exportfs` in /usr/local/sbin.

    Mounts already under /etc in the node (hostfs's /etc/ssh, /etc/hosts and
    nfsserver's /etc/ganesha) are moved aside and back on top of the overlay,
    so this can run before or after them.
    """
    upper, work, stash = state_dir / "etc-upper", state_dir / "etc-work", state_dir / "etc-stash"
    for d in (upper, work, stash):
        d.mkdir(parents=True, exist_ok=True)
    (upper / "exports").touch()
    mounted = node.run(["findmnt", "-rn", "-o", "TARGET"]).stdout.split()
    under = sorted((m for m in mounted if m.startswith("/etc/")), key=len)
    top = [m for m in under if not any(m != o and m.startswith(o + "/") for o in under)]
    moves = [(m, stash / str(i)) for i, m in enumerate(top)]
    for target, aside in moves:
        is_dir = node.run(["test", "-d", target], check=False).ok
        aside.mkdir(exist_ok=True) if is_dir else aside.touch()
        node.run(["mount", "--move", target, str(aside)])
    node.run(["mount", "-t", "overlay", "overlay", "-o",
              f"lowerdir=/etc,upperdir={upper},workdir={work}", "/etc"])
    for target, aside in moves:
        node.run(["mount", "--move", str(aside), target])
    sbin = state_dir / "usr-local-sbin"
    launcher.write_launcher(sbin / "exportfs", "virtmig.lab.exportfs_adapter", what="exportfs(8)")
    node.bind(sbin, "/usr/local/sbin")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
