"""Rung 3, semantics: the business's own SQL checks must hold on the restored data.

Rules this module enforces:
- each ``verify.checks`` entry runs in its own READ ONLY transaction that is
  always rolled back, with a ``statement_timeout`` of
  ``Ladder.check_timeout_s`` seconds (setting ``DRILLBOOK_CHECK_TIMEOUT``), so a check
  can neither change the restored data nor hang the drill;
- the value checked is the first column of the first row; no row at all is
  NULL, and NULL never satisfies an expectation;
- a check whose expectation does not hold is ``SEMANTICS_FAILED`` naming the
  check, the expectation and the value found (cut to ``VALUE_MAX`` characters:
  a check should return a number, not a row);
- a check whose SQL cannot run (syntax, permission, the timeout, any other
  server error) is ``SEMANTICS_ERROR``: it blocks verification (ERROR) and is
  NOT counted as a check, because nothing was shown to hold or not hold;
- one exception: ``undefined_table`` (SQLSTATE ``42P01``) is
  ``SEMANTICS_FAILED`` and counts as run. The check's SQL was accepted up to
  the table name, and the restored data lacks a table the business relies
  on: that *is* a restore that did not hold. A misspelt table name in a
  check looks the same; the finding shows the server's message and the SQL.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from drillbook.catalogue.expectations import parse_expectation

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.catalogue import SqlCheck
    from drillbook.drills.backup_restore.verify.ladder import Ladder
    from drillbook.drills.base import PhaseHandle

CHECK_TIMEOUT_S = (
    300  # the default; a run takes DRILLBOOK_CHECK_TIMEOUT from its settings (Ladder.check_timeout_s)
)
VALUE_MAX = 120


def _show(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, Decimal | int | float):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 1] + "…"


UNDEFINED_TABLE = "42P01"


def run_check(
    conn: Any, check: SqlCheck, *, timeout_s: int = CHECK_TIMEOUT_S
) -> tuple[Any, str | None, str | None]:
    """Run one check read-only; return (value, None, None) or (None, error message, SQLSTATE)."""
    import psycopg

    try:
        with conn.transaction(force_rollback=True):
            conn.execute("set transaction read only")
            conn.execute(f"set local statement_timeout = '{int(timeout_s)}s'")
            row = conn.execute(check.sql).fetchone()  # type: ignore[arg-type]
    except psycopg.Error as exc:
        diag = getattr(exc, "diag", None)
        message = (diag.message_primary if diag is not None and diag.message_primary else str(exc)).strip()
        sqlstate = getattr(exc, "sqlstate", None) or None
        state = f" [{sqlstate}]" if sqlstate else ""
        return None, f"{message}{state}", sqlstate
    return (row[0] if row else None), None, None


def run(ladder: Ladder, ph: PhaseHandle) -> None:
    """Run every configured check and report the ones that do not hold."""
    checks = ladder.verify.checks
    if not checks:
        ph.skip()
        ph.detail = "no SQL checks configured"
        ladder.facts["semantics"] = {"checks": []}
        return
    outcomes: list[dict[str, Any]] = []
    failed = errored = 0
    for check in checks:
        value, error, sqlstate = run_check(ladder.conn, check, timeout_s=ladder.check_timeout_s)
        shown = _show(value)
        if error is not None and sqlstate != UNDEFINED_TABLE:
            # The check could not run: it is not counted, and it blocks verification.
            errored += 1
            outcomes.append(
                {"name": check.name, "expect": check.expect, "value": None, "error": error, "holds": None}
            )
            ladder.builder.find(
                "SEMANTICS_ERROR",
                f"check {check.name!r} could not run on the restored data: {error}",
                subject=check.name,
                detail={
                    "check": check.name,
                    "expect": check.expect,
                    "error": error,
                    "sqlstate": sqlstate,
                    "sql": check.sql,
                },
            )
            continue
        ladder.builder.checked()
        holds = error is None and parse_expectation(check.expect)(value)
        outcomes.append(
            {
                "name": check.name,
                "expect": check.expect,
                "value": None if error else shown,
                "error": error,
                "holds": holds,
            }
        )
        if holds:
            continue
        failed += 1
        if error is not None:
            message = f"check {check.name!r} did not hold: the restored data lacks a table it reads: {error}"
        else:
            message = f"check {check.name!r} expected {check.expect!r} but found {shown}"
        ladder.builder.find(
            "SEMANTICS_FAILED",
            message,
            subject=check.name,
            detail={
                "check": check.name,
                "expect": check.expect,
                "value": None if error else shown,
                "error": error,
                "sql": check.sql,
            },
        )
    ladder.facts["semantics"] = {"checks": outcomes}
    ran = len(checks) - errored
    ph.detail = f"{ran - failed}/{ran} checks hold" + (f"; {errored} could not run" if errored else "")
