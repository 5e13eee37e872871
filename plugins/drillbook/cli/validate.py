"""``drillbook validate``: check a catalogue and print every problem, or one line per drill.

Rule this module enforces: a catalogue with problems prints each as ``file:line: key.path:
message`` on stderr and exits 2, never a traceback; a valid one prints one ``ok`` line per drill
(kind, name, schedule, owner, controls, objectives) and exits 0. It imports nothing at module
import beyond the standard library, so the demo can call it without importing the CLI's parser.
Great Expectations is imported only with ``--suites``; without it the output says plainly that
the GX part of the suite checks did not run (a check that did not run is never reported as passed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_validate(args: argparse.Namespace) -> int:
    from drillbook.catalogue import load_catalogue, resolve_catalogue_path
    from drillbook.catalogue.common import format_duration
    from drillbook.cli.config import settings_of
    from drillbook.errors import CatalogueError

    path = resolve_catalogue_path(args.path, configured=settings_of(args).catalogue)
    try:
        suites = True if getattr(args, "suites", False) else settings_of(args).suite_check_for("cli")
        catalogue = load_catalogue(path, gx_suites=suites)
    except CatalogueError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {path}", file=sys.stderr)
        return 2
    for d in catalogue.drills:
        objectives = getattr(d, "objectives", None)
        obj = ""
        if objectives is not None:
            obj = " ".join(
                f"{k}={format_duration(v)}"
                for k, v in objectives.model_dump().items()
                if isinstance(v, int | float)
            )
        state = "" if d.enabled else " (disabled)"
        print(
            f"ok  {d.kind:<15} {d.name:<28} schedule={d.schedule!r:<16} owner={catalogue.owner_of(d)}"
            f" controls={','.join(d.controls) or '-'}{(' ' + obj) if obj else ''}{state}"
        )
    print(f"{path}: {len(catalogue.drills)} drill(s), no problems")
    if _names_suites(catalogue):
        if catalogue.gx_suites_checked:
            print("suites: every expectation was built with Great Expectations")
        else:
            print(
                "suites: structure checked; Great Expectations suite checks were NOT run "
                "(expectation types and arguments unchecked): run `drillbook validate --suites`"
            )
    return 0


def _names_suites(catalogue: Any) -> bool:
    return any(
        getattr(d, "suite", None) or getattr(getattr(d, "verify", None), "suites", None)
        for d in catalogue.drills
    )
