"""The evidence pages as a FastAPI app, mounted in Airflow's api-server by the drillbook plugin.

Rules this module enforces:
- every route depends on ``user_dependency`` (Airflow's own ``get_user`` in the plugin: the
  JWT from the ``_token`` cookie or an ``Authorization: Bearer`` header), so there is no page
  and no JSON answer without an authenticated Airflow user, and no second login;
- the ledger is read through ``dsn_provider`` (the ``drillbook_ledger`` connection) on
  read-only connections (``default_transaction_read_only``, a statement timeout), so a role
  with SELECT only is enough and a slow query cannot hold a worker;
- the one state-changing action (run verify) is a POST carrying a token derived from the
  caller's own session token (HMAC), and a cross-origin ``Origin`` is refused: another
  site can make the browser send the cookie, but cannot read it to forge the token;
- nothing is kept in the process: the verify outcome is recorded in the ledger through the
  optional writer connection and "last verify" is read back from the ledger
  (``drillbook.web.verify_record``), so a restart or another worker shows the same;
- ``GET /pack`` streams the evidence pack of one control and period, built by the same
  ``drillbook.evidence.pack.build_pack`` as ``drillbook evidence pack`` (read-only: a SELECT
  role is enough) into a private temporary directory that is removed once the answer is sent;
  the control id reaches the ``Content-Disposition`` filename only as ``[A-Za-z0-9._-]``;
  a build takes a slot of ``drillbook.web.pack_gate`` (one per user, two in all per process by
  default): over the limit the answer is 429 with ``Retry-After``, at once, with nothing built;
- bad input (a filter that does not parse) answers 400 and an unreachable ledger 503, each
  with a page that says what failed; never a traceback, never the DSN's password.
"""

from __future__ import annotations

import hashlib
import hmac
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.background import BackgroundTask

from drillbook.errors import ConfigurationError, ConnectionNotConfigured, DrillbookError
from drillbook.evidence import render_control_pages as control_pages
from drillbook.evidence import render_pages as pages
from drillbook.ledger.query import Filter
from drillbook.safety.redact import redact
from drillbook.web import queries, verify_record
from drillbook.web.pack_gate import PackBusy, PackGate, Slot, user_key

COOKIE = "_token"  # Airflow's JWT cookie (airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN)
_POOL_SIZE = 4
PACK_MAX_DAYS = 400  # a pack covers at most this many days (a year's audit period and some slack)
PACK_CONTROL_MAX = 200
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


class LedgerPool:
    """A few open read-only connections to the ledger, opened lazily and replaced when broken."""

    def __init__(self, dsn_provider: Callable[[], str], *, statement_timeout_ms: int = 10_000):
        self._dsn_provider = dsn_provider
        self._timeout = statement_timeout_ms
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        from drillbook.resources.pg import parse

        dsn = self._dsn_provider()
        parse(dsn)  # registers the password with redact before any message can carry it
        return psycopg.connect(
            dsn,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=5,
            options=f"-c default_transaction_read_only=on -c statement_timeout={self._timeout}",
        )

    @contextmanager
    def connection(self) -> Iterator[Any]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._connect()
        ok = False
        try:
            yield conn
            ok = True
        finally:
            if ok and not conn.closed and self._idle.qsize() < _POOL_SIZE:
                self._idle.put(conn)
            else:
                conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def csrf_token(session_token: str) -> str:
    """The verify form's token: an HMAC keyed by the caller's session token (unreadable to other sites)."""
    return hmac.new(session_token.encode(), b"drillbook-evidence-verify", hashlib.sha256).hexdigest()


def _window(since: str | None, until: str | None, *, days: int) -> tuple[datetime, datetime, str, str]:
    flt = Filter.build(since=since or None, until=until or None)
    end = flt.until or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
        days=1
    )
    start = flt.since or end - timedelta(days=days)
    if end <= start:
        raise ConfigurationError(f"until {end.date()} is not after since {start.date()}")
    return (
        start,
        end,
        since or start.date().isoformat(),
        until or (end - timedelta(days=1)).date().isoformat(),
    )


def pack_filename(control: str, since: str, until: str) -> str:
    """``drillbook-<control>-<since>-<until>.zip`` with anything but ``[A-Za-z0-9._-]`` turned into ``_``."""
    parts = [_UNSAFE_FILENAME.sub("_", p).strip("._") or "_" for p in (control, since, until)]
    return "drillbook-{}-{}-{}.zip".format(*parts)


def _pack_control(control: str | None) -> str:
    text = (control or "").strip()
    if not text:
        raise ConfigurationError("control is required: the pack is of one control id, e.g. control=SOC2:A1.2")
    from drillbook.catalogue.common import validate_control

    if len(text) > PACK_CONTROL_MAX:
        raise ConfigurationError(
            f"control must be a control id of at most {PACK_CONTROL_MAX} characters; "
            f"got {len(text)} characters"
        )
    try:
        return validate_control(
            text
        )  # the catalogue's own rule: no quote, space or control character gets through
    except ValueError as exc:
        raise ConfigurationError(f"control: {exc}") from None


def pack_note(settings: Any) -> str:
    """What the pages say next to a download link: whether the pack will be signed."""
    if settings.private_key:
        return "Packs downloaded here are signed with the checkpoint key."
    return (
        "Packs downloaded here are UNSIGNED: no checkpoint key is configured (DRILLBOOK_CHECKPOINT_KEY or the "
        "drillbook_checkpoint_key connection), so verify will not accept them as authentic."
    )


def _signing(pack_settings: Callable[[], Any] | None) -> Any:
    if pack_settings is not None:
        return pack_settings()
    from drillbook.ledger.checkpoint import CheckpointSettings

    return CheckpointSettings()  # no key given by the entry point: the pack is built UNSIGNED and says so


def _history_pack_note(control: str | None, catalogue: Any, pack_settings: Callable[[], Any] | None) -> str:
    """History offers a pack download when a control is filtered and the pages have a catalogue to build it."""
    return pack_note(_signing(pack_settings)) if control and catalogue is not None else ""


class _PackResponse(FileResponse):
    """The pack as a download; its private directory goes afterwards (the BackgroundTask), and also when
    the client hangs up mid-download (Starlette skips the background task when sending raises). The
    build's slot (``pack_gate``) is given back only then: streaming a large zip is part of the cost."""

    slot: Slot | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            shutil.rmtree(Path(self.path).parent, ignore_errors=True)
            if self.slot is not None:
                self.slot.release()


def pack_response(
    dsn_provider: Callable[[], str],
    catalogue: Callable[[], Any] | None,
    *,
    control: str,
    period: tuple[datetime, datetime, str, str],
    settings: Any,
    base: str,
) -> FileResponse | HTMLResponse:
    """Build the pack with ``build_pack`` (as the CLI does) in a private temp dir; stream it, then remove the dir."""
    from drillbook.evidence.pack import build_pack
    from drillbook.ledger.store import Ledger
    from drillbook.resources.pg import parse

    start, end, since_s, until_s = period
    if end - start > timedelta(days=PACK_MAX_DAYS):
        raise ConfigurationError(
            f"the period {since_s} → {until_s} is {(end - start).days} days; a pack covers at "
            f"most {PACK_MAX_DAYS} days, download one per part of the period"
        )
    cat = catalogue() if catalogue is not None else None
    if cat is None:
        return HTMLResponse(
            pages.error_page(
                "No catalogue",
                "no catalogue is configured (DRILLBOOK_CATALOGUE): the "
                "pack needs the catalogue's schedules to list every expected occurrence",
                base=base,
            ),
            status_code=503,
        )
    dsn = dsn_provider()
    parse(dsn)  # registers the password with redact before any message can carry it
    workdir = Path(tempfile.mkdtemp(prefix="drillbook-pack-"))  # mode 0700: nobody else on the host reads it
    try:
        output = workdir / "pack.zip"
        with Ledger(dsn, spool=None) as ledger:
            result, _report = build_pack(
                ledger, cat, control=control, start=start, end=end, output=output, settings=settings
            )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    disposition = f'attachment; filename="{pack_filename(control, since_s, until_s)}"'
    return _PackResponse(
        output,
        media_type="application/zip",
        headers={
            "Content-Disposition": disposition,
            "Cache-Control": "no-store",
            "X-Drillbook-Pack-Signed": "true" if result.signed else "false",
        },
        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True),
    )


def _add_pack_route(
    app: Any,
    dsn_provider: Callable[[], str],
    catalogue: Callable[[], Any] | None,
    pack_settings: Callable[[], Any] | None,
    *,
    user_dependency: Callable[..., Any],
    gate: PackGate,
) -> None:
    current_user = Depends(user_dependency)  # the app's own dependency: FastAPI calls it once per request

    @app.get("/pack", response_model=None)
    def pack(
        request: Request,
        control: str | None = None,
        since: str | None = None,
        until: str | None = None,
        user: Any = current_user,
    ) -> FileResponse | HTMLResponse:
        chosen = _pack_control(control)
        period = _window(since, until, days=31)
        base = str(request.scope.get("root_path", "")).rstrip("/")
        try:
            slot = gate.acquire(user_key(user))
        except PackBusy as busy:
            return HTMLResponse(
                pages.error_page("Busy", busy.reason, base=base),
                status_code=429,
                headers={"Retry-After": str(busy.retry_after), "Cache-Control": "no-store"},
            )
        try:
            answer = pack_response(
                dsn_provider,
                catalogue,
                control=chosen,
                period=period,
                settings=_signing(pack_settings),
                base=base,
            )
        except BaseException:
            slot.release()
            raise
        if isinstance(answer, _PackResponse):
            answer.slot = slot  # released once the zip is sent or the client is gone
        else:
            slot.release()
        return answer


def _session_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")


def _add_ledger_routes(
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


def create_app(
    *,
    dsn_provider: Callable[[], str],
    user_dependency: Callable[..., Any],
    airflow_base: str = "",
    verify: Callable[[], dict[str, Any]] | None = None,
    catalogue: Callable[[], Any] | None = None,
    pack_settings: Callable[[], Any] | None = None,
    pack_gate: PackGate | None = None,
    verify_gate: PackGate | None = None,
    writer_dsn: Callable[[], str | None] | None = None,
) -> Any:
    """Build the evidence app; ``verify`` runs the chain check and returns {ok, exit_code, message};
    ``catalogue`` returns the catalogue (or None) that Controls and Coverage judge the ledger against
    (``drillbook.evidence.controls`` / ``coverage``); without one they summarise what the ledger holds.
    ``pack_settings`` returns the ``CheckpointSettings`` the pack is signed with (the entry
    point's settings, as ``drillbook evidence pack`` signs with; none given: the pack is unsigned).
    ``pack_gate`` limits concurrent pack builds (default: one per user, two in all, in this process);
    ``verify_gate`` the verify button's runs (default: one at a time in this process).
    ``writer_dsn`` returns the DSN of the ``drillbook_ledger_writer`` connection, or None when there is
    none: the verify button records its outcome through it (``verify_record``); without it, it does not."""
    pool = LedgerPool(dsn_provider)
    app = FastAPI(
        title="drillbook evidence", dependencies=[Depends(user_dependency)], docs_url=None, redoc_url=None
    )

    def base_of(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.exception_handler(ConfigurationError)
    async def bad_input(request: Request, exc: ConfigurationError) -> HTMLResponse:
        if isinstance(exc, ConnectionNotConfigured):  # the server's fault, not the auditor's filter
            return HTMLResponse(
                pages.error_page("Ledger unavailable", redact(str(exc)), base=base_of(request)),
                status_code=503,
            )
        return HTMLResponse(pages.error_page("Bad filter", str(exc), base=base_of(request)), status_code=400)

    import psycopg

    @app.exception_handler(psycopg.Error)
    async def unavailable(request: Request, exc: psycopg.Error) -> HTMLResponse:
        msg = f"cannot read the evidence ledger (connection drillbook_ledger): {redact(str(exc)).strip()}"
        return HTMLResponse(
            pages.error_page("Ledger unavailable", msg, base=base_of(request)), status_code=503
        )

    @app.exception_handler(DrillbookError)
    async def not_configured(request: Request, exc: DrillbookError) -> HTMLResponse:
        return HTMLResponse(
            pages.error_page("Ledger unavailable", redact(str(exc)), base=base_of(request)), status_code=503
        )

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> RedirectResponse:
        return RedirectResponse(base_of(request) + "/history", status_code=307)

    @app.get("/history", response_class=HTMLResponse)
    def history(
        request: Request,
        kind: str | None = None,
        drill: str | None = None,
        control: str | None = None,
        verdict: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: int | None = None,
        limit: int = queries.PAGE_SIZE,
    ) -> str:
        raw = {
            "kind": kind,
            "drill": drill,
            "control": control,
            "verdict": verdict,
            "since": since,
            "until": until,
        }
        filters = {k: (v.strip() or None) if v else None for k, v in raw.items()}
        flt = Filter.build(**filters)
        with pool.connection() as conn:
            rows, next_before = queries.history(
                conn, flt, before=before, limit=max(1, min(limit, queries.MAX_PAGE))
            )
            names = sorted({d for d, _k in queries.drills(conn)})
        if limit != queries.PAGE_SIZE:
            filters["limit"] = str(limit)
        return pages.history_page(
            rows,
            filters=filters,
            next_before=next_before,
            drills=names,
            base=base_of(request),
            pack_note=_history_pack_note(filters["control"], catalogue, pack_settings),
        )

    @app.get("/record/{seq}", response_class=HTMLResponse)
    def record(request: Request, seq: int) -> HTMLResponse:
        with pool.connection() as conn:
            rec = queries.record(conn, seq)
            if rec is None:
                return HTMLResponse(
                    pages.error_page(
                        "No such record", f"the ledger has no record seq={seq}", base=base_of(request)
                    ),
                    status_code=404,
                )
            green = queries.last_green_before(conn, kind=rec["kind"], drill=rec["drill"], seq=seq)
        return HTMLResponse(
            pages.record_page(rec, last_green=green, base=base_of(request), airflow_base=airflow_base)
        )

    @app.get("/trends", response_class=HTMLResponse)
    def trends(
        request: Request, drill: str | None = None, since: str | None = None, until: str | None = None
    ) -> str:
        start, end, since_s, until_s = _window(since, until, days=31)
        with pool.connection() as conn:
            known = queries.drills(conn)
            kinds = dict(known)
            chosen = drill if drill in kinds else (known[0][0] if known else None)
            days = (
                queries.measurements_per_day(conn, drill=chosen, kind=kinds[chosen], since=start, until=end)
                if chosen
                else []
            )
        return pages.trends_page(
            days,
            queries.pass_rate_per_month(days),
            drill=chosen,
            kind=kinds.get(chosen) if chosen else None,
            drills=sorted(kinds),
            since=since_s,
            until=until_s,
            base=base_of(request),
        )

    @app.get("/controls", response_class=HTMLResponse)
    def controls(request: Request, since: str | None = None, until: str | None = None) -> str:
        start, end, since_s, until_s = _window(since, until, days=31)
        cat = catalogue() if catalogue is not None else None
        with pool.connection() as conn:
            if cat is not None:
                from drillbook.evidence.population_sql import control_rows_sql

                return control_pages.control_rows_page(  # the newest 20 exceptions per control, and how many in all
                    control_rows_sql(conn, cat, start=start, end=end, newest=20, cached=True),
                    since=since_s,
                    until=until_s,
                    base=base_of(request),
                    pack_note=pack_note(_signing(pack_settings)),
                )
            rows = queries.controls_summary(conn, since=start, until=end)
        return control_pages.controls_page(rows, since=since_s, until=until_s, base=base_of(request))

    @app.get("/coverage", response_class=HTMLResponse)
    def coverage(request: Request, since: str | None = None, until: str | None = None) -> str:
        start, end, since_s, until_s = _window(since, until, days=31)
        cat = catalogue() if catalogue is not None else None
        with pool.connection() as conn:
            if cat is not None:
                from drillbook.evidence.coverage import coverage as scope_coverage

                return control_pages.scope_page(
                    scope_coverage(conn, cat, start=start, end=end),
                    since=since_s,
                    until=until_s,
                    base=base_of(request),
                )
            rows = queries.coverage(conn, since=start, until=end)
        return control_pages.coverage_page(
            rows,
            since=since_s,
            until=until_s,
            base=base_of(request),
            scope_from="every drill in the ledger (no catalogue configured)",
        )

    app.state.pack_gate = pack_gate or PackGate()
    _add_pack_route(
        app,
        dsn_provider,
        catalogue,
        pack_settings,
        user_dependency=user_dependency,
        gate=app.state.pack_gate,
    )

    app.state.verify_gate = verify_gate or PackGate(
        per_user=1, total=1, retry_after=30, what="ledger verify", whats="ledger verifies"
    )
    _add_ledger_routes(
        app,
        pool,
        user_dependency=user_dependency,
        verify=verify,
        writer_dsn=writer_dsn,
        base_of=base_of,
        gate=app.state.verify_gate,
    )

    @app.get("/api/history")
    def history_json(
        kind: str | None = None,
        drill: str | None = None,
        control: str | None = None,
        verdict: str | None = None,
        since: str | None = None,
        until: str | None = None,
        before: int | None = None,
    ) -> JSONResponse:
        flt = Filter.build(kind=kind, drill=drill, control=control, verdict=verdict, since=since, until=until)
        with pool.connection() as conn:
            rows, next_before = queries.history(conn, flt, before=before)
        return JSONResponse(
            {
                "records": [{**r, "recorded_at": r["recorded_at"].isoformat()} for r in rows],
                "next_before": next_before,
            }
        )

    app.state.pool = pool
    return app


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
