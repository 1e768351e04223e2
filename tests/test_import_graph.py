"""The package's import graph, read from the source (AST): no circle, layers in order.

Every ``import`` statement counts, those inside functions too: an import moved
into a function still makes a circle, only a hidden one. ``from X import a``
is an edge to ``X.a`` where that is a module, to ``X`` otherwise; the parent
packages a submodule import initialises are not edges (Python binds them
before it runs the submodule).
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'mmrednet'
TOOLS = {p.stem for p in (ROOT / 'tools').rglob('*.py')} | {'tools'}


def _modules(package: Path = PACKAGE) -> Dict[str, Path]:
    """Dotted module name -> file, for every module of ``package``."""
    found = {}
    for path in sorted(package.rglob('*.py')):
        parts = list(path.relative_to(package.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts.pop()
        found['.'.join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: Dict[str, Path]) -> Set[str]:
    """What module ``name`` imports: mmrednet modules, and top-level names of others."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                source = '.'.join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                submodule = f'{source}.{alias.name}'
                edges.add(submodule if submodule in modules else source)
    return edges


def import_graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    groups: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _layer(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + '.')


def test_cycles_are_found():
    """The checker itself: a planted circle is reported, a chain is not."""
    assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert _cycles({'a': {'b'}, 'b': set()}) == []
    assert _cycles({'a': {'a'}}) == [['a']]


def test_no_import_circle_in_the_package():
    assert _cycles(import_graph()) == []


def test_the_ops_import_neither_the_test_utilities_nor_the_benchmarks():
    wrong = {(name, target) for name, targets in import_graph().items()
             if _layer(name, 'mmrednet.ops') for target in targets
             if _layer(target, 'mmrednet.testing') or _layer(target, 'mmrednet.benchmarks')}
    assert wrong == set()


def test_nothing_in_the_package_imports_a_tool():
    wrong = {(name, target) for name, targets in import_graph().items() for target in targets
             if target.split('.')[0] in TOOLS}
    assert wrong == set()
    sources = '\n'.join(path.read_text() for path in _modules().values())
    assert 'sys.path.insert' not in sources and 'sys.path.append' not in sources


def test_the_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert 'mmrednet.ops.portable' in graph['mmrednet.ops.cuda.backend']  # from .. import portable
    assert 'mmrednet.ops.cuda.selfcheck' in graph['mmrednet.ops.cuda.backend']  # from . import
    assert 'mmrednet.ops.cuda' in graph['mmrednet.testing.sweep']


# What loads a script's code into a test instead of running its command line.
SCRIPT_LOADERS = {'spec_from_file_location', 'SourceFileLoader', 'run_path', 'run_module',
                  'exec_module'}


def _reaches_into_scripts(tree: ast.AST) -> List[str]:
    """What in ``tree`` puts a folder on ``sys.path``, loads a file as code or imports a tool."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == 'path' and \
                isinstance(node.value, ast.Name) and node.value.id == 'sys':
            found.append('sys.path')
        elif isinstance(node, (ast.Attribute, ast.Name)) and \
                getattr(node, 'attr', getattr(node, 'id', None)) in SCRIPT_LOADERS:
            found.append(getattr(node, 'attr', getattr(node, 'id', None)))
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split('.')[0] in TOOLS]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found += [alias.name for alias in node.names if alias.name in SCRIPT_LOADERS]
            if node.module.split('.')[0] in TOOLS:
                found.append(node.module)
    return sorted(found)


def test_tests_run_tools_only_through_the_helper():
    """Tests run a script as its command line (tests/tools.py::run_tool) and import what
    they need of its logic from the package: a script's internals are not an API."""
    helper = ROOT / 'tests' / 'tools.py'
    wrong = {str(path.relative_to(ROOT)): found
             for path in sorted((ROOT / 'tests').rglob('*.py')) if path != helper
             for found in [_reaches_into_scripts(ast.parse(path.read_text()))] if found}
    assert wrong == {}
    assert _reaches_into_scripts(ast.parse(helper.read_text())) == ['run_path']


def test_script_loaders_are_recognised():
    sources = ("import sys\nsys.path.insert(0, 'tools')\nimport train",
               "from importlib.util import spec_from_file_location",
               "import runpy\nrunpy.run_path('tools/test.py')", 'from check_cuda import main')
    assert [_reaches_into_scripts(ast.parse(s)) for s in sources] == [
        ['sys.path', 'train'], ['spec_from_file_location'], ['run_path'], ['check_cuda']]
    assert _reaches_into_scripts(ast.parse("'sys.path.insert'  # only words")) == []
