"""The library's layers, as docs/architecture.md draws them, checked from the source.

A layer that imports a layer above it is how a library grows into one knot:
the check reads every module's imports (static ones, including those under
TYPE_CHECKING) and fails naming the module, the import and the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BASE = {"virtmig", "virtmig.host", "virtmig.sshhost", "virtmig.localhost", "virtmig.sshconfig", "virtmig.config",
        "virtmig.guestconfig", "virtmig.waiters", "virtmig.journal", "virtmig.pairs", "virtmig.inventory"}

#: Layer -> the layers it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "virtmig.host": BASE,
    "virtmig.sshhost": BASE,
    "virtmig.localhost": BASE,
    "virtmig.sshconfig": BASE,
    "virtmig.config": BASE,
    "virtmig.guestconfig": BASE,
    "virtmig.waiters": BASE,
    "virtmig.journal": BASE,
    "virtmig.pairs": BASE,
    "virtmig.inventory": BASE,
    "virtmig.environment": BASE,
    "virtmig.pairlock": BASE,
    "virtmig.guest": BASE,
    "virtmig.storage": BASE,
    "virtmig.migration": BASE | {"virtmig.guest", "virtmig.storage"},
    "virtmig.preflight": BASE | {"virtmig.environment", "virtmig.storage", "virtmig.migration"},
    "virtmig.diagnose": BASE | {"virtmig.storage"},
    "virtmig.cleanup": BASE | {"virtmig.storage"},
    "virtmig.__main__": BASE | {"virtmig.cleanup"},
    "virtmig.report": BASE | {"virtmig.environment", "virtmig.migration", "virtmig.preflight"},
}


def layer_of(module: str) -> str | None:
    """virtmig.storage.exports -> virtmig.storage; virtmig.host -> virtmig.host; others -> None."""
    parts = module.split(".")
    if parts[0] != "virtmig":
        return None
    return ".".join(parts[:2])


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> list[str]:
    """Every module a file imports; `from virtmig import x` counts as virtmig.x."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "virtmig":
                names.extend(f"virtmig.{alias.name}" for alias in node.names)
            else:
                names.append(node.module)
    return names


def violations(path: Path) -> list[str]:
    own = layer_of(module_name(path))
    if own is None or own not in ALLOWED:
        return []
    found = []
    for name in imported(ast.parse(path.read_text(), str(path))):
        target = layer_of(name)
        if target is not None and target != own and target not in ALLOWED[own]:
            found.append(f"{path.relative_to(REPO)} imports {name}: {own} may import only "
                         f"{', '.join(sorted(ALLOWED[own]))}")
    return found


def test_every_library_layer_imports_only_the_layers_below_it() -> None:
    problems = [v for path in sorted((REPO / "virtmig").rglob("*.py")) for v in violations(path)]
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule is not vacuous: a storage module importing the migration layer is caught."""
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    bad = tmp_path / "virtmig" / "storage" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from virtmig.migration.runner import migrate\nfrom virtmig import host\n")
    assert violations(bad) == [
        "virtmig/storage/bad.py imports virtmig.migration.runner: virtmig.storage may import only "
        + ", ".join(sorted(BASE))
    ]


#: The only wiring module that may import the embedded lab: its own fixture, which also hands the
#: lab's values in as the defaults of a run without --src/--dst.
LAB_IMPORTERS = {"fixtures.lab"}


def lab_imports(path: Path) -> list[str]:
    """`path imports virtmig.lab...` for each import of the lab by a suite or fixture not allowed one."""
    if module_name(path) in LAB_IMPORTERS:
        return []
    return [f"{path.relative_to(REPO)} imports {name}: only {', '.join(sorted(LAB_IMPORTERS))} may import the lab "
            "(a site's run must carry nothing of it)"
            for name in imported(ast.parse(path.read_text(), str(path)))
            if name == "virtmig.lab" or name.startswith("virtmig.lab.")]


def test_suites_and_fixtures_do_not_import_the_lab() -> None:
    paths = sorted([*(REPO / "suites").rglob("*.py"), *(REPO / "fixtures").rglob("*.py"), REPO / "conftest.py"])
    problems = [v for path in paths for v in lab_imports(path)]
    assert not problems, "\n".join(problems)


def test_the_lab_rule_sees_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    (tmp_path / "fixtures").mkdir()
    bad, allowed = tmp_path / "fixtures" / "guest.py", tmp_path / "fixtures" / "lab.py"
    bad.write_text("from virtmig.lab.topology import GUEST_IP\nfrom virtmig import lab\nimport virtmig.labels\n")
    allowed.write_text("from virtmig.lab import lifecycle\n")
    assert lab_imports(bad) == [
        f"fixtures/guest.py imports {name}: only fixtures.lab may import the lab "
        "(a site's run must carry nothing of it)" for name in ("virtmig.lab.topology", "virtmig.lab")]
    assert lab_imports(allowed) == []
