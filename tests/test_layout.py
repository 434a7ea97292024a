"""The package's layout as README promises it: the template core stands alone, and no module imports in a circle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lr_lightning"


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The lr_lightning modules ``path`` imports (at module level only, or anywhere in it)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("lr_lightning")}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def test_the_template_core_imports_nothing_outside_itself():
    # Anywhere in a file, lazy imports included: a copier who deletes tutorial/, exact/ and benchmark/ keeps a core
    # that runs (the command line finds the optional least-squares reference by name, and does without it).
    for name, path in MODULES.items():
        if name.startswith("lr_lightning.core"):
            outside = {m for m in _imports(path, top_level_only=False)
                       if not m.startswith("lr_lightning.core") and m != "lr_lightning"}
            assert not outside, f"{name} imports {sorted(outside)}"


def test_no_import_cycles_at_module_level():
    graph = {name: {m for m in _imports(path, top_level_only=True) if m in MODULES and m != name}
             for name, path in MODULES.items()}
    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(node):], node]))
        for nxt in graph[node]:
            visit(nxt, [*stack, node])

    for name in graph:
        visit(name, [])
