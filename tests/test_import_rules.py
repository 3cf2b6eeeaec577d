"""The layering rule, read from the source: the library never imports a leaf folder, leaves never import each other.

``latentsync/`` may not import ``scripts``, ``eval``, ``preprocess``, ``tools`` or ``tests``;
each of ``scripts/``, ``eval/``, ``preprocess/`` and ``tools/`` imports only from ``latentsync``
(and third-party packages), never from another of these folders or from ``tests``. Tests may
import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LEAVES = ("scripts", "eval", "preprocess", "tools")
FORBIDDEN = {
    "latentsync": set(LEAVES) | {"tests"},
    **{leaf: (set(LEAVES) - {leaf}) | {"tests"} for leaf in LEAVES},
}


def imported_top_packages(path: Path) -> set[tuple[int, str]]:
    """(line, first dotted component) of every absolute import in ``path`` (relative imports stay in the folder)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, alias.name.split(".")[0]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.lineno, node.module.split(".")[0]))
    return found


def violations(root: Path) -> list[str]:
    """``file:line imports X`` for every import that breaks the rule under ``root``."""
    bad = []
    for folder, forbidden in FORBIDDEN.items():
        for path in sorted((root / folder).rglob("*.py")):
            for line, package in sorted(imported_top_packages(path)):
                if package in forbidden:
                    bad.append(f"{path.relative_to(root)}:{line} imports {package}")
    return bad


def test_library_and_leaves_import_only_downwards():
    assert violations(Path(REPO_ROOT)) == []


@pytest.mark.parametrize(
    "folder,source,broken",
    [
        ("latentsync", "from scripts.inference import main\n", True),
        ("latentsync", "import tests.tiny_models\n", True),
        ("tools", "from tests.tiny_models import tiny_unet\n", True),
        ("scripts", "from eval.eval_syncnet_acc import evaluate\n", True),
        ("eval", "import tools.synthetic_media as m\n", True),
        ("scripts", "from latentsync.training.loop import train_loop\nfrom . import helper\n", False),
        ("tests", "from scripts.train_syncnet import main\nfrom tools.write_fileslist import write_fileslist\n", False),
    ],
)
def test_the_rule_catches_what_it_should(tmp_path, folder, source, broken):
    (tmp_path / folder / "sub").mkdir(parents=True)
    (tmp_path / folder / "sub" / "module.py").write_text(source)
    found = violations(tmp_path)
    assert bool(found) == broken, found
    if broken:
        assert found[0].startswith(f"{folder}/sub/module.py:1 imports ")
