"""The verify ladder's long reads, started early on connections of their own so the server runs them at once.

Why: on a restored physical backup most of the ladder's time is three full reads that
do not depend on each other: amcheck's heap check (physical/verify_phases.py), the exact row
count of the volume rung and amcheck's B-tree checks of the integrity rung. Run one
after the other they keep one server backend busy at a time; started together, the
server works on all three (2 cores, 236 MB: 0.48-0.72 s in a row, 0.35-0.40 s at once).

Rules this module enforces:
- a worker runs exactly the read its rung would run itself (``volume.count_rows``,
  ``integrity.btree_outcomes``), with the same scope (``in_scope``: the tier) and the
  same session limits (``ScratchSession``: statement and lock timeout); it returns the
  raw result and never touches the ``ResultBuilder``: the rungs record checks and
  findings from it in their own order and phase, on the caller's thread, exactly as
  when they read it themselves;
- B-tree checks are prefetched only with amcheck's schema already known (the caller
  installed the extension first: two sessions creating it at once would race);
- a worker that raised (connection refused, a query error, a timeout) re-raises in the
  rung that consumes its result, inside that rung's phase: ``DRILL_CRASHED``, never a PASS,
  and never a silent fallback to a second read;
- at most ``WORKERS`` reads run at once whatever the number of databases;
- ``close`` cancels reads that are queued or still running (a ladder that aborted, a
  heap check that found corruption), waits for every worker and closes their
  connections: when it returns nothing of this module runs on the cluster, so teardown
  stops an idle server. The physical drill calls it in a ``finally``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from drillbook.errors import DrillbookError

#: reads in flight besides the caller's own (the heap check): the machine this was measured on has 2 cores
WORKERS = 2


class PrefetchCancelled(DrillbookError, RuntimeError):
    """The prefetch was closed before this read finished; the rung must not use it (never raised to a rung that
    runs: ``close`` is only called once the ladder is over)."""


@dataclass
class DatabaseReads:
    """The prefetched reads of one database; ``None`` where the rung reads for itself."""

    volume: Future[Any] | None = None  # -> (rows per table, total), as ``volume.count_rows``
    btree: Future[Any] | None = None  # -> (schema, how, outcomes), as ``integrity.btree_outcomes``
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def result(future: Future[Any]) -> Any:
        """The read's result, or its exception raised here (in the consuming rung's phase)."""
        try:
            return future.result()
        except CancelledError:
            raise PrefetchCancelled("the prefetched read was cancelled before it ran") from None


class Prefetch:
    """Starts reads per database (``start``); ``for_db`` hands them to the ladder; ``close`` always."""

    def __init__(self, *, statement_timeout_s: int = 3600, workers: int = WORKERS):
        self.statement_timeout_s = statement_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drillbook-verify")
        self._lock = threading.Lock()
        self._open: list[Any] = []  # connections of running reads (for cancel)
        self._closing = threading.Event()
        self._reads: dict[str, DatabaseReads] = {}
        self._futures: list[Future[Any]] = []

    def submit(self, dsn: str, read: Callable[[Any], Any]) -> Future[Any]:
        """Run ``read(conn)`` on a connection of its own to ``dsn`` (a ``ScratchSession``: the ladder's limits)."""
        future = self._pool.submit(self._session_run, dsn, read)
        self._futures.append(future)
        return future

    def _session_run(self, dsn: str, read: Callable[[Any], Any]) -> Any:
        from drillbook.drills.backup_restore.verify.ladder import ScratchSession

        if self._closing.is_set():
            raise PrefetchCancelled("closed before the read started")
        session = ScratchSession(dsn=dsn, statement_timeout_s=self.statement_timeout_s)
        try:
            conn = session.conn
            with self._lock:
                self._open.append(conn)
            if self._closing.is_set():  # closed while connecting: close() did not see this connection
                raise PrefetchCancelled("closed before the read started")
            return read(conn)
        finally:
            with self._lock:
                if "conn" in session.__dict__ and session.__dict__["conn"] in self._open:
                    self._open.remove(session.__dict__["conn"])
            session.close()

    def start(
        self,
        db: str,
        dsn: str,
        *,
        volume: bool,
        amcheck_schema: str | None,
        in_scope: Callable[[str], bool],
    ) -> DatabaseReads:
        """Queue the volume count (``volume``) and, with ``amcheck_schema``, the B-tree checks of ``db``."""
        from drillbook.drills.backup_restore.verify import integrity
        from drillbook.drills.backup_restore.verify.volume import count_rows

        reads = self._reads.setdefault(db, DatabaseReads())
        if volume and reads.volume is None:
            reads.volume = self._pool.submit(
                self._session_run, dsn, lambda conn: count_rows(conn, only=in_scope)
            )
            reads.notes.append("row count")
        if amcheck_schema is not None and reads.btree is None:
            schema = amcheck_schema
            reads.btree = self.submit(
                dsn,
                lambda conn: (
                    schema,
                    "amcheck already installed",
                    integrity.btree_outcomes(conn, schema, in_scope, stop=self._closing),
                ),
            )
            reads.notes.append("B-tree checks")
        return reads

    def for_db(self, db: str) -> DatabaseReads | None:
        return self._reads.get(db)

    def close(self) -> None:
        """Cancel what still runs, wait for every worker, close their connections; idempotent."""
        self._closing.set()
        for fut in self._futures:
            fut.cancel()  # not started yet: never starts
        self._pool.shutdown(wait=False, cancel_futures=True)
        # a read may connect, or send its query, just after a cancel request went out: ask again until all ended
        while not all(f.done() for f in self._futures):
            with self._lock:
                running = list(self._open)
            for conn in running:
                try:
                    conn.cancel_safe(timeout=5)
                except Exception:  # noqa: S110 - already finished or closed: nothing to cancel
                    pass
            time.sleep(0.05)
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
