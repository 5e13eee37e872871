"""The ledger status page and its verify button: ``GET /ledger``, ``POST /ledger/verify``.

Rules this module enforces:
- the one state-changing action (run verify) is a POST carrying a token derived from the
  caller's own session token (HMAC), and a cross-origin ``Origin`` is refused: another
  site can make the browser send the cookie, but cannot read it to forge the token;
- nothing is kept in the process: the verify outcome is recorded in the ledger through the
  optional writer connection and "last verify" is read back from the ledger
  (``drillbook.web.verify_record``), so a restart or another worker shows the same.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from drillbook.errors import DrillbookError
from drillbook.evidence import render_pages as pages
from drillbook.safety.redact import redact
from drillbook.web import queries, verify_record
from drillbook.web.pack_gate import PackBusy, PackGate, user_key

if TYPE_CHECKING:
    from drillbook.web.app import LedgerPool

COOKIE = "_token"  # Airflow's JWT cookie (airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN)


def csrf_token(session_token: str) -> str:
    """The verify form's token: an HMAC keyed by the caller's session token (unreadable to other sites)."""
    return hmac.new(session_token.encode(), b"drillbook-evidence-verify", hashlib.sha256).hexdigest()


def _session_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")


def add_ledger_routes(
    app: Any,
    pool: LedgerPool,
    *,
    user_dependency: Callable[..., Any],
    verify: Callable[[], dict[str, Any]] | None,
    writer_dsn: Callable[[], str | None] | None,
    base_of: Callable[[Request], str],
    gate: PackGate,
) -> None:
    """Ledger status and the verify button; "last verify" is read from the ledger (``verify_record``).

    ``gate`` lets one verify run at a time in this process (a second press gets 429 with Retry-After)."""
    import psycopg

    def ledger_answer(
        request: Request, just_ran: dict[str, Any] | None = None, status_code: int = 200
    ) -> HTMLResponse:
        with pool.connection() as conn:
            status = queries.ledger_status(conn)
            verifies = verify_record.last_verifies(conn)
        return HTMLResponse(
            pages.ledger_page(
                status,
                verifies={**verifies, "just_ran": just_ran},
                csrf=csrf_token(_session_token(request)),
                base=base_of(request),
            ),
            status_code=status_code,
        )

    @app.get("/ledger", response_class=HTMLResponse)
    def ledger(request: Request) -> HTMLResponse:
        return ledger_answer(request)

    current_user = Depends(user_dependency)  # the app's own dependency: FastAPI calls it once per request

    @app.post("/ledger/verify", response_model=None)
    def run_verify(
        request: Request, csrf: str = Form(""), user: Any = current_user
    ) -> RedirectResponse | HTMLResponse:
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            return HTMLResponse(
                pages.error_page(
                    "Refused", f"cross-origin request from {origin!r} refused", base=base_of(request)
                ),
                status_code=403,
            )
        if not hmac.compare_digest(csrf, csrf_token(_session_token(request))):
            return HTMLResponse(
                pages.error_page(
                    "Refused",
                    "the form token does not match this session; reload the "
                    "ledger page and press the button again",
                    base=base_of(request),
                ),
                status_code=403,
            )
        try:
            slot = gate.acquire(user_key(user))
        except PackBusy as busy:
            return HTMLResponse(
                pages.error_page("Busy", busy.reason, base=base_of(request)),
                status_code=429,
                headers={"Retry-After": str(busy.retry_after), "Cache-Control": "no-store"},
            )
        try:
            if verify is None:
                outcome: dict[str, Any] = {
                    "ok": False,
                    "exit_code": 2,
                    "message": "verify is not available in this server",
                }
            else:
                outcome = verify()
        finally:
            slot.release()
        dsn = writer_dsn() if writer_dsn is not None else None
        failed: BaseException | None = None
        if dsn:
            try:
                verify_record.record_verify(dsn, outcome, user=user_name(user))
            except (DrillbookError, psycopg.Error) as exc:
                failed = exc
            else:  # recorded: the page reads it back from the ledger, as every worker will
                return RedirectResponse(base_of(request) + "/ledger", status_code=303)
        just_ran = {
            **outcome,
            "state": verify_record.state_of(outcome),
            "at": datetime.now(UTC),
            "by": user_name(user),
            "note": verify_record.recorded_note(bool(dsn), failed),
        }
        return ledger_answer(request, just_ran, status_code=503 if failed is not None else 200)


def user_name(user: Any) -> str:
    """The Airflow user's name for the record (``BaseUser.get_name``), else its text."""
    get_name = getattr(user, "get_name", None)
    return str(get_name() if callable(get_name) else user)


def verify_with(dsn_provider: Callable[[], str], *, checkpoints: Any = None) -> Callable[[], dict[str, Any]]:
    """A verify action over the ledger (read-only use of ``Ledger.verify``), reporting errors as 'could not verify'.

    ``checkpoints``: the entry point's ``CheckpointSettings.from_settings(settings)`` (trusted key, outside copy).
    """

    def run() -> dict[str, Any]:
        from drillbook.errors import DrillbookError
        from drillbook.ledger.store import Ledger

        try:
            with Ledger(dsn_provider(), spool=None) as ledger:
                # One stream (workers=1): a button press must not take a connection and a core per range
                # from the api-server; the one-at-a-time limit of the Verify button bounds it to one walk.
                report = ledger.verify(checkpoints=checkpoints, workers=1)
        except DrillbookError as exc:
            return {"ok": False, "exit_code": 2, "message": redact(str(exc))}
        text = (
            report.message
            or f"chain intact, {report.checked} records, head {report.head_seq}:{report.head_hash}"
        )
        notes = "; ".join(report.notes)
        return {
            "ok": report.ok,
            "exit_code": report.exit_code,
            "message": text + (f" ({notes})" if notes else ""),
            "checked": report.checked,
            "head_seq": report.head_seq,
            "head_hash": report.head_hash,
        }

    return run
