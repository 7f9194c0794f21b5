"""The house rules of docs/architecture.md, checked on the source itself.

- No import circle among imgscribe's modules, function-level imports included (imports under
  ``if TYPE_CHECKING:`` are for type checkers and do not count; ``from . import sub`` depends on the
  submodule, not on the package's ``__init__``).
- The environment is read in ``config.py`` only (a child process's or a library's own environment,
  set for it, aside).
- Files stay small: at most one module over 450 lines outside ``testing/``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1] / "src" / "imgscribe"
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}  # fmt: skip
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]) if node.level else node.module
            base = (base or "").rstrip(".")
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            targets = subs if len(subs) == len(node.names) else [base, *subs]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
    return found


def test_no_import_circles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _circles(graph) == []


def test_the_checker_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


ENVIRONMENT = re.compile(r"os\.environ|os\.getenv|getenv\(")
#: Where a child process's or a library's own environment is set (never read for a setting).
SETS_A_CHILDS_ENVIRONMENT = {
    "engines/llamacpp/_convert_driver.py",  # the converter child: offline Hugging Face libraries
    "engines/llamacpp/convert.py",  # the converter child's environment
    "engines/llamacpp/process.py",  # llama-server's environment
    "testing/__init__.py",  # offline Hugging Face libraries while building test checkpoints
    "batch/ray_runner.py",  # Ray's own: no usage statistics
}


def test_the_environment_is_read_only_in_config():
    readers = sorted(
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if ENVIRONMENT.search(path.read_text()) and str(path.relative_to(ROOT)) not in SETS_A_CHILDS_ENVIRONMENT
    )
    assert readers == ["config.py"]


def test_files_stay_small():
    large = sorted(
        (len(path.read_text().splitlines()), str(path.relative_to(ROOT)))
        for path in ROOT.rglob("*.py")
        if "testing" not in path.relative_to(ROOT).parts and len(path.read_text().splitlines()) > MAX_LINES
    )
    assert len(large) <= 1, large
