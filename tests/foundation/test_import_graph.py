"""drillbook's modules import each other without cycles, and the CLI's import path stays light.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import`` of a
drillbook module, at module top and inside functions, relative names resolved, plus
``importlib.import_module("drillbook....")`` with a literal name. ``from pkg import name`` is an
edge to ``pkg.name`` when that is a module, else to ``pkg``; the parent packages Python runs on
the way are not counted (they would make every package a cycle with its own ``__init__``).
Imports under ``if TYPE_CHECKING:`` are left out: they never run, and they are how a lower
layer names a higher one's type.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
HEAVY = ("airflow", "great_expectations", "boto3", "pandas")


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    found: dict[str, tuple[Path, bool]] = {}
    for path in (root / "drillbook").rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def _imported(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            full = ".".join(base) + (f".{node.module}" if node.module else "")
        else:
            full = node.module or ""
        return [full, *(f"{full}.{alias.name}" for alias in node.names)]
    if (
        isinstance(node, ast.Call)
        and ast.unparse(node.func) in ("importlib.import_module", "import_module")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [node.args[0].value]
    return []


def import_graph(root: Path = PLUGINS) -> dict[str, dict[str, int]]:
    """module -> {imported drillbook module: line of the first such import}."""
    modules = _modules(root)
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = name if is_package else name.rpartition(".")[0]
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            names = _imported(node, package)
            if isinstance(node, ast.ImportFrom) and names:
                full, members = names[0], names[1:]
                names = [m if m in modules else full for m in members]
            for target in names:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].setdefault(target, getattr(node, "lineno", 0))
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _describe(component: list[str], graph: dict[str, dict[str, int]]) -> str:
    inside = set(component)
    edges = [
        f"    {a} -> {b} (line {graph[a][b]})" for a in component for b in sorted(graph[a]) if b in inside
    ]
    return f"cycle of {len(component)}: " + ", ".join(component) + "\n" + "\n".join(edges)


def test_no_import_cycles_among_drillbook_modules() -> None:
    graph = import_graph()
    assert len(graph) > 100, "the walk found too few modules: is PLUGINS right?"
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(c, graph) for c in found)


def test_the_graph_sees_in_function_relative_and_dynamic_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "drillbook"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from drillbook.sub.a import f\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "sub" / "b.py").write_text(
        "import importlib\ndef g():\n    importlib.import_module('drillbook.c')\n"
    )
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from drillbook.sub import b\n"
        "def h():\n    from drillbook.sub.a import f\n"
    )
    graph = import_graph(tmp_path)
    assert graph["drillbook.sub.a"] == {"drillbook.sub.b": 2}
    assert graph["drillbook.sub.b"] == {"drillbook.c": 3}
    assert graph["drillbook.c"] == {"drillbook.sub.a": 5}  # the TYPE_CHECKING import is not an edge
    assert cycles(graph) == [["drillbook.c", "drillbook.sub.a", "drillbook.sub.b"]]


def _modules_after(code: str, wanted: str) -> list[str]:
    """The sorted names in ``sys.modules`` for which ``wanted`` (an expression in ``m``) is true, after ``code`` ran
    in a fresh interpreter with only ``plugins/`` on its path, from the repository's root."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in sys.modules if {wanted})))\n"
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PLUGINS.parent,
        env={"PYTHONPATH": str(PLUGINS), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return loaded


def test_the_cli_imports_no_heavy_library() -> None:
    """Importing the CLI and building its parser loads none of Airflow, GX, boto3, pandas."""
    loaded = _modules_after(
        "import drillbook.cli\ndrillbook.cli.build_parser()", f"m.split('.')[0] in {HEAVY!r}"
    )
    assert loaded == [], f"the CLI's import path loads {loaded}"


def test_the_heavy_import_check_sees_a_heavy_import() -> None:
    code = f"import json, sys\nimport boto3\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "boto3" in json.loads(proc.stdout.strip().splitlines()[-1])


def _help_of(parser: Any) -> dict[str, str]:
    """Every command's (and ``run``'s every kind's) full help text, by command."""
    import argparse

    found: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub.format_help()
                for inner in sub._actions:
                    if isinstance(inner, argparse._SubParsersAction):
                        for kind, kind_parser in inner.choices.items():
                            found[f"{name} {kind}"] = kind_parser.format_help()
    return found


def test_a_one_command_parser_is_that_command_of_the_whole_parser() -> None:
    """``main`` builds only the command on its command line: each one-command parser describes that command (and,
    for ``run``, every kind) exactly as the whole parser does, and holds no other command."""
    from drillbook.cli import COMMANDS, build_parser

    whole = _help_of(build_parser())
    assert {name for name in whole if " " not in name} == set(COMMANDS)
    for command in COMMANDS:
        one = _help_of(build_parser(command))
        assert one == {k: v for k, v in whole.items() if k.split(" ")[0] == command}, command


def test_validate_imports_no_other_command() -> None:
    """``drillbook validate`` loads no other command's CLI module (the run modules, the ledger's, the watchdog's)."""
    from drillbook.cli import MODULE_COMMANDS, run_commands

    others = {module for module, _, _ in MODULE_COMMANDS.values()} | {m for m, _ in run_commands().values()}
    loaded = _modules_after(
        "from drillbook.cli import main\nmain(['validate', 'include/drills.yaml'])",
        "m.startswith('drillbook.cli.')",
    )
    assert not others & set(loaded), f"drillbook validate imported {sorted(others & set(loaded))}"
