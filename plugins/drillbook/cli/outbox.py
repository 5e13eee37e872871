"""``drillbook outbox``: show the reports written to the local outbox when no Slack connection is set.

Rule: the outbox is read-only here except with ``--clear``, which says how many
messages it removed; the text shown is the same as ``make demo`` prints.
"""

from __future__ import annotations

import argparse
import json
import sys


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path", default=None, help="outbox file (default: $DRILLBOOK_OUTBOX or var/outbox.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the raw entries as JSON lines")
    parser.add_argument("--clear", action="store_true", help="empty the outbox after showing it")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from drillbook.notify.outbox import outbox_path, read_outbox, render_outbox_text
    from drillbook.redact import redact

    path = outbox_path(args.path)
    if args.json:
        for entry in read_outbox(path):
            sys.stdout.write(redact(json.dumps(entry, ensure_ascii=False)) + "\n")
    else:
        sys.stdout.write(redact(render_outbox_text(path)))
    if args.clear and path.exists():
        count = len(read_outbox(path))
        path.unlink()
        sys.stderr.write(f"removed {count} message(s) from {path}\n")
    return 0
