"""The package's import graph: no circles, and every import points down the declared order of layers.

The order follows the data flow (README, "Layout"): a layer may import from itself and from the layers
before it, never from one after it. Every ``import`` counts, lazy ones inside functions included; only
``if TYPE_CHECKING:`` blocks are left out (they never run). A feature that needs an upward import belongs
in a higher layer, or its shared part in a lower one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cryofield"

#: The layers, lowest first. A module belongs to the first entry that is its name or a prefix of it.
LAYERS: list[tuple[str, ...]] = [
    ("cryofield.errors", "cryofield.version"),
    ("cryofield.fem",),
    ("cryofield.model",),
    ("cryofield.kernels",),
    ("cryofield.backends",),
    ("cryofield.timestepping",),
    ("cryofield.config",),
    ("cryofield.mesh",),
    ("cryofield.problem",),
    ("cryofield.outcomes",),
    ("cryofield.io",),
    ("cryofield.viz",),
    ("cryofield.run",),
    ("cryofield.sweep",),
    ("cryofield.cli", "cryofield.__main__", "cryofield"),
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(source: str, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``module`` imports (relative imports resolved), outside TYPE_CHECKING.

    ``from package import name`` counts as an import of the submodule ``package.name`` when there is one,
    else of the package itself.
    """
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found & modules


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    sources = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: imports_of(path.read_text(), name, path.name == "__init__.py", set(sources)) - {name}
            for name, path in sources.items()}


def layer_of(module: str, layers: list[tuple[str, ...]] = LAYERS) -> int:
    best, rank = -1, None
    for i, names in enumerate(layers):
        for prefix in names:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    if rank is None:
        raise LookupError(f"{module} is in no declared layer: add it to LAYERS")
    return rank


def upward_imports(graph: dict[str, set[str]], layers: list[tuple[str, ...]] = LAYERS) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if layer_of(b, layers) > layer_of(a, layers))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)


def test_no_import_points_up_the_layers():
    assert upward_imports(import_graph()) == []


def test_no_circle_of_imports():
    assert circles(import_graph()) == []


def test_the_guard_fails_on_a_circle_and_on_an_upward_import(tmp_path):
    """The checks above can fail: a scratch package with a circle and an upward import is caught."""
    pkg = tmp_path / "cryofield"
    (pkg / "low").mkdir(parents=True)
    (pkg / "high").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "high" / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("def f():\n    from cryofield.high import b\n")  # lazy, still counted
    (pkg / "high" / "b.py").write_text("from ..low import a\n")
    (pkg / "high" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                       "    from cryofield.low import a\nelse:\n    import cryofield.high.b\n")
    graph = import_graph(pkg)
    assert graph["cryofield.high.c"] == {"cryofield.high.b"}  # the TYPE_CHECKING import is left out
    layers = [("cryofield.low",), ("cryofield.high",), ("cryofield",)]
    assert upward_imports(graph, layers) == ["cryofield.low.a -> cryofield.high.b"]
    assert circles(graph) == [["cryofield.high.b", "cryofield.low.a"]]
    with pytest.raises(LookupError, match="no declared layer"):
        layer_of("elsewhere.module", layers)
