"""Every exception class drillbook defines is in the one tree: it derives from ``DrillbookError``
and ``errors.py``'s docstring draws it under its real parent.

The walk imports every drillbook module (Airflow's too) and collects each class, defined in that
module, that is an ``Exception``; ``BaseException``-only classes (``Interrupted``) are outside on
purpose and must be named in the docstring's note instead.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import drillbook
from drillbook import errors
from drillbook.errors import DrillbookError

_TREE_LINE = re.compile(r"^    ((?:[│ ]   )*)(?:├── |└── )?(\w+)(?:\s|$)")


def _defined_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(drillbook.__path__, "drillbook."):
        if info.name.endswith("__main__"):
            continue  # running it is the CLI
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{info.name}.{obj.__qualname__}"] = obj
    return found


def drawn_tree(doc: str) -> dict[str, str | None]:
    """name -> parent drawn in the docstring (None for the root)."""
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in doc.splitlines():
        match = _TREE_LINE.match(line)
        if not match or not (line.strip().startswith(("├", "└", "│")) or line.strip() == "DrillbookError"):
            continue
        depth = len(match.group(1)) // 4 + (0 if line.strip() == "DrillbookError" else 1)
        name = match.group(2)
        del stack[depth:]
        parents[name] = stack[-1] if stack else None
        stack.append(name)
    return parents


def test_the_tree_parser_reads_nesting() -> None:
    doc = "    DrillbookError\n    ├── A   x\n    │   └── B   y\n    └── C   z\n"
    assert drawn_tree(doc) == {"DrillbookError": None, "A": "DrillbookError", "B": "A", "C": "DrillbookError"}


def test_every_exception_is_a_drillbook_error_drawn_under_its_parent() -> None:
    tree = drawn_tree(errors.__doc__ or "")
    assert tree.get("DrillbookError", "missing") is None, "errors.py's docstring no longer draws the tree"
    problems = []
    for where, cls in sorted(_defined_exceptions().items()):
        if not issubclass(cls, Exception):
            if cls.__name__ not in (errors.__doc__ or ""):
                problems.append(
                    f"{where}: a BaseException outside the tree, not explained in errors.py's docstring"
                )
            continue
        if not issubclass(cls, DrillbookError):
            problems.append(
                f"{where}: derives from {cls.__mro__[1].__name__}, expected DrillbookError (or a subclass)"
            )
            continue
        if cls is DrillbookError:
            continue
        drawn = tree.get(cls.__name__, "not drawn")
        real = next(b for b in cls.__mro__[1:] if issubclass(b, DrillbookError)).__name__
        if drawn != real:
            problems.append(f"{where}: drawn under {drawn!r} in errors.py's tree, derives from {real!r}")
    assert not problems, "\n".join(problems)


def test_the_walk_finds_exceptions_outside_errors_py() -> None:
    found = {cls.__name__ for cls in _defined_exceptions().values()}
    assert {"ArchiveProblem", "SuiteInvalid", "DrillNotGreen", "Interrupted", "FileProblem"} <= found
