"""The package's layout as README promises it: the template core stands alone, and no module imports in a circle."""

import ast
from pathlib import Path

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


OPTIONAL = ("lr_lightning.exact", "lr_lightning.tutorial", "lr_lightning.benchmark")


def _cycle(top_level_only: bool, within: str = "lr_lightning") -> list[str] | None:
    """One import cycle among the modules under ``within`` (through module-level imports only, or any import), or
    None. A package counts as importing its ``__init__``'s imports; ``from pkg import module`` imports the module."""
    graph = {name: {m for m in _imports(path, top_level_only) if m in MODULES and m != name and m.startswith(within)}
             for name, path in MODULES.items() if name.startswith(within)}
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> list[str] | None:
        if node in stack:
            return [*stack[stack.index(node):], node]
        if node in done:
            return None
        for nxt in sorted(graph[node]):
            if found := visit(nxt, [*stack, node]):
                return found
        done.add(node)
        return None

    return next((found for name in sorted(graph) if (found := visit(name, []))), None)


def test_no_import_cycles_at_module_level():
    cycle = _cycle(top_level_only=True)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycles_in_the_core_counting_imports_inside_functions():
    # A lazy import is still a dependency: two modules that need each other are one module in two files.
    cycle = _cycle(top_level_only=False, within="lr_lightning.core")
    assert cycle is None, "import cycle (lazy imports included): " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle(monkeypatch, tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    import lr_lightning.core.fake_b\n")
    b.write_text("import lr_lightning.core.fake_a\n")
    monkeypatch.setitem(MODULES, "lr_lightning.core.fake_a", a)
    monkeypatch.setitem(MODULES, "lr_lightning.core.fake_b", b)
    assert _cycle(top_level_only=True) is None  # a's import is inside a function
    assert set(_cycle(top_level_only=False, within="lr_lightning.core")) == {"lr_lightning.core.fake_a",
                                                                               "lr_lightning.core.fake_b"}


def _mentions(path: Path) -> list[str]:
    """The optional packages ``path`` names in code: string constants (``importlib.import_module("...")``,
    ``__import__``, a table of module names), docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    return [f"line {node.lineno}: {node.value!r:.80}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and any(package in node.value for package in OPTIONAL)]


def test_the_template_core_names_no_optional_package_in_code():
    # Deleting exact/, tutorial/ or benchmark/ must leave nothing in the core that looks for them by name: they plug
    # in through core/solvers.py's discovery, which computes the names it imports.
    for name, path in MODULES.items():
        if name.startswith("lr_lightning.core"):
            assert not _mentions(path), f"{name} names an optional package: {_mentions(path)}"


def test_a_string_import_of_an_optional_package_is_caught(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('"""Docstrings may say lr_lightning.exact."""\nimport importlib\n\n'
                    'def f():\n    return importlib.import_module("lr_lightning.exact.reference")\n')
    assert _mentions(path) == ["line 5: 'lr_lightning.exact.reference'"]
