"""The Ledger status page's "last verify": kept in the ledger, never in an api-server's memory.

Rules this module enforces:
- the pages read with a SELECT-only role (README, GRANT) and never write through it. The verify
  button's outcome is recorded only through a second, optional connection, ``drillbook_ledger_writer``
  (the workers' INSERT role is enough: the seal trigger sets seq, prev_hash, hash and the time, so this
  writer cannot backdate or place a row), as one hash-chained ledger row per press:
  record_type ``watchdog``, kind ``ledger``, drill ``verify``, target ``ledger``; verdict PASS when the
  chain verified, FAIL with LEDGER_TAMPERED when it did not, ERROR with LEDGER_UNVERIFIABLE when verify
  could not run; ``details.verify`` holds the message, the head checked and the Airflow user who
  pressed. A row, not a checkpoint: a checkpoint signs a head, and a broken head must never be signed;
- "last verify" is read from the ledger with the read-only role: the newest such row, and the newest
  digest row (every digest records its own verify in ``details.scorecard.ledger``). Both survive a
  restart and every api-server worker shows the same; a removed verify row breaks the chain like any;
- without a writer connection the button still runs verify and shows the outcome in its own answer,
  saying plainly that it was not recorded; a writer that fails is said the same way, with the reason.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from drillbook.ledger.schema import TABLE
from drillbook.safety.redact import redact

WRITER_CONNECTION = "drillbook_ledger_writer"
KIND, DRILL, TARGET = "ledger", "verify", "ledger"
PAGES_DAG_ID = "drillbook_evidence_pages"  # the row's "dag": the evidence pages, not a DAG run
_STATE = {0: "OK", 1: "TAMPERING FOUND"}


def state_of(outcome: dict[str, Any]) -> str:
    """OK, TAMPERING FOUND or COULD NOT VERIFY, from a verify outcome's exit code."""
    return _STATE.get(int(outcome.get("exit_code", 2)), "COULD NOT VERIFY")


def verify_result(outcome: dict[str, Any], *, user: str) -> Any:
    """The ledger row of one verify from the pages: PASS, FAIL (LEDGER_TAMPERED) or ERROR (LEDGER_UNVERIFIABLE)."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(kind=KIND, drill=DRILL, target=TARGET)
    code = int(outcome.get("exit_code", 2))
    message = str(outcome.get("message", ""))
    if code == 0:
        builder.checked(max(1, int(outcome.get("checked") or 0)))
    elif code == 1:
        builder.checked(int(outcome.get("checked") or 0))
        builder.find("LEDGER_TAMPERED", message, subject="ledger")
    else:
        builder.find("LEDGER_UNVERIFIABLE", message, subject="ledger")
    builder.details["verify"] = {
        "state": state_of(outcome),
        "exit_code": code,
        "message": message,
        "checked": outcome.get("checked"),
        "head_seq": outcome.get("head_seq"),
        "head_hash": outcome.get("head_hash"),
        "by": user,
        "from": "evidence pages (Verify the chain now)",
    }
    return builder.finish(nothing_checked=False)


def record_verify(writer_dsn: str, outcome: dict[str, Any], *, user: str) -> int:
    """Append the outcome as a ledger row through the writer connection; its seq."""
    from drillbook.ledger.store import Ledger
    from drillbook.resources.pg import parse
    from drillbook.run.context import RunContext

    parse(writer_dsn)  # registers the password with redact before any message can carry it
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    ctx = RunContext(
        dag_id=PAGES_DAG_ID,
        run_id=f"verify__{stamp}__{uuid.uuid4().hex[:8]}",
        task_id="verify_button",
        trigger="manual",
    )
    with Ledger(writer_dsn, spool=None) as ledger:  # no spool: a row that is not stored is said so at once
        return int(ledger.record_event("watchdog", verify_result(outcome, user=user), ctx).seq)


def last_verifies(conn: Any) -> dict[str, dict[str, Any] | None]:
    """The newest verify from the pages and the newest digest's verify, as the read-only role sees them."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT seq, recorded_at, verdict, result -> 'details' -> 'verify' AS v FROM {TABLE} "
            "WHERE kind = %s AND drill = %s AND record_type = 'watchdog' ORDER BY seq DESC LIMIT 1",
            (KIND, DRILL),
        )
        page = cur.fetchone()
        cur.execute(
            f"SELECT seq, recorded_at, drill, result -> 'details' -> 'scorecard' ->> 'ledger' AS summary "
            f"FROM {TABLE} WHERE kind = 'digest' AND record_type = 'digest' ORDER BY seq DESC LIMIT 1"
        )
        digest = cur.fetchone()
    out: dict[str, dict[str, Any] | None] = {"page": None, "digest": None}
    if page is not None:
        v = page["v"] or {}
        out["page"] = {
            "seq": page["seq"],
            "at": page["recorded_at"],
            "state": str(v.get("state") or ("OK" if page["verdict"] == "PASS" else "COULD NOT VERIFY")),
            "ok": page["verdict"] == "PASS",
            "message": str(v.get("message") or ""),
            "by": str(v.get("by") or "?"),
        }
    if digest is not None:
        summary = str(digest["summary"] or "")
        ok = summary.startswith("ledger verified")
        out["digest"] = {
            "seq": digest["seq"],
            "at": digest["recorded_at"],
            "state": "OK" if ok else "TAMPERING FOUND" if "DOES NOT VERIFY" in summary else "NOT VERIFIED",
            "ok": ok,
            "message": f"{digest['drill']} digest: {summary}",
        }
    return out


def recorded_note(writer_configured: bool, error: BaseException | None) -> str:
    """What the page says about where the outcome it shows was stored."""
    if error is not None:
        return (
            f"NOT RECORDED: writing the outcome through connection {WRITER_CONNECTION!r} failed: "
            f"{redact(str(error)).strip()}"
        )
    if not writer_configured:
        return (
            f"NOT RECORDED: no {WRITER_CONNECTION!r} connection is configured, so this outcome is shown "
            "once and kept nowhere (the pages' own role is read-only); see README, For auditors"
        )
    return ""
