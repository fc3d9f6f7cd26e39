"""The package's shape (DESIGN.md, STYLE.md §14): layers point one way and no two modules import each other.

The import graph is read from the source with `ast`, imports inside functions included (a local import that
dodges a cycle at load time is still a cycle in the design). Layers, lowest first:

    0  learners/, tasks/, config, atomic          the rule and the data; generic YAML and file helpers
    1  meta/                                      the pure outer loop
    2  run/, evaluation/, pretrained.load         trainer and checkpoints; evaluation; loading shipped LAs
    3  report/, pretrained.export                 markdown, PNG and JSON writers; exporting an LA
    4  cli/, reproduce/, sklearn, vsml, __main__  commands, recipes, the estimator, the public API

A module may import its own layer or lower ones, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vsml

PACKAGE_DIR = Path(vsml.__file__).resolve().parent

LAYERS = (
    ("vsml.learners", "vsml.tasks", "vsml.config", "vsml.atomic"),
    ("vsml.meta",),
    ("vsml.run", "vsml.evaluation", "vsml.pretrained.load", "vsml.pretrained"),
    ("vsml.report", "vsml.pretrained.export"),
    ("vsml.cli", "vsml.reproduce", "vsml.sklearn", "vsml.__main__", "vsml"),
)
MAX_TOP_LEVEL_MODULES = 6  # besides __init__ and __main__


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """The vsml modules `name` imports anywhere in its source (`from a import b` counts as a.b if that is a
    module, else as a)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                found.add(target)
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def layer_of(name: str) -> int:
    """The layer of the longest matching prefix in LAYERS."""
    best, best_length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    if best is None:
        raise AssertionError(f"{name} has no layer: add it to LAYERS in {__file__}")
    return best


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, colouring modules)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_the_imports():
    """The walker is not vacuous: it finds known edges, including one made inside a function."""
    assert "vsml.meta.protocol" in GRAPH["vsml.meta.es"]
    assert "vsml.run.trainer" in GRAPH["vsml.cli.main"] or any(
        "vsml.run.trainer" in GRAPH[m] for m in MODULES if m.startswith("vsml.cli")
    )
    source = "def f():\n    from vsml.meta import es\n"
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(ast.parse(source)))
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_a_higher_layer(name):
    upward = sorted(target for target in GRAPH[name] if layer_of(target) > layer_of(name))
    assert not upward, f"{name} (layer {layer_of(name)}) imports higher layers: " + ", ".join(
        f"{t} (layer {layer_of(t)})" for t in upward
    )


def test_few_top_level_modules():
    top = sorted(p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"top-level modules: {top}"
