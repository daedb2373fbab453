"""No import cycles inside ``vizkit/``: the layering is checked, not a convention.

A cycle hidden behind function-local imports still ties the modules together (neither can be
understood, tested or moved without the other), so every import counts here: module-level,
function-local and ``TYPE_CHECKING`` ones alike. The graph is read with :mod:`ast` (nothing is
imported), so the check is fast and sees code paths no test happens to execute.

How names resolve:

* relative imports against the importing module's package;
* ``from pkg import x`` is an import of the submodule ``pkg.x`` when there is one;
* a package ``__init__`` that re-exports lazily (a module-level ``_EXPORTS``/``_LAZY`` table of
  name -> module read by its ``__getattr__``, plus ``_RENAMED`` aliases) is looked through:
  ``from vizkit import Result`` depends on ``vizkit.probe``, not on ``vizkit/__init__.py``, and
  ``vizkit.run_probe`` after ``import vizkit`` likewise depends on the module that defines it;
* importing ``pkg.mod`` is not counted as importing ``pkg/__init__.py``: Python runs it, but a
  package that imports its own submodules would otherwise form a cycle with each of them, and that
  is not a layering problem;
* a module importing itself is ignored (it changes nothing).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vizkit"
LAZY_TABLES = ("_EXPORTS", "_LAZY")

Edges = dict[str, dict[str, list[str]]]  # importer -> imported -> ["file:line", ...]


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _str_table(tree: ast.Module, name: str) -> dict[str, str]:
    """A module-level ``name = {"str": "str", ...}`` literal, or {}."""
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) else None)
        if isinstance(target, ast.Name) and target.id == name and isinstance(node.value, ast.Dict):
            return {k.value: v.value for k, v in zip(node.value.keys, node.value.values)
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
                    and isinstance(k.value, str) and isinstance(v.value, str)}
    return {}


def lazy_exports(package: str, tree: ast.Module) -> dict[str, str]:
    """Name -> defining module for a package ``__init__`` that re-exports on first attribute access."""
    table: dict[str, str] = {}
    for name in LAZY_TABLES:
        for attr, target in _str_table(tree, name).items():
            table[attr] = target if "." in target else f"{package}.{target}"
    for alias, name in _str_table(tree, "_RENAMED").items():
        if name in table:
            table[alias] = table[name]
    return table


class _Imports(ast.NodeVisitor):
    """Collect every import of one module (at any depth), resolved to dotted module names."""

    def __init__(self, module: str, is_package: bool, modules: Iterable[str],
                 exports: Mapping[str, Mapping[str, str]]) -> None:
        self.module = module
        self.root = module.partition(".")[0]
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules = set(modules)
        self.exports = exports
        self.found: list[tuple[str, int]] = []
        self.bound_root = False  # ``import vizkit`` (or ``import vizkit.x``) binds the name ``vizkit``

    def visit_Module(self, node: ast.Module) -> None:
        # ``vizkit.X`` counts wherever ``vizkit`` is imported, even by an import further down
        self.bound_root = any(isinstance(n, ast.Import) and any(
            a.asname is None and a.name.partition(".")[0] == self.root for a in n.names) for n in ast.walk(node))
        self.generic_visit(node)

    def _add(self, target: str, line: int) -> None:
        self.found.append((target, line))

    def _attribute(self, base: str, name: str, line: int) -> None:
        """``base.name`` as a module: the submodule, else what a lazy table says, else ``base`` itself."""
        if f"{base}.{name}" in self.modules:
            self._add(f"{base}.{name}", line)
        elif name in self.exports.get(base, {}):
            self._add(self.exports[base][name], line)
        elif base in self.modules:
            self._add(base, line)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in self.modules:
                self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
        if base not in self.modules:
            return
        for alias in node.names:
            self._attribute(base, alias.name, node.lineno)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = []
        inner: ast.expr = node
        while isinstance(inner, ast.Attribute):
            chain.append(inner.attr)
            inner = inner.value
        if isinstance(inner, ast.Name) and inner.id == self.root and self.bound_root:
            chain.reverse()
            # the longest dotted prefix that names a module, else the first name through the lazy table
            for n in range(len(chain), 0, -1):
                name = ".".join([self.root, *chain[:n]])
                if name in self.modules:
                    self._add(name, node.lineno)
                    return
            if chain[0] in self.exports.get(self.root, {}):
                self._add(self.exports[self.root][chain[0]], node.lineno)
            return  # the inner Attribute nodes are the same chain
        self.generic_visit(node)


def import_graph(package: Path = PACKAGE) -> Edges:
    """``{importer: {imported: ["path:line", ...]}}`` between the package's own modules."""
    modules = module_names(package)
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in modules.items()}
    exports = {name: lazy_exports(name, tree) for name, tree in trees.items()
               if modules[name].name == "__init__.py"}
    edges: Edges = {name: defaultdict(list) for name in modules}
    for name, tree in trees.items():
        path = modules[name]
        visitor = _Imports(name, path.name == "__init__.py", modules, exports)
        visitor.visit(tree)
        for target, line in dict.fromkeys(visitor.found):  # one entry per import line, in order
            if target != name:
                edges[name][target].append(f"{path.relative_to(package.parent)}:{line}")
    return {name: dict(targets) for name, targets in edges.items()}


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted, only those of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe_cycles(edges: Edges) -> str:
    """Each cycle's modules and the import lines that tie them together, for the failure message."""
    lines = []
    for component in strongly_connected(edges):
        members = set(component)
        lines.append(f"cycle of {len(component)} modules: {', '.join(component)}")
        for src in component:
            for dst, where in sorted(edges.get(src, {}).items()):
                if dst in members:
                    lines.append(f"    {src} -> {dst}  ({', '.join(where)})")
    return "\n".join(lines)


# -- tests ------------------------------------------------------------------------------------------
def test_cycle_finder_on_a_synthetic_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e", "a"}, "f": {"g"}, "g": {"f"}}
    assert strongly_connected(graph) == [["a", "b", "c"], ["f", "g"]]
    assert strongly_connected({"x": {"y"}, "y": set()}) == []


def test_imports_resolve_through_lazy_exports_and_function_bodies(tmp_path):
    pkg = tmp_path / "vizkit"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('_EXPORTS = {"Thing": "vizkit.low"}\n_RENAMED = {"Old": "Thing"}\n')
    (pkg / "low.py").write_text("def f():\n    from vizkit import Old\n")
    (pkg / "high.py").write_text("from . import low\nimport vizkit\n\ndef g():\n    return vizkit.Thing\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "leaf.py").write_text("def h():\n    from ..high import g\n    from . import other\n")
    (pkg / "sub" / "other.py").write_text("")
    edges = import_graph(pkg)
    assert edges["vizkit.low"] == {}  # resolved to itself through the table
    assert edges["vizkit.high"] == {"vizkit.low": ["vizkit/high.py:1", "vizkit/high.py:5"],
                                    "vizkit": ["vizkit/high.py:2"]}
    assert edges["vizkit.sub.leaf"] == {"vizkit.high": ["vizkit/sub/leaf.py:2"],
                                        "vizkit.sub.other": ["vizkit/sub/leaf.py:3"]}
    assert edges["vizkit"] == {}
    assert strongly_connected(edges) == []
    (pkg / "low.py").write_text("def f():\n    from vizkit.sub.leaf import h\n")
    assert "vizkit.high -> vizkit.low  (vizkit/high.py:1, vizkit/high.py:5)" in describe_cycles(import_graph(pkg))


def test_vizkit_has_no_import_cycles():
    cycles = describe_cycles(import_graph())
    assert not cycles, "import cycles in vizkit/ (move the shared piece to a lower module):\n" + cycles
