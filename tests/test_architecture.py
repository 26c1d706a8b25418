"""The package's layers import one way: no import cycle, and no import hidden in a function.

Read from the source with :mod:`ast`, so a cycle held open by a local import
shows up here rather than as an ``ImportError`` in some process's start.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "django_triggers"

#: The functions that must import the package's own modules: Django's app
#: loading (``AppConfig.ready``), and a fixture of the pytest plugin, which
#: pytest loads before Django is set up.
ALLOWED_LOCAL_IMPORTS = {
    ("django_triggers.apps", "ready"),
    ("django_triggers.testing", "trigger_manager"),
}


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def imported(node: ast.AST, known: set[str]) -> set[str]:
    """The package's modules a top-level statement imports."""
    names: set[str] = set()
    if isinstance(node, ast.ImportFrom) and node.module:
        names = {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    elif isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    return names & known


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    graph = {}
    for name, tree in found.items():
        edges: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for statement in ast.walk(node) if not _is_definition(node) else ():
                edges |= imported(statement, known)
        graph[name] = edges - {name}
    return graph


def _is_definition(node: ast.AST) -> bool:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            else:
                visit(target, [*path, target])

    for module in sorted(graph):
        visit(module, [module])

    assert cycles == []


def test_no_function_imports_the_package_but_the_known_ones():
    found = modules()
    local = set()
    for name, tree in found.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                imported(statement, set(found)) for statement in ast.walk(node)
            ):
                local.add((name, node.name))

    assert local <= ALLOWED_LOCAL_IMPORTS
