"""Reading an inventory file with ansible-core: static plugins only, failures with their cause and line.

InventoryManager tries plugin after plugin and only warns when all fail;
here the file is first parsed by the plugin its name calls for, so that a
failure is an InventoryError with Ansible's own message and the line, and
InventoryManager then reads it with that plugin alone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.inventory.data import InventoryData
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible.vars.manager import VariableManager

from virtmig.inventory.values import InventoryError, numbered_lines

#: File names Ansible's yaml plugin takes as YAML (and names without a suffix, tried as YAML then INI);
#: anything else is read as INI, as Ansible's ini plugin does.
YAML_SUFFIXES = (".yml", ".yaml", ".json")


def read(path: Path) -> tuple[Any, Any]:
    """(InventoryManager, VariableManager) of the inventory *path* (absolute), else InventoryError.

    The managers carry group_vars/ and host_vars/ beside the file, as
    Ansible reads them.
    """
    loader = DataLoader()
    inventory = _StaticInventory(loader, path, parsing_plugin(path, loader))
    return inventory, VariableManager(loader=loader, inventory=inventory)


class _StaticInventory(InventoryManager):  # type: ignore[misc]  # ansible-core has no type hints
    """Ansible's InventoryManager reading one file with one static plugin (ini or yaml), nothing else.

    Its default plugin list also holds ``script``, which runs an executable
    file, and ``auto``, which loads whatever plugin a YAML file names (a
    cloud's API, say): checking options must neither run a program nor
    reach the network, so only the plugin that parsed the file is offered.
    """

    def __init__(self, loader: DataLoader, path: Path, plugin: str) -> None:
        self._virtmig_plugin = plugin
        super().__init__(loader=loader, sources=[str(path)])

    def _fetch_inventory_plugins(self) -> list[Any]:
        return [inventory_loader.get(self._virtmig_plugin)]


def _plugins_for(path: Path) -> tuple[str, ...]:
    """The static plugins Ansible would try on *path*, in its order: yaml takes YAML_SUFFIXES and no suffix."""
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return ("yaml",)
    return ("yaml", "ini") if not suffix else ("ini",)


def parsing_plugin(path: Path, loader: DataLoader) -> str:
    """The first of `_plugins_for` that parses *path*, else InventoryError with its cause and line.

    When both fail (a file without a suffix), the error reported is the
    one of the format the file looks like: YAML if its first line is a key
    ("all:") or "---", else INI.
    """
    errors: dict[str, AnsibleError] = {}
    for plugin in _plugins_for(path):
        error = _parse_error(path, plugin, loader)
        if error is None:
            return plugin
        errors[plugin] = error
    first = next((text for _n, text in numbered_lines(path)), "")
    looks_yaml = first.endswith(":") or first == "---"
    kind = "yaml" if "yaml" in errors and ("ini" not in errors or looks_yaml) else "ini"
    line = _error_line(errors[kind], path, kind, loader)
    where = f"{path}:{line}" if line else str(path)
    raise InventoryError(f"--inventory {where}: not a valid {kind.upper()} Ansible inventory: "
                         f"{_innermost_message(errors[kind])}") from errors[kind]


def _parse_error(path: Path, kind: str, loader: DataLoader) -> AnsibleError | None:
    """What ansible-core's *kind* plugin raises parsing *path* (None: it parses)."""
    scratch = InventoryData()
    scratch.current_source = str(path)
    try:
        inventory_loader.get(kind).parse(scratch, loader, str(path), cache=False)
    except AnsibleError as exc:
        return exc
    return None


#: Beyond this many lines an INI error is reported without its line (finding it costs a parse per line).
MAX_LINES_SCANNED = 2000


def _error_line(error: AnsibleError, path: Path, kind: str, loader: DataLoader) -> int | None:
    """The line of *path* the parse error is about, if one can be found.

    YAML errors carry it (the Origin ansible-core attaches, line_num).  The
    ini plugin of ansible-core 2.19 drops its line number before raising, and
    some of its errors do not quote the line either ("not enough values to
    unpack" for a stray "[bad"), so the line is found with ansible's own
    parser: the first N such that the file's first N lines fail as the whole
    file does.  INI is read line by line, so that is the line it stopped at.
    """
    seen: BaseException | None = error
    while seen is not None:
        line = getattr(getattr(seen, "obj", None), "line_num", None)
        if isinstance(line, int) and line > 0:
            return line
        seen = seen.__cause__ or seen.__context__
    if kind != "ini":
        return None
    try:
        lines = path.read_text(errors="replace").splitlines(keepends=True)
    except OSError:
        return None
    if len(lines) > MAX_LINES_SCANNED:
        return None
    wanted = _innermost_message(error)
    with tempfile.TemporaryDirectory(prefix="virtmig-inventory-") as scratch:
        prefix = Path(scratch) / path.name
        for count in range(1, len(lines) + 1):
            prefix.write_text("".join(lines[:count]))
            failed = _parse_error(prefix, kind, loader)
            if failed is not None and _innermost_message(failed) == wanted:
                return count
    return None


def _innermost_message(exc: BaseException) -> str:
    """The message of the deepest explicit cause: the ini plugin's own, under "Failed to parse inventory".

    Only ``raise ... from`` causes: an implicit context is the Python error
    the plugin caught and explained.
    """
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(getattr(exc, "message", None) or exc).strip()

