"""The evidence pages as a FastAPI app, mounted in Airflow's api-server by the drillbook plugin.

Rules this module enforces:
- every route depends on ``user_dependency`` (Airflow's own ``get_user`` in the plugin: the
  JWT from the ``_token`` cookie or an ``Authorization: Bearer`` header), so there is no page
  and no JSON answer without an authenticated Airflow user, and no second login;
- the ledger is read through ``dsn_provider`` (the ``drillbook_ledger`` connection) on
  read-only connections (``default_transaction_read_only``, a statement timeout), so a role
  with SELECT only is enough and a slow query cannot hold a worker;
- bad input (a filter that does not parse) answers 400 and an unreachable ledger 503, each
  with a page that says what failed; never a traceback, never the DSN's password.

The pack download is ``drillbook.web.pack_download``; the ledger page and its verify button
``drillbook.web.ledger_route``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from drillbook.errors import ConfigurationError, ConnectionNotConfigured, DrillbookError
from drillbook.evidence import render_control_pages as control_pages
from drillbook.evidence import render_pages as pages
from drillbook.ledger.query import Filter
from drillbook.safety.redact import redact
from drillbook.web import queries
from drillbook.web.ledger_route import add_ledger_routes
from drillbook.web.pack_download import add_pack_route, history_pack_note, pack_note, pack_signing
from drillbook.web.pack_gate import PackGate
from drillbook.web.period import window

_POOL_SIZE = 4


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
            pack_note=history_pack_note(filters["control"], catalogue, pack_settings),
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
        start, end, since_s, until_s = window(since, until, days=31)
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
        start, end, since_s, until_s = window(since, until, days=31)
        cat = catalogue() if catalogue is not None else None
        with pool.connection() as conn:
            if cat is not None:
                from drillbook.evidence.population_sql import control_rows_sql

                return control_pages.control_rows_page(  # the newest 20 exceptions per control, and how many in all
                    control_rows_sql(conn, cat, start=start, end=end, newest=20, cached=True),
                    since=since_s,
                    until=until_s,
                    base=base_of(request),
                    pack_note=pack_note(pack_signing(pack_settings)),
                )
            rows = queries.controls_summary(conn, since=start, until=end)
        return control_pages.controls_page(rows, since=since_s, until=until_s, base=base_of(request))

    @app.get("/coverage", response_class=HTMLResponse)
    def coverage(request: Request, since: str | None = None, until: str | None = None) -> str:
        start, end, since_s, until_s = window(since, until, days=31)
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
    add_pack_route(
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
    add_ledger_routes(
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
