"""The layers point one way: cli → flows → tasks → gangway (core); rehearsal stands beside.

Read from the source with ast (every import, also inside functions), so a lazy import that
points up a layer is caught as well as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gangway.config import REPO_ROOT

# package → the packages it must never import
FORBIDDEN = {
    "gangway": {"cli", "flows", "tasks", "rehearsal"},
    "tasks": {"cli", "flows", "rehearsal"},
    "flows": {"cli", "rehearsal"},
    "rehearsal": {"cli", "flows", "tasks"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level package, line) of every absolute import in a file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def violations(root: Path) -> list[str]:
    """Every import that points the wrong way, as 'file:line imports package'."""
    found = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for name, line in sorted(imported_packages(path)):
                if name in forbidden:
                    found.append(f"{path.relative_to(root)}:{line} imports {name}")
    return found


def test_no_layer_imports_a_layer_above_it() -> None:
    assert violations(REPO_ROOT) == []


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("tasks", "def f():\n    from flows import deploy\n", "tasks/bad.py:2 imports flows"),
        ("gangway", "import tasks.ledger\n", "gangway/bad.py:1 imports tasks"),
        ("flows", "from cli.main import main\n", "flows/bad.py:1 imports cli"),
        ("rehearsal", "from tasks import steps\n", "rehearsal/bad.py:1 imports tasks"),
    ],
)
def test_the_check_catches_an_upward_import(
    tmp_path: Path, package: str, source: str, expected: str
) -> None:
    (tmp_path / package).mkdir()
    (tmp_path / package / "bad.py").write_text(source)
    assert violations(tmp_path) == [expected]
