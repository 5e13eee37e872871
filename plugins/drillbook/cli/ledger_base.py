"""What every ledger command shares: the DSN rule, the exit codes, and errors as one clear line.

Rules this module enforces:
- the ledger DSN comes from ``--ledger-dsn`` or ``DRILLBOOK_LEDGER_DSN``; when neither is set
  the command says so naming both and exits 2;
- a ``DrillbookError`` becomes one redacted line on stderr and exit 2; an unreachable ledger
  exits 2 as "could not verify", never 1, which is reserved for a broken chain.
Both ``ledger_cmds`` and ``ledger_trust`` import it; it imports neither.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

DSN_ENV = "DRILLBOOK_LEDGER_DSN"
# the global scheme (cli/exits.py): could not verify is ERROR (2), never 1; tampering is FAIL (1)
EXIT_OK, EXIT_TAMPER, EXIT_USAGE, EXIT_COULD_NOT_VERIFY = 0, 1, 2, 2


def _err(message: str) -> None:
    from drillbook.safety.redact import redact

    print(f"drillbook: error: {redact(message)}", file=sys.stderr)


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn drillbook errors into one clear line and exit 2 (1 stays reserved for a broken chain)."""

    def run(args: argparse.Namespace) -> int:
        from drillbook.errors import DrillbookError, LedgerUnavailable

        try:
            return handler(args)
        except LedgerUnavailable as exc:
            _err(f"{exc}; nothing was verified or changed")
            return EXIT_COULD_NOT_VERIFY
        except DrillbookError as exc:
            _err(str(exc))
            return EXIT_USAGE

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def _ledger(args: argparse.Namespace, *, spool: Any = None) -> Any:
    from drillbook.cli.config import settings_of
    from drillbook.errors import ConfigurationError
    from drillbook.ledger.store import Ledger

    dsn = getattr(args, "ledger_dsn", None) or settings_of(args).ledger_dsn
    if not dsn:
        raise ConfigurationError(f"no evidence ledger given: pass --ledger-dsn or set {DSN_ENV}")
    return Ledger(dsn, spool=spool)
