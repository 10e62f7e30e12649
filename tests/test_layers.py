"""The floor plan holds: the foundation (ccp) imports no model family and nothing of the
application (bench); the model families import the foundation only (and not each other); no
module imports its way back to itself. Every import counts, also the lazy ones inside
functions: a cycle through a lazy import is still a cycle of ideas."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"ccp": 0, "baselines": 1, "neural": 1, "bench": 2}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in LAYERS for p in (ROOT / package).rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports (the longest known prefix of each import)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def layer(module: str) -> tuple[str, int]:
    top = module.split(".")[0]
    return top, LAYERS[top]


def test_no_import_goes_up_or_across_families():
    wrong = []
    for name, targets in graph().items():
        top, level = layer(name)
        for target in targets:
            other, other_level = layer(target)
            if other_level > level or (other_level == level and other != top):
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    edges = graph()
    # Packages import their own submodules (re-exports); a package's __init__ importing a
    # child is not a cycle of ideas, so edges from a package to its descendants are dropped.
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("source, expected", [
    ("from ccp import metrics\n", {"ccp.metrics"}),
    ("def f():\n    from bench.harness import fit_model\n", {"bench.harness"}),
    ("from . import schema\n", {"ccp.data.schema"}),
])
def test_the_scanner_sees_every_kind_of_import(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    known = {"ccp.metrics", "bench.harness", "ccp.data.schema", "ccp.data"}
    assert imports_of("ccp.data.loader", path, known) == expected
