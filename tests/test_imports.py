"""The package's imports point down its layers and never form a cycle (issue #25).

Why a test besides CI's ``lint-imports``: it also shows that the contract can fail. A copy of the package with
one planted import (an upward one, or a lazy one that closes a cycle inside a layer) must break it; and a small
AST cycle finder of its own, independent of import-linter, finds no cycle in the real package but finds the
planted one. Function-level and ``TYPE_CHECKING`` imports count: a lazy import still couples the modules.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")  # envs/requirements.txt pins it


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its body); a module importing its own package's
    ``__init__`` is left out (the package imports it, by design)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                head = base[: len(base) - node.level + 1] if node.level else []
                module = ".".join(head + ([node.module] if node.module else []))
                targets |= {f"{module}.{a.name}" for a in node.names} | {module}
        found = set()
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):
                found.add(t)
        graph[name] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (each is an import cycle)."""
    reach = {m: set() for m in graph}
    for start in graph:
        stack = list(graph[start])
        while stack:
            m = stack.pop()
            if m not in reach[start]:
                reach[start].add(m)
                stack.extend(graph[m])
    comps = {frozenset({m} | {o for o in reach[m] if m in reach[o]}) for m in graph}
    return [set(c) for c in comps if len(c) > 1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True, text=True
    )


def planted_copy(tmp_path: Path, module: str, line: str) -> Path:
    """The package and its contract copied to ``tmp_path``, with ``line`` appended to ``module`` (a path)."""
    shutil.copytree(ROOT / "prunenet", tmp_path / "prunenet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "prunenet" / module
    target.write_text(target.read_text() + line)
    return tmp_path


def test_the_package_keeps_its_import_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_the_package_has_no_import_cycle():
    graph = import_graph(ROOT / "prunenet")
    assert "prunenet.surgery" in graph["prunenet.slicing"]  # the finder sees real imports
    assert cycles(graph) == []


def test_an_upward_import_breaks_the_layers(tmp_path):
    """A checkpoint format importing the methods (the cycle this contract removed) fails both contracts."""
    root = planted_copy(tmp_path, "checkpoints/hf.py", "\n\ndef _planted():\n    from ..methods import METHODS\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "0 kept, 2 broken" in result.stdout
    assert "prunenet.checkpoints.hf -> prunenet.methods" in result.stdout
    assert any({"prunenet.checkpoints.hf", "prunenet.methods"} <= c for c in cycles(import_graph(root / "prunenet")))


def test_a_lazy_cycle_inside_one_layer_breaks_the_acyclic_contract(tmp_path):
    """layer_merge imports depth; depth importing layer_merge back (in a function) is a cycle within a layer."""
    root = planted_copy(tmp_path, "depth.py", "\n\ndef _planted():\n    from .layer_merge import merge_layer\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "1 kept, 1 broken" in result.stdout
    assert {"prunenet.depth", "prunenet.layer_merge"} in cycles(import_graph(root / "prunenet"))


def oversized(package: Path, max_module: int = 350, max_function: int = 60) -> list[str]:
    """Modules over ``max_module`` lines and functions over ``max_function`` lines (issue #25's size limits)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        if (n := source.count("\n")) > max_module:
            found.append(f"{path.relative_to(package.parent)}: {n} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := node.end_lineno - node.lineno + 1) > max_function:
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name}: {n} lines")
    return found


def test_modules_and_functions_stay_small(tmp_path):
    """No module over 350 lines, no function over 60, in the package; a planted long function is found."""
    assert oversized(ROOT / "prunenet") == []
    planted = tmp_path / "pkg"
    planted.mkdir()
    (planted / "m.py").write_text("def f():\n" + "    x = 1\n" * 60)
    assert oversized(planted) == ["pkg/m.py:1 f: 61 lines"]
