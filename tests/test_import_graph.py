"""adaptsam's modules form layers: no import cycle except through type-only imports (issue 15).

The graph is read from the source with ``ast`` (nothing is imported), and it counts every import that can
run, wherever it stands: at module level, inside a function (a lazy import is still a dependency, it only
fails later), in a ``try``. Only the bodies of ``if TYPE_CHECKING:`` are exempt, since they never run.

An edge is what an import makes Python execute:

- ``import a.b`` and ``from a import b`` (``b`` a submodule) depend on ``a.b``; relative imports are resolved
  against the importing module's package.
- ``from a import name`` (``name`` not a submodule) depends on the package ``a``, and on the module that ``a``'s
  lazy-export table maps ``name`` to (a package ``__init__`` with a module-level ``__getattr__`` and a dict
  literal of ``name: "module"`` or ``name: ("module", "attr")``); ``import a`` then ``a.name`` likewise.
- ``importlib.import_module("a.b")`` depends on ``a.b``; ``import_module(f"a.{x}")`` on every module under
  ``a``; an import_module of a computed name, on every string literal in that module naming a module.

Not counted: the implicit import of a submodule's parent packages (Python runs a package's ``__init__``
before its submodules; a package importing its own submodules is not a layering choice), and plugin entry
points (the registry finds parts by metadata, the point of the plugin design).
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import adaptsam

Edges = dict[str, dict[str, int]]  # module → {imported module: first line that imports it}


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package in ``root`` by dotted name (a package by its own name, not ``.__init__``)."""
    files = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join((package, *parts))] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run: all of them but the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _lazy_exports(tree: ast.Module, modules: set[str]) -> dict[str, str]:
    """``name → module`` from a package's lazy-export table (see the module docstring); {} without one."""
    if not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
        return {}
    table = {}
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if not isinstance(value, ast.Dict):
            continue
        for key, target in zip(value.keys, value.values):
            if isinstance(target, ast.Tuple) and target.elts:
                target = target.elts[0]
            if (isinstance(key, ast.Constant) and isinstance(key.value, str) and isinstance(target, ast.Constant)
                    and target.value in modules):
                table[key.value] = target.value
    return table


def _is_import_module(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__") and bool(call.args)


class _ModuleImports:
    """The modules one module imports (see the module docstring for what counts)."""

    def __init__(self, module: str, package: str, modules: set[str], lazy: dict[str, dict[str, str]]):
        self.module, self.package, self.modules, self.lazy = module, package, modules, lazy
        self.edges: dict[str, int] = {}
        self.bound: dict[str, str] = {}  # names bound by ``import a`` / ``import a.b as x`` → module

    def add(self, target: str, line: int) -> None:
        if target in self.modules and target != self.module:
            self.edges[target] = min(self.edges.get(target, line), line)

    def add_name(self, base: str, name: str, line: int) -> None:
        if f"{base}.{name}" in self.modules:
            self.add(f"{base}.{name}", line)
        else:
            self.add(base, line)
            if name in self.lazy.get(base, {}):
                self.add(self.lazy[base][name], line)

    def absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = self.package.split(".")
        return ".".join([*parts[:len(parts) - node.level + 1], *([node.module] if node.module else [])])

    def read(self, tree: ast.Module) -> dict[str, int]:
        nodes = list(runtime_nodes(tree))
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.add(alias.name, node.lineno)
                    top = alias.name.partition(".")[0]
                    self.bound[alias.asname or top] = alias.name if alias.asname else top
            elif isinstance(node, ast.ImportFrom):
                base = self.absolute(node)
                for alias in node.names:
                    if alias.name == "*":
                        self.add(base, node.lineno)
                    else:
                        self.add_name(base, alias.name, node.lineno)
        dynamic = False
        for node in nodes:
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in self.bound:
                self.add_name(self.bound[node.value.id], node.attr, node.lineno)
            elif isinstance(node, ast.Call) and _is_import_module(node):
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    self.add(arg.value, node.lineno)
                elif (isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant)
                      and str(arg.values[0].value).endswith(".")):
                    for target in sorted(m for m in self.modules if m.startswith(arg.values[0].value)):
                        self.add(target, node.lineno)
                elif not self.lazy.get(self.module):  # a lazy-export package's own import_module counts by name
                    dynamic = True
        if dynamic:
            for node in nodes:
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    self.add(node.value, node.lineno)
        return self.edges


def import_graph(files: dict[str, Path]) -> Edges:
    modules = set(files)
    trees = {m: ast.parse(p.read_text(encoding="utf-8"), str(p)) for m, p in files.items()}
    lazy = {m: _lazy_exports(t, modules) for m, t in trees.items() if files[m].name == "__init__.py"}
    graph: Edges = {}
    for module, tree in trees.items():
        package = module if files[module].name == "__init__.py" else module.rpartition(".")[0]
        graph[module] = _ModuleImports(module, package, modules, lazy).read(tree)
    return graph


def cycles(graph: Edges) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def describe(graph: Edges, component: list[str]) -> str:
    inside = set(component)
    lines = [f"  {m}:{line} imports {t}" for m in component for t, line in sorted(graph[m].items()) if t in inside]
    return f"cycle of {len(component)} modules: {', '.join(component)}\n" + "\n".join(lines)


def reaches(graph: Edges, start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), {}):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


PACKAGE = module_files(Path(adaptsam.__file__).parent, "adaptsam")


def test_adaptsam_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    found = cycles(graph)
    assert not found, ("adaptsam's imports form cycles (type-only imports under `if TYPE_CHECKING:` are the only "
                       "exemption; a lazy import inside a function counts). Give each module one job and move what "
                       "both sides need to the lower module or a small new one:\n"
                       + "\n".join(describe(graph, c) for c in found))


def test_the_named_layers_run_one_way():
    graph = import_graph(PACKAGE)
    one_way = {  # lower module: the higher one it must never reach (issue 15)
        "adaptsam.adapters.io": "adaptsam.api",  # files: read, write, check, load into a given model
        "adaptsam.data.split": "adaptsam.data.folder",
        "adaptsam.bench.html_report": "adaptsam.bench.report",
        "adaptsam.bench.cell": "adaptsam.bench.executors",  # one cell
        "adaptsam.bench.executors": "adaptsam.bench.runner",  # the grid
        "adaptsam.bench.report": "adaptsam.bench.runner",
        "adaptsam.bench.store": "adaptsam.bench.runner",
    }
    wrong = {low: high for low, high in one_way.items() if high in reaches(graph, low)}
    assert not wrong, f"lower layers import higher ones: {wrong}"
    assert {"adaptsam.bench.executors", "adaptsam.bench.report"} <= set(graph["adaptsam.bench.runner"])
    store = ast.parse(PACKAGE["adaptsam.bench.store"].read_text(encoding="utf-8"))
    assigned = {t.id for n in store.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert "STORE_NAME" in assigned, "STORE_NAME belongs to store.py (the store's file name)"


# -- the checker itself: each rule is shown to find (or exempt) what it should --------------------------------
def _package(tmp_path: Path, sources: dict[str, str]) -> dict[str, Path]:
    for name, source in {"__init__": "", **sources}.items():
        path = tmp_path / "pkg" / f"{name.replace('.', '/')}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return module_files(tmp_path / "pkg", "pkg")


def test_a_lazy_import_inside_a_function_closes_a_cycle(tmp_path):
    files = _package(tmp_path, {
        "low": "def f():\n    from pkg.high import g\n    return g\n",
        "high": "from pkg import low\n\ndef g():\n    return low\n",
        "side": "import pkg.low\n",
    })
    graph = import_graph(files)
    assert graph["pkg.high"] == {"pkg.low": 1} and graph["pkg.low"] == {"pkg.high": 2}
    assert cycles(graph) == [["pkg.high", "pkg.low"]]
    assert "pkg.low:2 imports pkg.high" in describe(graph, cycles(graph)[0])


def test_only_type_checking_bodies_are_exempt(tmp_path):
    files = _package(tmp_path, {
        "a": "from typing import TYPE_CHECKING\nimport pkg.b\n",
        "b": """
            import typing
            if typing.TYPE_CHECKING:
                from pkg.a import x
            else:
                from pkg.c import y
            """,
        "c": "try:\n    import pkg.a\nexcept ImportError:\n    pass\n",
    })
    graph = import_graph(files)
    assert set(graph["pkg.b"]) == {"pkg.c"}  # the TYPE_CHECKING body is skipped, its else branch runs
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_relative_imports_and_submodules_are_resolved(tmp_path):
    files = _package(tmp_path, {
        "sub.__init__": "from . import leaf\nfrom .leaf import thing\n",
        "sub.leaf": "from .. import top\nfrom ..top import *\nthing = 1\n",
        "top": "X = 1\n",
    })
    graph = import_graph(files)
    assert set(graph["pkg.sub"]) == {"pkg.sub.leaf"}
    assert set(graph["pkg.sub.leaf"]) == {"pkg.top"}
    assert cycles(graph) == []


def test_lazy_exports_and_import_module_are_followed(tmp_path):
    files = _package(tmp_path, {
        "__init__": """
            import importlib
            _LAZY = {"make": ("pkg.api", "make"), "Thing": "pkg.things"}
            VERSION = "1"
            def __getattr__(name):
                module = _LAZY[name]
                return getattr(importlib.import_module(module if isinstance(module, str) else module[0]), name)
            """,
        "api": "from pkg import VERSION\nimport pkg.cmds\n",
        "things": "import pkg\n\ndef f():\n    return pkg.make()\n",
        "cmds.__init__": "import importlib\n\ndef load(n):\n    return importlib.import_module(f'pkg.cmds.{n}')\n",
        "cmds.run": "import importlib\nNAMES = ('pkg.things',)\nfor n in NAMES:\n    importlib.import_module(n)\n",
        "plain": "import importlib\nimportlib.import_module('pkg.api')\n",
    })
    graph = import_graph(files)
    assert set(graph["pkg"]) == set()  # the table alone is no dependency: only a name asked for is
    assert set(graph["pkg.api"]) == {"pkg", "pkg.cmds"}  # VERSION is defined in pkg itself
    assert set(graph["pkg.things"]) == {"pkg", "pkg.api"}
    assert set(graph["pkg.cmds"]) == {"pkg.cmds.run"}
    assert set(graph["pkg.cmds.run"]) == {"pkg.things"}
    assert set(graph["pkg.plain"]) == {"pkg.api"}
    assert cycles(graph) == [["pkg.api", "pkg.cmds", "pkg.cmds.run", "pkg.things"]]
