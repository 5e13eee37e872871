"""``drillbook validate``: check a catalogue and print every problem, or one line per drill.

Rule this module enforces: a catalogue with problems prints each as ``file:line: key.path:
message`` on stderr and exits 2, never a traceback; a valid one prints one ``ok`` line per drill
(kind, name, schedule, owner, controls, objectives) and exits 0. It imports nothing at module
import beyond the standard library, so the demo can call it without importing the CLI's parser.
"""

from __future__ import annotations

import argparse
import sys


def cmd_validate(args: argparse.Namespace) -> int:
    from drillbook.catalogue import resolve_catalogue_path
    from drillbook.catalogue.common import format_duration
    from drillbook.cli.config import load_catalogue_for, settings_of
    from drillbook.errors import CatalogueError

    path = resolve_catalogue_path(args.path, configured=settings_of(args).catalogue)
    try:
        catalogue = load_catalogue_for(args, path)
    except CatalogueError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {path}", file=sys.stderr)
        return 2
    for d in catalogue.drills:
        objectives = getattr(d, "objectives", None)
        obj = ""
        if objectives is not None:
            obj = " ".join(f"{k}={format_duration(v)}" for k, v in objectives.model_dump().items() if isinstance(v, int | float))
        state = "" if d.enabled else " (disabled)"
        print(f"ok  {d.kind:<15} {d.name:<28} schedule={d.schedule!r:<16} owner={catalogue.owner_of(d)}"
              f" controls={','.join(d.controls) or '-'}{(' ' + obj) if obj else ''}{state}")
    print(f"{path}: {len(catalogue.drills)} drill(s), no problems")
    return 0
