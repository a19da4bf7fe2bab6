"""herd.spec is one package that the builder and herdd both import: its modules import one another in one direction
only (model, reader, the section parsers, load, the package's __init__), so none of them is in an import cycle;
none needs anything of herd outside it or anything outside the standard library; and each can be imported first,
alone. The import graph is read from the sources with ast, every import statement counted wherever it stands: a
cycle kept alive by an import inside a function or under TYPE_CHECKING (as spec.py, nfsspec.py and sitespec.py
had) is still a cycle."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
SRC = PROJECT / "src"
SPEC = "herd.spec"


def module_files(src: Path) -> dict[str, Path]:
    """Every module under src/herd, by its dotted name (a package by its own name, for its __init__.py)."""
    files: dict[str, Path] = {}
    for path in sorted((src / "herd").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imported(name: str, path: Path) -> set[tuple[str, str | None]]:
    """What the module imports, anywhere in it: (module, None) for `import module`, (module, x) for
    `from module import x`, with relative imports made absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[tuple[str, str | None]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module or ""
            if node.level:
                module = f"{base}.{module}" if module else base
            found.update((module, alias.name) for alias in node.names)
    return found


def import_graph(src: Path) -> dict[str, set[str]]:
    """herd's modules, each with the herd modules it imports: `from p import x` imports p.x if that is a module,
    else p. (A submodule's import of its own package, which Python makes first, is not counted: the package
    imports its modules, not the other way round.)"""
    files = module_files(src)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = {f"{module}.{x}" if f"{module}.{x}" in files else module for module, x in imported(name, path)}
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: each set of modules that all reach one another (Tarjan's strongly connected
    components, of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = [stack.pop()]
            while component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def in_spec(name: str) -> bool:
    return name == SPEC or name.startswith(SPEC + ".")


def spec_modules() -> list[str]:
    return [name for name in module_files(SRC) if in_spec(name)]


def test_the_spec_package_is_in_no_import_cycle() -> None:
    graph = import_graph(SRC)
    assert SPEC in graph
    tangled = [cycle for cycle in cycles(graph) if any(map(in_spec, cycle))]
    assert not tangled, f"import cycles through herd.spec: {tangled}"


def test_the_cycle_finder_finds_one_behind_type_checking_or_in_a_function(tmp_path: Path) -> None:
    """The layout this package replaced: spec.py imported nfsspec.py, which imported spec.py back only for the
    type checker and inside a function."""
    herd = tmp_path / "herd"
    herd.mkdir()
    (herd / "__init__.py").write_text("")
    (herd / "spec.py").write_text("from herd.nfsspec import parse_nfs\n")
    (herd / "nfsspec.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                     "    from herd.spec import _Reader\n"
                                     "def parse_nfs() -> None:\n    from herd.spec import Role\n")
    (herd / "other.py").write_text("from . import spec\nfrom .spec import parse\n")
    graph = import_graph(tmp_path)
    assert graph["herd.other"] == {"herd.spec"}
    assert cycles(graph) == [["herd.nfsspec", "herd.spec"]]


def test_the_spec_needs_nothing_but_itself_and_the_standard_library() -> None:
    """Both programs use it: the builder without herdd's packages (dnspython, pyroute2…), herdd without the
    builder's (jinja2, sh)."""
    files = module_files(SRC)
    outside: dict[str, set[str]] = {}
    for name in spec_modules():
        for module, _ in imported(name, files[name]):
            top = module.partition(".")[0]
            if not (in_spec(module) or (top != "herd" and top in sys.stdlib_module_names)):
                outside.setdefault(name, set()).add(module)
    assert not outside, outside


@pytest.mark.parametrize("name", spec_modules())
def test_each_spec_module_imports_first_and_alone(name: str) -> None:
    r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(SRC)})
    assert r.returncode == 0, r.stderr
