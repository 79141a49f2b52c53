"""The architecture of README "Architecture", checked: dive_hf's modules import each other without a cycle
(function-local imports count), only downward through the layers, and stay short enough to read in one sitting.

Parses the source with ``ast`` (nothing is imported). A new module goes into :data:`LAYERS`, in the lowest layer
whose modules it does not need to import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dive_hf"
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250

#: Bottom to top. A module may import its own layer and those below it, never one above.
LAYERS = [
    ("leaves", ["dive_hf._version", "dive_hf.lazy", "dive_hf.names", "dive_hf.atomic", "dive_hf.errors", "dive_hf.lock"]),
    ("data", ["dive_hf.data"]),
    ("training parts", ["dive_hf.models", "dive_hf.losses", "dive_hf.metrics", "dive_hf.config", "dive_hf.presets",
                        "dive_hf.schedules", "dive_hf.nonfinite", "dive_hf.preemption"]),
    ("records", ["dive_hf.card", "dive_hf.report", "dive_hf.plots", "dive_hf.curves", "dive_hf.run_log",
                 "dive_hf.resume", "dive_hf.checkpoint_files"]),
    ("hub", ["dive_hf.hub"]),
    ("stage tools", ["dive_hf.teacher", "dive_hf.stage_plan", "dive_hf.initial_weights",
                     "dive_hf.stage_models"]),
    ("trainer", ["dive_hf.trainer", "dive_hf.evaluation", "dive_hf.virtual_examples"]),
    ("entry points", ["dive_hf", "dive_hf.cli", "dive_hf.runner", "dive_hf.recipe", "dive_hf.quickstart"]),
]


def package_modules() -> dict[str, Path]:
    """``{"dive_hf.data.split_list": path, "dive_hf.data": path of its __init__.py, ...}``."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The dive_hf modules that ``name`` imports anywhere in its source (top level or inside functions).
    ``from X import Y`` counts as an import of ``X.Y`` when that is a module, else of ``X``."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
                            ) if node.level else node.module or ""
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in modules and "." in target:  # import dive_hf.data.long_tail.x → the module
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer_of(module: str) -> int:
    best, index = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    if index is None:
        pytest.fail(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py (and to README "
                    f"\"Architecture\"), in the lowest layer whose modules it does not import")
    return index


def test_find_cycle_reports_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle (function-local imports count): " + " -> ".join(cycle)


def test_imports_only_go_down_the_layers():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in sorted(import_graph().items()) for target in sorted(targets)
              if layer_of(target) > layer_of(module)]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_modules_and_classes_are_short():
    too_long = []
    for name, path in package_modules().items():
        source = path.read_text()
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            too_long.append(f"module {path.relative_to(PACKAGE.parent)}: {lines} lines (max {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_long.append(f"class {name}.{node.name}: {node.end_lineno - node.lineno + 1} lines "
                                f"(max {MAX_CLASS_LINES})")
    assert not too_long, "\n".join(too_long)
