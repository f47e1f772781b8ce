"""The package's import rules (docs/ARCHITECTURE.md): each folder imports only the folders below it,
and no module imports itself back through others. Read from the source (every ``import``, also the
ones inside functions), so a rule broken by a lazy import is caught too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "w2vbert"

# folder -> the folders it may import (besides itself). Entry points (w2vbert/*.py) may import all.
ALLOWED: dict[str, set[str]] = {
    "util": set(),
    "model": {"util"},
    "objectives": {"model", "util"},
    "data": {"model", "util"},
    "prep": {"data", "model", "util"},
    "checkpoint": {"util"},
    "training": {"checkpoint", "data", "model", "objectives", "util"},
    "decoding": {"checkpoint", "data", "model", "objectives", "util"},
    "export": {"checkpoint", "data", "decoding", "model", "objectives", "util"},
    "reporting": {"decoding", "util"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path], module: str | None = None) -> set[str]:
    """The package modules ``path`` (module ``module``, default: from its place) imports
    (``from w2vbert.x import y`` counts as w2vbert.x.y when that is a module, else w2vbert.x;
    relative imports are resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level > 0:  # from . import x / from ..training import loop
                name = module or _module_name(path)
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            if not name.startswith("w2vbert"):
                continue
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "w2vbert":
                found.add(name)
    return found


def _folder(module: str) -> str | None:
    """``w2vbert.model.conformer`` -> ``model``; entry points and ``w2vbert`` itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def test_every_folder_of_the_package_has_a_rule() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(ALLOWED), "add the new folder to ALLOWED and to docs/ARCHITECTURE.md"


def test_folders_import_only_the_folders_below_them() -> None:
    broken = []
    for module, imported in sorted(_graph().items()):
        folder = _folder(module)
        if folder is None:
            continue  # an entry point
        for other in sorted(imported):
            target = _folder(other)
            if target is None:
                broken.append(f"{module} imports the entry point {other}")
            elif target != folder and target not in ALLOWED[folder]:
                broken.append(
                    f"{module} imports {other} ({folder}/ may import {sorted(ALLOWED[folder])})"
                )
    assert not broken, "\n".join(broken)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list) -> None:
    assert _cycles(graph) == expected


def test_the_rule_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from w2vbert.training.loop import Trainer\n")
    assert _imports(source, _modules()) == {"w2vbert.training.loop"}


def test_the_rule_check_resolves_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text("from ..training import loop\nfrom . import scoring\n")
    found = _imports(source, _modules(), module="w2vbert.decoding.probe")
    # a package counts too: importing its module runs its __init__
    assert found == {
        "w2vbert.training",
        "w2vbert.training.loop",
        "w2vbert.decoding",
        "w2vbert.decoding.scoring",
    }
