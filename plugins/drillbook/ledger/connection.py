"""The ledger handle's connection: opened on first use, its schema checked once before the first read or write.

Rules this module enforces:
- nothing connects in ``__init__``; the connection opens on first use;
- no record is read or written before the schema version is known to work:
  none, older than this drillbook can use, or newer than it knows is a
  ``LedgerError`` that says what to run (``auto_init`` migrates instead);
- messages name the ledger as ``host:port/dbname``, never its credentials.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Self

from drillbook.errors import LedgerError, LedgerNotInitialised, LedgerUnavailable
from drillbook.ledger import schema
from drillbook.ledger.spool import EvidenceSpool
from drillbook.safety.redact import redact


class LedgerConnection:
    """The connection half of ``Ledger``: where the ledger is, how to reach it, its schema version."""

    def __init__(
        self,
        dsn: str,
        *,
        auto_init: bool = False,
        connect_timeout: int = 10,
        spool: EvidenceSpool | str | os.PathLike[str] | None = None,
    ):
        """``spool``: an ``EvidenceSpool``, a path (the entry point passes ``Settings.spool_file``), or
        None (never spool: an unreachable ledger raises)."""
        if not dsn:
            raise LedgerError(
                "no ledger DSN given; set DRILLBOOK_LEDGER_DSN or the drillbook_ledger connection"
            )
        self._spool = spool if isinstance(spool, EvidenceSpool) or spool is None else (EvidenceSpool(spool))
        self._dsn = dsn
        self._auto_init = auto_init
        self._connect_timeout = connect_timeout
        self._schema_checked = False

    def __repr__(self) -> str:
        return f"Ledger({self.where!r})"

    @functools.cached_property
    def where(self) -> str:
        """The ledger's ``host:port/dbname``, for messages (never the credentials)."""
        from drillbook.resources.pg import describe

        return describe(self._dsn)

    @functools.cached_property
    def _conn(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        from drillbook.resources.pg import parse

        parse(self._dsn)  # registers the password with redact before anything can print it
        try:
            return psycopg.connect(
                self._dsn, autocommit=True, row_factory=dict_row, connect_timeout=self._connect_timeout
            )
        except psycopg.OperationalError as exc:
            raise LedgerUnavailable(
                f"cannot connect to the evidence ledger at {self.where}: {redact(str(exc))}"
            ) from None

    @property
    def spool(self) -> EvidenceSpool | None:
        """Where records go when the ledger cannot be written (None: nowhere, the error is raised)."""
        return self._spool

    def close(self) -> None:
        conn = self.__dict__.pop("_conn", None)
        if conn is not None:
            conn.close()
        self._schema_checked = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------
    def init_schema(self) -> list[int]:
        """Create or migrate the schema (idempotent); return the migration versions applied."""
        applied = schema.apply_migrations(self._conn)
        self._schema_checked = True
        if 6 in applied and self._conn.autocommit:
            # v6 rewrote the table, which clears its visibility map: until a vacuum sets it again the
            # pages' covering index cannot answer index-only (VACUUM cannot run inside the migration)
            self._conn.execute(f"VACUUM (ANALYZE) {schema.TABLE}")
        return applied

    def schema_version(self) -> int:
        from psycopg.rows import tuple_row

        with self._conn.cursor(row_factory=tuple_row) as cur:
            return schema.current_version(cur)

    def _ensure_schema(self) -> None:
        if self._schema_checked:
            return
        version = self.schema_version()
        if version != schema.LATEST_VERSION and self._auto_init:
            self.init_schema()
            return
        if version == 0:
            raise LedgerNotInitialised(
                f"the evidence ledger at {self.where} has no schema; run `drillbook ledger init` first"
            )
        if version < schema.MIN_WORKING_VERSION:
            raise LedgerError(
                f"the evidence ledger at {self.where} is at schema version {version}, this drillbook needs "
                f"{schema.LATEST_VERSION}; run `drillbook ledger init` to migrate it"
            )
        if version > schema.LATEST_VERSION:
            raise LedgerError(
                f"the evidence ledger at {self.where} is at schema version {version}, newer than this "
                f"drillbook knows ({schema.LATEST_VERSION}); upgrade drillbook"
            )
        self._schema_checked = True

    def _another_connection(self) -> Any:
        """A second connection with this handle's credentials (a parallel verify's range reader)."""
        import psycopg

        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._connect_timeout)

    @property
    def connection(self) -> Any:
        """The open psycopg connection (export and the benchmark stream through it)."""
        self._ensure_schema()
        return self._conn
