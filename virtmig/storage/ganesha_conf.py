"""Read nfs-ganesha's config far enough to know what it exports already.

Before adding an EXPORT block, virtmig must know the Export_Ids in use (a
reload that gives one id two paths is refused) and whether the path is
exported already (two blocks for one path make NFSv3 mounts ambiguous).
ganesha's syntax is small: `NAME { key = value[, value]; ... }` blocks,
nested; '#' comments; double-quoted strings; `%include "file"` lines;
keywords case-insensitive.  Only top-level EXPORT blocks and their
Export_Id, Path and Pseudo are read; everything else is skipped.
No I/O here: the caller reads the files (over SSH) and follows %includes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfiguredExport:
    """An EXPORT block found in the config (or a file it includes)."""

    source: str
    export_id: int | None
    path: str | None
    pseudo: str | None


_INCLUDE = re.compile(r'^[ \t]*%include[ \t]+"?([^"\s]+)"?[ \t]*$', re.MULTILINE | re.IGNORECASE)
_TOKEN = re.compile(r'"[^"]*"|[{}=;,]|[^\s{}=;,"]+')
_PUNCT = frozenset("{}=;,")


def _without_comments(text: str) -> str:
    """`text` without '#' comments ('#' inside double quotes is kept)."""
    out: list[str] = []
    for line in text.splitlines():
        quoted = False
        for i, ch in enumerate(line):
            if ch == '"':
                quoted = not quoted
            elif ch == "#" and not quoted:
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def includes(text: str) -> list[str]:
    """The files a ganesha config text pulls in with %include."""
    return _INCLUDE.findall(_without_comments(text))


def configured_exports(text: str, source: str) -> list[ConfiguredExport]:
    """Top-level EXPORT blocks of a ganesha config text (keywords are case-insensitive)."""
    tokens = _TOKEN.findall(_INCLUDE.sub("", _without_comments(text)))
    found: list[ConfiguredExport] = []
    stack: list[str] = []
    fields: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if nxt == "{" and tok not in _PUNCT:
            stack.append(tok.upper())
            fields = {} if stack == ["EXPORT"] else fields
            i += 2
        elif tok == "}":
            if stack == ["EXPORT"]:
                raw_id = fields.get("export_id", "")
                found.append(ConfiguredExport(source, int(raw_id) if raw_id.isdigit() else None,
                                              fields.get("path"), fields.get("pseudo")))
            stack = stack[:-1]
            i += 1
        elif nxt == "=" and stack == ["EXPORT"]:
            end = i + 2  # a value ends at ';' (or, leniently, at a brace)
            while end < len(tokens) and tokens[end] not in (";", "{", "}"):
                end += 1
            fields[tok.lower()] = " ".join(t.strip('"') for t in tokens[i + 2:end])
            i = end + 1 if end < len(tokens) and tokens[end] == ";" else end
        else:
            i += 1
    return found
