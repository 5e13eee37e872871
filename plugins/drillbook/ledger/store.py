"""The evidence ledger: append drill results to a hash-chained, append-only PostgreSQL table.

Rules this module enforces (the connection and the schema check: ``connection``):
- every append runs in one transaction that takes the chain's transaction-level
  advisory lock, reads the tail, computes ``seq`` = tail + 1 and the hash in
  Python, inserts and commits: concurrent writers queue and the chain never
  forks. An advisory lock needs no table privilege, so writers can run as a
  role with only SELECT and INSERT (``LOCK TABLE ... SHARE ROW EXCLUSIVE``
  would need UPDATE/DELETE rights); a writer that skipped the lock still
  cannot fork the chain, because ``seq`` and ``prev_hash`` are unique;
- appends are idempotent: a 'drill' record per (dag_id, run_id, task_id,
  map_index), a 'notification' per attempt, a watchdog/digest record per
  (dag_id, run_id, task_id, map_index, kind, drill). A retry gets the existing
  record back with ``created=False`` and writes nothing;
- every string of a row is redacted before hashing, and ``result`` is stored as
  the very canonical JSON text that was hashed (see
  ``drillbook.ledger.canonical``); the INSERT returns what PostgreSQL stored
  and the transaction rolls back if it differs by one byte from what was hashed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from drillbook.errors import EvidenceSpooled, LedgerError, LedgerUnavailable
from drillbook.ledger import schema
from drillbook.ledger.canonical import COLUMNS, normalise
from drillbook.ledger.checkpoint import Checkpoint, CheckpointSettings
from drillbook.ledger.connection import LedgerConnection
from drillbook.ledger.query import Filter
from drillbook.ledger.records import RECORD_TYPES, LedgerRecord, VerifyReport
from drillbook.ledger.seal import insert_sealed
from drillbook.ledger.spool import SpoolEntry
from drillbook.ledger.spool_replay import FlushReport, UnreplayableEntry, replay
from drillbook.safety.redact import redact

if TYPE_CHECKING:
    from drillbook.result import DrillResult
    from drillbook.run.context import RunContext

_T = schema.TABLE
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM {_T}"
# verify reads result as its stored text and recorded_at already in canonical form: both are hashed as
# they come, with nothing parsed or re-formatted (and the canonical timestamps compare as strings).
_VERIFY_COLUMNS = ", ".join(
    "result::text AS result"
    if c == "result"
    else "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS recorded_at"
    if c == "recorded_at"
    else c
    for c in COLUMNS
)
_NOTIFICATION_KEY = "dag_id = %s AND run_id = %s AND task_id = %s AND map_index = %s AND try_number = %s"
_DRILL_KEY = "dag_id = %s AND run_id = %s AND task_id = %s AND map_index = %s"
_EVENT_KEY = "dag_id = %s AND run_id = %s AND task_id = %s AND map_index = %s AND kind = %s AND drill = %s"
_KEYS = {"drill": _DRILL_KEY, "notification": _NOTIFICATION_KEY, "watchdog": _EVENT_KEY, "digest": _EVENT_KEY}
_ERROR_MESSAGE_MAX = 300  # characters of a notification error kept as evidence


def row_to_record(row: dict[str, Any], *, created: bool = False) -> LedgerRecord:
    return LedgerRecord(**{name: row[name] for name in COLUMNS}, created=created)


class Ledger(LedgerConnection):
    """A handle on one evidence ledger database (``DRILLBOOK_LEDGER_DSN`` / ``drillbook_ledger``)."""

    # -- writing ----------------------------------------------------------------------------
    def record(self, result: DrillResult, ctx: RunContext) -> LedgerRecord:
        """Append the result of one drill task; a retry of the same task returns the first record."""
        return self._append("drill", result, ctx, key=_DRILL_KEY)

    def record_notify_failure(
        self, result: DrillResult, ctx: RunContext, *, error: BaseException
    ) -> LedgerRecord:
        """Append a 'notification' record saying the report of ``result`` was not delivered."""
        from drillbook.drills.base import ResultBuilder

        message = redact(str(error))
        if len(message) > _ERROR_MESSAGE_MAX:
            message = message[:_ERROR_MESSAGE_MAX] + "…"
        builder = ResultBuilder(
            kind=result.kind, drill=result.drill, target=result.target, controls=result.controls
        )
        builder.checked()  # the delivery attempt ran; it failed
        builder.find(
            "NOTIFY_FAILED",
            f"report of {result.drill!r} ({result.verdict.value}) was not delivered: {type(error).__name__}: {message}",
            subject=result.drill,
            detail={
                "error_type": type(error).__name__,
                "error": message,
                "drill_verdict": result.verdict.value,
            },
        )
        builder.details["reported_verdict"] = result.verdict.value
        builder.details["reported_codes"] = result.codes()
        notice = builder.finish()
        return self._append("notification", notice, ctx, key=_NOTIFICATION_KEY)

    def record_event(self, record_type: str, result: DrillResult, ctx: RunContext) -> LedgerRecord:
        """Append a 'watchdog', 'digest' or 'notification' record built by the caller.

        Keys: watchdog/digest — one per (dag_id, run_id, task_id, map_index, kind, drill);
        notification — one per task attempt, shared with ``record_notify_failure``.
        """
        if record_type == "notification":
            return self._append(record_type, result, ctx, key=_NOTIFICATION_KEY)
        if record_type not in ("watchdog", "digest"):
            raise LedgerError(
                f"record_event takes record_type 'watchdog', 'digest' or 'notification', got {record_type!r}; "
                "use record() for drill results"
            )
        return self._append(record_type, result, ctx, key=_EVENT_KEY)

    def _row_fields(self, record_type: str, result: DrillResult, ctx: RunContext) -> dict[str, Any]:
        return {
            "record_type": record_type,
            "kind": normalise(result.kind),
            "drill": normalise(result.drill),
            "target": normalise(result.target),
            "verdict": result.verdict.value,
            "controls": [normalise(str(c)) for c in result.controls],
            "dag_id": normalise(ctx.dag_id),
            "run_id": normalise(ctx.run_id),
            "task_id": normalise(ctx.task_id),
            "map_index": int(ctx.map_index),
            "try_number": int(ctx.try_number),
            "trigger": normalise(ctx.trigger),
            "result": normalise(result.to_json_dict()),
        }

    def _append(self, record_type: str, result: DrillResult, ctx: RunContext, *, key: str) -> LedgerRecord:
        """Append now, replaying any spooled records first; spool instead when the ledger is unreachable."""
        if record_type not in RECORD_TYPES:
            raise LedgerError(f"unknown record type {record_type!r}; expected one of {RECORD_TYPES}")
        if self._spool is not None and self._spool.has_pending():
            try:
                self.flush_spool()  # order: what waited in the spool goes in before this record
            except LedgerUnavailable as exc:
                raise self._spool_record(record_type, result, ctx, reason=str(exc)) from None
        try:
            return self._append_now(record_type, result, ctx, key)
        except LedgerUnavailable as exc:
            if self._spool is None:
                raise
            raise self._spool_record(record_type, result, ctx, reason=str(exc)) from None

    def _spool_record(
        self, record_type: str, result: DrillResult, ctx: RunContext, *, reason: str
    ) -> EvidenceSpooled:
        assert self._spool is not None
        try:
            entry = self._spool.append(
                SpoolEntry(
                    record_type=record_type,
                    ctx=dataclasses.asdict(ctx),
                    ledger=self.where,
                    result=result.to_json_dict(),
                    reason=redact(reason),
                )
            )
        except OSError as exc:
            # Both stores refused: the loss must be loud and named, never "spooled" and never "could not run".
            raise LedgerUnavailable(
                f"the {record_type} record of {result.drill!r} (verdict {result.verdict.value}) was NOT kept: the "
                f"evidence ledger at {self.where} could not be written ({redact(reason)}) and neither could the "
                f"evidence spool {self._spool.path} ({type(exc).__name__}: {exc.strerror or exc}); make the spool's "
                "directory writable ($DRILLBOOK_SPOOL) or bring the ledger back, then run the drill again"
            ) from None
        return EvidenceSpooled(
            f"the evidence ledger at {self.where} could not be written ({redact(reason)}); the {record_type} record "
            f"of {result.drill!r} was kept in the evidence spool {self._spool.path} and will be replayed by the next "
            "run or `drillbook ledger flush`",
            spool_path=str(self._spool.path),
            entry_id=entry.id,
        )

    def flush_spool(self) -> FlushReport:
        """Replay the spool in order through the idempotent append; see ``drillbook.ledger.spool_replay``."""
        from drillbook.result import DrillResult
        from drillbook.run.context import RunContext

        def append(entry: SpoolEntry) -> LedgerRecord:
            try:  # the entry's own content: what fails here fails on every replay
                result, ctx, key = (
                    DrillResult.model_validate(entry.result),
                    RunContext(**entry.ctx),
                    _KEYS[entry.record_type],
                )
            except (ValueError, TypeError, KeyError) as exc:  # pydantic's ValidationError is a ValueError
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise UnreplayableEntry(f"{type(exc).__name__}: {first}"[:300]) from None
            return self._append_now(entry.record_type, result, ctx, key)

        if self._spool is None:
            return FlushReport(spool="")
        return replay(self._spool, where=self.where, append=append)

    def _append_now(self, record_type: str, result: DrillResult, ctx: RunContext, key: str) -> LedgerRecord:
        import psycopg

        try:
            self._ensure_schema()
            return self._insert(record_type, result, ctx, key)
        except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction) as exc:
            # server down, connection reset, AdminShutdown, ...; or failed over to a read-only standby:
            # down for writing all the same, so the record waits in the spool
            self.close()  # the next call reconnects
            raise LedgerUnavailable(
                f"the evidence ledger at {self.where} went away: {type(exc).__name__}: {redact(str(exc)).strip()}"
            ) from None

    def _insert(self, record_type: str, result: DrillResult, ctx: RunContext, key: str) -> LedgerRecord:
        fields = self._row_fields(record_type, result, ctx)
        key_params: list[Any] = [fields["dag_id"], fields["run_id"], fields["task_id"], fields["map_index"]]
        if record_type == "notification":
            key_params.append(fields["try_number"])
        elif record_type in ("watchdog", "digest"):
            key_params += [fields["kind"], fields["drill"]]
        row, created = insert_sealed(self._conn, fields, key=key, key_params=key_params, select=_SELECT)
        return row_to_record(row, created=created)

    # -- reading ----------------------------------------------------------------------------
    def get(self, seq: int) -> LedgerRecord | None:
        """The record with this ``seq``, or None."""
        self._ensure_schema()
        with self._conn.cursor() as cur:
            cur.execute(f"{_SELECT} WHERE seq = %s", (seq,))
            row = cur.fetchone()
        return row_to_record(row) if row else None

    def head(self) -> LedgerRecord | None:
        """The newest record (the chain's head), or None for an empty ledger."""
        self._ensure_schema()
        with self._conn.cursor() as cur:
            cur.execute(f"{_SELECT} ORDER BY seq DESC LIMIT 1")
            row = cur.fetchone()
        return row_to_record(row) if row else None

    def last_pass(self, *, kind: str, drill: str) -> LedgerRecord | None:
        """The newest PASS 'drill' record of one drill, or None if it never passed."""
        self._ensure_schema()
        with self._conn.cursor() as cur:
            cur.execute(
                f"{_SELECT} WHERE drill = %s AND kind = %s AND verdict = 'PASS' AND record_type = 'drill' "
                "ORDER BY seq DESC LIMIT 1",
                (drill, kind),
            )
            row = cur.fetchone()
        return row_to_record(row) if row else None

    def query(
        self,
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        control: str | None = None,
        drill: str | None = None,
        kind: str | None = None,
        verdict: str | None = None,
        record_type: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[LedgerRecord]:
        """Records matching every given filter, in chain order (or newest first), at most ``limit``."""
        flt = Filter.build(
            since=since,
            until=until,
            control=control,
            drill=drill,
            kind=kind,
            verdict=verdict,
            record_type=record_type,
        )
        return list(self.iter_records(flt, limit=limit, newest_first=newest_first))

    def iter_records(
        self, flt: Filter, *, limit: int | None = None, newest_first: bool = False, batch: int = 2000
    ) -> Iterator[LedgerRecord]:
        """Stream matching records through a server-side cursor (memory stays flat)."""
        self._ensure_schema()
        where, params = flt.where()
        sql = f"{_SELECT} WHERE {where} ORDER BY seq {'DESC' if newest_first else 'ASC'}"
        if limit is not None and limit > 0:
            sql += " LIMIT %s"
            params.append(int(limit))
        conn = self._conn
        with conn.transaction(), conn.cursor(name="drillbook_records") as cur:
            cur.itersize = batch
            cur.execute(sql, params)
            for row in cur:
                yield row_to_record(row)

    def count(self) -> int:
        self._ensure_schema()
        with self._conn.cursor() as cur:
            cur.execute(f"SELECT count(*) AS n FROM {_T}")
            row = cur.fetchone()
        return int(row["n"]) if row else 0

    # -- checking ---------------------------------------------------------------------------
    def verify(
        self,
        *,
        expect_head: str | None = None,
        batch: int = 2000,
        checkpoints: CheckpointSettings | None = None,
        full: bool = False,
        workers: int | None = None,
    ) -> VerifyReport:
        """Walk the chain, compare it with the newest checkpoint and check the guards.

        Incremental (from the newest checkpoint signed with the trusted key) unless ``full``; see
        ``drillbook.ledger.audit.verify_ledger``.

        ``expect_head``: ``SEQ:HASH`` (or a hash prefix) reported by an earlier verify. ``checkpoints``:
        trusted key and outside copy, ``CheckpointSettings.from_settings(settings)`` of the entry point
        (None: none configured, a full walk with no trusted key and no outside copy; never read here).
        ``workers``: connections a long walk is split over (None: one per CPU up to 4 from 50,000 records
        on; 1: one stream on this handle's connection); the extra ones are opened with this handle's DSN.
        """
        from drillbook.ledger.audit import verify_ledger

        self._ensure_schema()
        return verify_ledger(
            self._conn,
            _T,
            _VERIFY_COLUMNS,
            expect_head=expect_head,
            batch=batch,
            settings=checkpoints or CheckpointSettings(),
            full=full,
            workers=workers,
            connect=self._another_connection,
        )

    def newest_checkpoint(self, *, source_prefix: str = "") -> Checkpoint | None:
        """The newest checkpoint stored in the database whose source starts with ``source_prefix``."""
        from psycopg.rows import tuple_row

        from drillbook.ledger import checkpoint as cpmod

        self._ensure_schema()
        with self._conn.cursor(row_factory=tuple_row) as cur:
            found = [c for c in cpmod.read_db(cur) if c.source.startswith(source_prefix)]
        return found[-1] if found else None

    def checkpoint(self, *, source: str, settings: CheckpointSettings | None = None) -> Checkpoint:
        """Sign the current head (unsigned without a key) and store it in the database and outside it.

        ``settings``: the entry point's ``CheckpointSettings.from_settings(...)``; None signs with no key.
        """
        from drillbook.ledger.audit import take_checkpoint

        self._ensure_schema()
        return take_checkpoint(self._conn, _T, source=source, settings=settings or CheckpointSettings())
