"""make deps installs, of each line's alternatives, the first one apt has a candidate for.

Runs .ci/debian-packages against this machine's real apt lists, with names
that exist on Debian 12 and 13 alike (bash, coreutils) and one that exists
on neither; and checks that the project's own list resolves here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "debian-packages"

pytestmark = pytest.mark.skipif(shutil.which("apt-cache") is None, reason="needs apt (Debian)")


def _choose(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    listing = tmp_path / "packages.txt"
    listing.write_text(text)
    return subprocess.run([str(SCRIPT), str(listing)], capture_output=True, text=True)


def test_first_alternative_with_a_candidate_is_chosen(tmp_path: Path) -> None:
    proc = _choose(tmp_path, "# comment\nvirtmig-no-such-package | bash\n\ncoreutils | bash  # trailing comment\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["bash", "coreutils"]


def test_a_line_without_any_candidate_is_an_error_naming_it(tmp_path: Path) -> None:
    proc = _choose(tmp_path, "bash\nvirtmig-no-such-package | virtmig-nor-this\n")
    assert proc.returncode == 1
    assert "virtmig-no-such-package | virtmig-nor-this" in proc.stderr


def test_the_projects_list_resolves_one_name_per_line_here() -> None:
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "debian-packages.txt").read_text().splitlines()]
    wanted = [line for line in lines if line]
    proc = subprocess.run([str(SCRIPT), str(ROOT / "debian-packages.txt")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    chosen = proc.stdout.split()
    assert len(chosen) == len(wanted)
    assert all(name in [alt.strip() for alt in line.split("|")] for name, line in zip(chosen, wanted, strict=True))
