"""The package's shape: module and function sizes, and which modules may import which.

Measured with `ast` on the source, so it holds for any module someone adds.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "speechft"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    """`speechft.x.y` -> its file, for every module of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_cli_command(path: Path, function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A Typer command: a function in `speechft/cli/` whose parameters are Annotated Typer options."""
    if PACKAGE / "cli" not in path.parents:
        return False
    annotations = [a.annotation for a in (*function.args.args, *function.args.kwonlyargs) if a.annotation is not None]
    return any("typer." in ast.unparse(annotation) or "options." in ast.unparse(annotation) for annotation in annotations)


def _function_lines(path: Path, function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = function.end_lineno - function.lineno + 1
    if _is_cli_command(path, function) and function.body:
        # A command's option list is its --help, not logic: count from the first statement of the body.
        first = function.body[0]
        lines = function.end_lineno - first.lineno + 1
    return lines


def test_no_module_over_the_line_limit() -> None:
    too_long = {
        str(path.relative_to(PACKAGE.parent)): count
        for path in _modules().values()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {too_long}"


def test_no_function_over_the_line_limit() -> None:
    too_long = {}
    for path in _modules().values():
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                count = _function_lines(path, node)
                if count > MAX_FUNCTION_LINES:
                    too_long[f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"] = count
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _import_time_nodes(node: ast.stmt) -> list[ast.AST]:
    """The statements that run when the module is imported: imports, and those inside try/if blocks."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [node]
    if isinstance(node, (ast.Try, ast.If)):
        return list(ast.walk(node))
    return []


def _imports(module: str, path: Path, *, module_level_only: bool) -> set[str]:
    """The `speechft` modules `module` imports (a `from pkg import name` naming a submodule counts as that submodule)."""
    known = _modules()
    tree = _tree(path)
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    if module_level_only:
        # Imports inside try/except or if blocks run at import time too; those under `if TYPE_CHECKING:` never run.
        nodes = [n for n in nodes if not (isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))]
        nodes = [inner for node in nodes for inner in _import_time_nodes(node)]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            names = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target for alias in node.names]
        else:
            continue
        found.update(name for name in names if name == "speechft" or name.startswith("speechft."))
    return {name for name in found if name in known and name != module}


def test_data_imports_nothing_from_train() -> None:
    offenders = {
        module: sorted(name for name in _imports(module, path, module_level_only=False) if name == "speechft.train" or name.startswith("speechft.train."))
        for module, path in _modules().items()
        if module == "speechft.data" or module.startswith("speechft.data.")
    }
    offenders = {module: names for module, names in offenders.items() if names}
    assert not offenders, f"speechft.data must not import speechft.train: {offenders}"


def test_library_never_imports_the_testing_builders() -> None:
    offenders = {
        module: sorted(name for name in _imports(module, path, module_level_only=False) if name.startswith("speechft.testing"))
        for module, path in _modules().items()
        if not module.startswith("speechft.testing")
    }
    offenders = {module: names for module, names in offenders.items() if names}
    assert not offenders, f"speechft.testing is for tests, examples and benchmarks only: {offenders}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path `a -> b -> ... -> a`, or None (depth-first search, colouring nodes)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return [*path[path.index(child) :], child]
            if child not in state and (cycle := visit(child)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _parents(module: str) -> set[str]:
    """Importing `a.b.c` first imports `a` and `a.b`; those edges are implied, not cycles of their own."""
    parts = module.split(".")
    return {".".join(parts[:index]) for index in range(1, len(parts))}


def test_no_import_cycles() -> None:
    graph = {}
    for module, path in _modules().items():
        # A package's __init__ importing its own submodules is how packages expose them, not a cycle.
        graph[module] = {name for name in _imports(module, path, module_level_only=True) if module not in _parents(name)}
    cycle = _find_cycle(graph)
    assert cycle is None, f"import cycle between modules: {' -> '.join(cycle or [])}"


def test_cycle_finder_reports_the_path() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
