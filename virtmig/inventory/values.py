"""Inventory values as Ansible read them, and where they were written: for checks and their messages.

Every message about a bad value names the file and line it came from: the
origin ansible-core 2.19 records on each value it reads (an inventory
line, or a group_vars/ file), else the inventory's first line holding it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from virtmig.config import ConfigError

T = TypeVar("T")


class InventoryError(ConfigError):
    """The inventory cannot give the run its hosts: it does not parse, lacks the group, or holds a bad value."""


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of *path* that are not comments."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [(n, s) for n, s in ((n, raw.strip()) for n, raw in enumerate(text.splitlines(), 1))
            if s and not s.startswith(("#", ";"))]


def line_of(path: Path, value: str) -> int | None:
    """The first line of *path* where *value* is written (None: not found)."""
    return next((n for n, text in numbered_lines(path) if value in text), None)


def where(path: Path, value: object) -> str:
    """"FILE:LINE" where *value* was written, for a message (a group_vars/ file, say, or the inventory).

    ansible-core 2.19 tags every value it reads with its origin; the tag is
    read by duck typing (its API is internal to Ansible).  Without one, the
    first line of the inventory *path* holding the value.
    """
    for tag in getattr(value, "_ansible_tags_mapping", {}).values():
        file, line = getattr(tag, "path", None), getattr(tag, "line_num", None)
        if isinstance(file, str) and file:
            return f"{file}:{line}" if isinstance(line, int) else file
    line = line_of(path, str(value))
    return f"{path}:{line}" if line else str(path)


def checked(path: Path, value: object, check: Callable[[str], T]) -> T:
    """check(the value as text), its ConfigError re-raised naming the file and line the value is written on."""
    try:
        return check(str(value))
    except ConfigError as exc:
        raise InventoryError(f"--inventory {where(path, value)}: {exc}") from exc


def as_text(path: Path, host: str, name: str, value: object) -> str:
    """*value* of variable *name* as plain text, refusing templates and non-scalars."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise value_error(path, host, name, value, "must be a string or a number")
    text = str(value)
    if "{{" in text or "{%" in text:
        raise value_error(path, host, name, value, "is a Jinja2 template; virtmig reads values as written, "
                                                    "without rendering them: give the value itself")
    return text


def value_error(path: Path, host: str, name: str, value: object, why: str) -> InventoryError:
    return InventoryError(f"--inventory {where(path, value)}: host {host!r}: {name} {str(value)!r} {why}")


