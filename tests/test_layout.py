"""The layout's import rules (README, "Layout"), checked on the whole folders:

* readers — every module of ``dicekit.view`` and the dashboard's loaders (app/) — import with torch,
  transformers and trl blocked (a meta-path hook that raises on import) and load no writer
  (``dicekit.round``, ``dicekit.analysis``);
* no reader names torch or a writer in any import, not even inside a function (read from the source,
  so a lazy import that the first check cannot reach fails too);
* ``dicekit.evals`` never imports ``dicekit.world`` (the world imports evals; the caller passes the
  oracle judge in).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("torch", "transformers", "trl")
WRITERS = ("dicekit.round", "dicekit.analysis")
APP_LOADERS = ("app.tables", "app.loaders", "app.sections")  # app/dashboard.py runs the page when imported

IMPORT_READERS = f"""
import importlib, importlib.abc, pkgutil, sys
sys.path.insert(0, {str(ROOT)!r})

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is blocked: readers must not import it")
        return None

sys.meta_path.insert(0, Blocked())
import dicekit.view
names = [m.name for m in pkgutil.walk_packages(dicekit.view.__path__, "dicekit.view.")] + list(sys.argv[1:])
for name in names:
    importlib.import_module(name)
writers = sorted(m for m in sys.modules if m.startswith({WRITERS!r}))
assert not writers, f"readers loaded writers: {{writers}}"
print("imported", len(names))
"""


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, at any depth; ``from dicekit import x`` gives dicekit.x."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _violations(files, forbidden: tuple[str, ...]) -> list[str]:
    """``file:line: imports name`` for each import of a forbidden module or anything inside it."""
    return [f"{f}:{line}: imports {name}" for f in files for line, name in _imports(f)
            if any(name == p or name.startswith(p + ".") for p in forbidden)]


def test_readers_import_with_torch_blocked():
    loaders = list(APP_LOADERS) if _has("streamlit") else []
    proc = subprocess.run([sys.executable, "-c", IMPORT_READERS, *loaders], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_view = len(list((ROOT / "dicekit" / "view").glob("[!_]*.py")))
    assert proc.stdout.split()[-1] == str(n_view + len(loaders))  # every module was imported


def test_readers_name_no_torch_and_no_writer_anywhere():
    files = sorted((ROOT / "dicekit" / "view").glob("*.py")) + sorted((ROOT / "app").glob("*.py"))
    assert _violations(files, BLOCKED + WRITERS) == []


def test_evals_does_not_import_the_world():
    assert _violations(sorted((ROOT / "dicekit" / "evals").glob("*.py")), ("dicekit.world",)) == []


def test_the_rules_catch_a_forbidden_import(tmp_path):
    """The checks above are not vacuous: a reader that imports torch, or evals importing the world, is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import torch\n    from dicekit.round.run import run_round\n"
                   "from dicekit import world\n", encoding="utf-8")
    found = [v.split(": imports ")[1] for v in _violations([bad], BLOCKED + WRITERS + ("dicekit.world",))]
    assert sorted(found) == ["dicekit.round.run", "dicekit.round.run.run_round", "dicekit.world", "torch"]


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
