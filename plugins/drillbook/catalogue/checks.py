"""Checks that need more than one field or files beside the catalogue.

Each drill kind names its checks in its ``DrillKind`` (``drills/<kind>/kind.py``);
a check takes one validated drill and the catalogue and yields
``(location inside the drill, message)``; this module prefixes the drill's
position and the loader turns the location into a line number.
"""

from __future__ import annotations

from drillbook.catalogue.models import Catalogue
from drillbook.drills import registry

Problem = tuple[tuple[str | int, ...], str]


def run_checks(catalogue: Catalogue) -> list[Problem]:
    problems: list[Problem] = []
    kinds = registry.kinds()
    for index, drill in enumerate(catalogue.drills):
        kind = kinds.get(drill.kind)
        if kind is None:  # validated against a union that had it: unregistered since
            continue
        for loc, message in kind.problems(drill, catalogue):
            problems.append((("drills", index, *loc), message))
    return problems
