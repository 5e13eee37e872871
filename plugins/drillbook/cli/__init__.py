"""The ``drillbook`` command: validate catalogues, run drills, read and verify evidence.

Rule: a command imports only what it needs. Building the parser imports the
small ``configure_parser`` modules; Airflow and Great Expectations are never
imported by the CLI (a data-quality run imports GX inside the drill).
Exit codes (``drillbook.cli.exits``, printed by ``drillbook --help``): 0 PASS/OK,
1 FAIL (or a broken ledger chain, a missed drill), 2 ERROR or bad input,
3 SKIPPED, 4 internal error; no traceback for bad input, and every message
and traceback is redacted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from drillbook import __version__
from drillbook.cli.validate import cmd_validate as _cmd_validate

GENERIC_RUN = (
    "drillbook.cli.run_generic"  # ``drillbook run <kind> --drill NAME`` for a kind without a CLI of its own
)
#: run commands that are not a drill kind: the negative drill runs a drill of any kind on broken input
META_RUN_COMMANDS = {
    "negative": (
        "drillbook.cli.run_negative",
        "run a drill's negative drill: prove it turns red on broken input",
    ),
}


def run_commands() -> dict[str, tuple[str, str]]:
    """``drillbook run <name>`` -> (module with configure_parser(parser) and main(args) -> int, help): the registry's kinds, then the meta-drills."""
    from drillbook.drills import registry

    commands = {kind.command: (kind.cli or GENERIC_RUN, kind.summary) for kind in registry.kinds().values()}
    return {**commands, **META_RUN_COMMANDS}


def _cmd_findings(args: argparse.Namespace) -> int:
    from drillbook.findings import REGISTRY, markdown_table

    if args.markdown:
        sys.stdout.write(markdown_table())
        return 0
    for spec in REGISTRY.values():
        flag = " (ERROR)" if spec.blocks_verification else ""
        print(f"{spec.code:<24} {spec.severity.value:<8} {spec.title}{flag}")
    return 0


#: the commands configured by a module of their own: name -> (module, its configure function, help)
MODULE_COMMANDS = {
    "ledger": (
        "drillbook.cli.ledger_cmds",
        "configure_ledger_parser",
        "create or migrate the evidence ledger",
    ),
    "evidence": (
        "drillbook.cli.ledger_cmds",
        "configure_evidence_parser",
        "verify, list and export evidence",
    ),
    "reference": (
        "drillbook.cli.reference",
        "configure_parser",
        "write a structure reference from a live database or a backup",
    ),
    "doctor": (
        "drillbook.cli.doctor",
        "configure_parser",
        "pre-flight: tools, versions, roles, connectivity and paths",
    ),
    "watchdog": (
        "drillbook.cli.watchdog",
        "configure_watchdog_parser",
        "report drills that missed their schedule or are stale",
    ),
    "digest": (
        "drillbook.cli.watchdog",
        "configure_digest_parser",
        "post the scorecard of a period (per control, per drill)",
    ),
    "outbox": (
        "drillbook.cli.outbox",
        "configure_parser",
        "show the local outbox; `outbox flush` re-sends reports that never reached Slack",
    ),
    "scratch": ("drillbook.cli.scratch", "configure_parser", "reap leftover scratch databases"),
}
#: the top-level commands, in ``drillbook --help`` order; ``build_parser(command)`` adds only the one asked for
COMMANDS = ("validate", "findings", "run", *MODULE_COMMANDS)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``drillbook`` parser: every command, or only ``command`` (one of ``COMMANDS``).

    ``main`` builds only the command on its command line when there is one, so a run imports that command's
    parser module and not the other ten (``drillbook validate`` imported every ``run`` module and the ledger,
    watchdog, outbox, reference and scratch CLIs only to describe them: ~20 ms of its CPU); ``--help``, a
    bare ``drillbook`` and an unknown command get the whole parser, so their usage lists every command.
    """
    from drillbook.cli.exits import HELP

    def wanted(name: str) -> bool:
        return command is None or command == name

    parser = argparse.ArgumentParser(
        prog="drillbook",
        description="Disaster-recovery drills with a tamper-evident evidence ledger.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"drillbook {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    if wanted("validate"):
        p = sub.add_parser(
            "validate", help="check a catalogue; print every problem as file:line: key: message"
        )
        p.add_argument(
            "path", nargs="?", help="catalogue file (default: $DRILLBOOK_CATALOGUE or include/drills.yaml)"
        )
        p.add_argument(
            "--suites",
            action="store_true",
            help="also build every expectation of every suite with Great Expectations (imports GX: seconds)",
        )
        p.set_defaults(func=_cmd_validate)

    if wanted("findings"):
        p = sub.add_parser("findings", help="list the finding codes")
        p.add_argument("--markdown", action="store_true", help="print docs/findings.md")
        p.set_defaults(func=_cmd_findings)

    if wanted("run"):
        run = sub.add_parser("run", help="run one drill now, from the catalogue or ad hoc")
        run_sub = run.add_subparsers(dest="drill_kind", metavar="KIND", required=True)
        for name, (module, help_text) in run_commands().items():
            # the run modules import only argparse at top level; drills load inside main()
            mod = importlib.import_module(module)
            rp = run_sub.add_parser(name, help=help_text)
            mod.configure_parser(rp)
            rp.set_defaults(func=mod.main, drill_kind=name.replace("-", "_"))

    for name, (module, configure, help_text) in MODULE_COMMANDS.items():
        if wanted(name):
            getattr(importlib.import_module(module), configure)(sub.add_parser(name, help=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import os

    from drillbook.cli import exits
    from drillbook.safety.redact import install_log_redaction
    from drillbook.settings import load_settings

    install_log_redaction()  # this process's log lines pass through redact (the CLI is an entry point)
    words = list(sys.argv[1:] if argv is None else argv)
    exits.register_secrets(words, os.environ)
    parser = build_parser(words[0] if words and words[0] in COMMANDS else None)
    args = parser.parse_args(words)
    debug = False
    try:
        args.settings = load_settings()  # once, here; commands read args.settings
        debug = args.settings.debug
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `drillbook ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except (Exception, KeyboardInterrupt) as exc:
        return exits.handle(exc, debug=debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
