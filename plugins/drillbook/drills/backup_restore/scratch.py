"""The scratch guard: the one place a drill creates or drops a database.

Rules this module enforces (principle 2, never write to a source):
- the guard asks the servers, not the strings: the scratch and source
  connections are compared by what each server says about itself
  (server_identity.py); on the same server, the scratch connection's database
  must not be the source database, and no scratch database may carry the
  source database's name. When the source cannot be asked, nothing is created
  (``SourceUnreachable``): the guard refuses rather than guesses;
- a scratch database is named ``drillbook_scratch_<drill>_<run>_<nonce>``
  (sanitised to ``[a-z0-9_]``, at most 63 bytes, unique per call) and is
  registered in ``drillbook.scratch_databases`` (see ``scratch_registry``); a
  database is dropped only when its name has the prefix AND a registry row
  names it by oid and name: a ``COMMENT`` or a prefix alone proves nothing;
- teardown works for a non-superuser CREATEDB role: it forbids new
  connections, terminates only sessions of its own role, then runs a plain
  ``DROP DATABASE`` (which stops autovacuum workers itself, where ``WITH
  (FORCE)`` would need pg_signal_backend), retrying for ``DROP_RETRY_S``;
- every connection the guard opens after the check must reach the server it
  checked (same identity and database), so a multi-host or load-balanced DSN
  cannot pass the check on one server and write on another;
- every refusal raises ``ScratchUnsafe`` before any statement runs; the drill
  turns it into ``SCRATCH_UNSAFE`` (verdict ERROR).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drillbook.drills.backup_restore import scratch_registry as registry
from drillbook.drills.backup_restore.server_identity import ServerIdentity, server_identity
from drillbook.errors import ScratchUnsafe
from drillbook.resources import pg

PREFIX = "drillbook_scratch_"
MARKER = registry.LEGACY_MARKER  # the human-readable COMMENT; never trusted
MAX_NAME_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1
_STAMP_RE = re.compile(r"(\d{4})-?(\d\d)-?(\d\d)[T ](\d\d):?(\d\d):?(\d\d)")


def _sanitise(text: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", text.lower())).strip("_")


def scratch_name(drill: str, run_id: str, *, nonce: str | None = None) -> str:
    """``drillbook_scratch_<drill>_<run>_<hash>_<nonce>`` within 63 bytes; the nonce makes it unique."""
    nonce = nonce or secrets.token_hex(3)
    drill_part = _sanitise(drill)[:24] or "drill"
    run_hash = hashlib.sha1(run_id.encode()).hexdigest()[:6]  # noqa: S324 - a name, not security
    room = MAX_NAME_BYTES - len(PREFIX) - len(drill_part) - len(run_hash) - len(nonce) - 3
    # Run ids are long (``scheduled__2026-01-01T03:30:00.123+00:00``): keep the run type
    # and the timestamp to the second when they fit; the hash tells runs apart anyway.
    stamp = _STAMP_RE.search(run_id)
    if stamp:
        when = "".join(stamp.groups()[:3]) + "t" + "".join(stamp.groups()[3:])
        kind = _sanitise(run_id.split("__", 1)[0]) if "__" in run_id else ""
        candidates = [f"{kind}_{when}" if kind else when, when]
    else:
        candidates = [_sanitise(run_id)]
    run_part = next(
        (c for c in candidates if 0 < len(c) < room), candidates[-1][: max(room - 1, 0)].strip("_")
    )
    parts = [drill_part, run_part, run_hash, nonce] if run_part else [drill_part, run_hash, nonce]
    return (PREFIX + "_".join(parts))[:MAX_NAME_BYTES]


DROP_RETRY_S = 30.0
log = logging.getLogger(__name__)


class SourceUnreachable(ScratchUnsafe):
    """The source server could not be asked who it is, so the guard cannot tell it from scratch."""


@dataclass(frozen=True)
class ScratchInfo:
    name: str
    drill: str | None
    run_id: str | None
    created_at: datetime | None
    marked: bool  # registered in the scratch registry under this oid and name


class ScratchGuard:
    """Creates, drops and reaps scratch databases on one server, refusing anything unsafe.

    ``scratch_dsn`` points at the scratch server's maintenance database (usually
    ``postgres``); the registry lives there. ``source_dsn`` is the source the
    drill reads, if it has one. Nothing connects until a method is called.
    ``close()`` releases the locks this guard holds on databases in use.
    """

    def __init__(self, *, scratch_dsn: str, source_dsn: str | None = None):
        self.scratch_dsn = scratch_dsn
        self.source_dsn = source_dsn
        self._source: ServerIdentity | None = None
        self._scratch: ServerIdentity | None = None
        self._holder: Any = None  # the session whose advisory locks say "in use"
        self._held: set[str] = set()

    # -- refusals ------------------------------------------------------------------
    def _identities(self) -> tuple[ServerIdentity, ServerIdentity | None]:
        if self._scratch is None:
            with self._admin() as conn:
                self._scratch = server_identity(conn)
        if self.source_dsn and self._source is None:
            try:
                with pg.connect(self.source_dsn, autocommit=True) as conn:
                    self._source = server_identity(conn)
            except Exception as exc:
                if not type(exc).__module__.startswith("psycopg"):
                    raise
                raise SourceUnreachable(
                    f"cannot ask the source {pg.describe(self.source_dsn)!r} which server it is ({exc}); refusing to "
                    "create anything until the guard can tell it from the scratch server (a drill that restores "
                    "a stored backup needs no source: remove `source` to run it while the source is down)"
                ) from None
        return self._scratch, self._source

    def check_server(self) -> None:
        """Refuse when the scratch connection reaches the source database, however it is spelt."""
        scratch, source = self._identities()
        if source is not None and scratch.same_server(source) and scratch.database == source.database:
            raise ScratchUnsafe(
                f"scratch connection {pg.describe(self.scratch_dsn)!r} reaches the source database "
                f"{source.database!r} on the source server (same system_identifier and start time as "
                f"{pg.describe(self.source_dsn or '')!r}): refusing to create or drop anything there; "
                "point the scratch connection at another server, or at its maintenance database"
            )

    def _check_target(self, name: str, *, action: str) -> None:
        self.check_server()
        if not name.startswith(PREFIX) or len(name.encode()) > MAX_NAME_BYTES:
            raise ScratchUnsafe(
                f"refusing to {action} database {name!r}: its name does not start with {PREFIX!r}"
            )
        scratch, source = self._identities()
        if source is not None and scratch.same_server(source) and name == source.database:
            raise ScratchUnsafe(f"refusing to {action} database {name!r}: it is the source database")

    # -- connections and locks -----------------------------------------------------
    def _admin(self):  # type: ignore[no-untyped-def]
        conn = pg.connect(self.scratch_dsn, autocommit=True)
        if self._scratch is not None:
            # A multi-host DSN (load_balance_hosts=random, a failover list) or a DNS name that moved can
            # reach another server than the one the guard checked: every connection must be that server.
            try:
                now = server_identity(conn)
            except BaseException:
                conn.close()
                raise
            if not (now.same_server(self._scratch) and now.database == self._scratch.database):
                conn.close()
                raise ScratchUnsafe(
                    f"the scratch connection {pg.describe(self.scratch_dsn)!r} reached another server (or database) "
                    "than the one the guard checked (a multi-host DSN, load balancing or a DNS change); refusing "
                    "to create, drop or register anything: give the scratch connection exactly one server"
                )
        return conn

    def _registry(self):  # type: ignore[no-untyped-def]
        conn = self._admin()
        try:
            registry.ensure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _hold(self, name: str) -> None:
        """Hold ``name``'s in-use lock until ``close()`` (or until this process dies)."""
        if name in self._held:
            return
        if self._holder is None or self._holder.closed:
            self._holder = self._admin()
        if not registry.lock(self._holder, name):
            raise ScratchUnsafe(f"scratch database {name!r} is in use by another run (its lock is held)")
        self._held.add(name)

    def _release(self, name: str) -> None:
        if name in self._held and self._holder is not None and not self._holder.closed:
            try:
                registry.unlock(self._holder, name)
            except Exception as exc:  # the lock goes with the session anyway
                log.debug("unlock of %s failed: %s", name, exc)
        self._held.discard(name)

    def close(self) -> None:
        """Release every in-use lock (closing the session releases them all)."""
        if self._holder is not None:
            self._holder.close()
        self._holder = None
        self._held.clear()

    # -- operations ----------------------------------------------------------------
    def create(self, *, drill: str, run_id: str, now: datetime | None = None, hold: bool = True) -> str:
        """Create, register and (with ``hold``) lock a new scratch database; return its name.

        ``hold=False`` is the Airflow setup task's: the database is handed over to
        the work task, which adopts (and locks) it.
        """
        name = scratch_name(drill, run_id)
        self._check_target(name, action="create")
        created_at = now or datetime.now(UTC)
        marker = MARKER + json.dumps(
            {"drill": drill, "run_id": run_id[:120], "created_at": created_at.isoformat()}, sort_keys=True
        )
        with self._registry() as conn:
            if hold:
                self._hold(name)
            registry.register_pending(
                conn, name=name, drill=drill, run_id=run_id, created_at=created_at, held=hold
            )
            try:
                # template0: a restore must start from an empty database, not whatever template1 holds.
                conn.execute(f"CREATE DATABASE {pg.quote_ident(name)} TEMPLATE template0")
            except Exception:
                registry.forget(conn, name)
                self._release(name)
                raise
            registry.bind_oid(conn, name)
            # for people reading \l+; the guard trusts only the registry row
            conn.execute(f"COMMENT ON DATABASE {pg.quote_ident(name)} IS {_literal(marker)}")
        return name

    def adopt(self, name: str) -> ScratchInfo:
        """Take over a database created by ``create(hold=False)``: it must be registered; lock it."""
        self._check_target(name, action="use")
        info = self.inspect(name)
        if info is None or not info.marked:
            raise ScratchUnsafe(
                f"scratch database {name!r} does not exist or is not in drillbook's scratch registry"
            )
        self._hold(name)
        return info

    def inspect(self, name: str) -> ScratchInfo | None:
        """The registry entry of database ``name`` (``marked=False`` when unregistered), or None when it does not exist."""
        with self._registry() as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
            if exists is None:
                return None
            e = registry.entry(conn, name)
        if e is None:
            return ScratchInfo(name=name, drill=None, run_id=None, created_at=None, marked=False)
        return ScratchInfo(name=name, drill=e.drill, run_id=e.run_id, created_at=e.created_at, marked=True)

    def list_scratch(self) -> list[ScratchInfo]:
        """Every database on the scratch server whose name has the scratch prefix."""
        with self._admin() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "select datname from pg_database where starts_with(datname, %s) order by datname",
                    (PREFIX,),
                ).fetchall()
            ]
        return [info for n in names if (info := self.inspect(n)) is not None]

    def is_empty(self, name: str) -> bool:
        """True when database ``name`` holds no user relation (a fresh scratch database)."""
        with pg.connect(pg.with_dbname(self.scratch_dsn, name), autocommit=True) as conn:
            row = conn.execute(
                "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'"
            ).fetchone()
        return bool(row) and int(row[0]) == 0

    def reset(self, name: str) -> None:
        """Drop and re-create a registered scratch database under the same name (a retried task restores afresh)."""
        self._check_target(name, action="reset")
        info = self.inspect(name)
        if info is None or not info.marked:
            raise ScratchUnsafe(f"refusing to reset database {name!r}: drillbook did not create it")
        with self._registry() as conn:
            marker = conn.execute(
                "select shobj_description(oid, 'pg_database') from pg_database where datname = %s", (name,)
            ).fetchone()[0]
            self._drop_now(conn, name)
            conn.execute(f"CREATE DATABASE {pg.quote_ident(name)} TEMPLATE template0")
            registry.bind_oid(conn, name)
            if marker:
                conn.execute(f"COMMENT ON DATABASE {pg.quote_ident(name)} IS {_literal(marker)}")

    def drop(self, name: str) -> bool:
        """Drop a scratch database drillbook registered; False when it was already gone."""
        self._check_target(name, action="drop")
        info = self.inspect(name)
        if info is None:
            with self._registry() as conn:
                registry.forget(conn, name)
            self._release(name)
            return False
        if not info.marked:
            raise ScratchUnsafe(
                f"refusing to drop database {name!r}: it has the scratch prefix but no row in drillbook's scratch "
                "registry, so drillbook did not create it (a COMMENT marker alone can be forged); drop it by hand "
                "if it is really disposable"
            )
        with self._registry() as conn:
            self._drop_now(conn, name)
            registry.forget(conn, name)
        self._release(name)
        return True

    def _drop_now(self, conn: Any, name: str) -> None:
        """Drop ``name`` as its owner: no new connections, end our own sessions, plain DROP, bounded retries."""
        import psycopg

        ident = pg.quote_ident(name)
        # The owner may do both; a superuser's other sessions then cannot reconnect either.
        conn.execute(f"ALTER DATABASE {ident} ALLOW_CONNECTIONS false")
        conn.execute(f"ALTER DATABASE {ident} CONNECTION LIMIT 0")
        deadline = time.monotonic() + DROP_RETRY_S  # read at call time: a test shortens it
        delay = 0.1
        while True:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s "
                "and usename = current_user and pid <> pg_backend_pid()",
                (name,),
            )
            try:
                # no FORCE: DROP DATABASE itself stops autovacuum workers in it and waits up to 5 s
                # for other sessions; FORCE would need pg_signal_backend to stop a worker
                conn.execute(f"DROP DATABASE IF EXISTS {ident}")
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def reap(
        self, *, drill: str | None, max_age: float, all_drills: bool = False, now: datetime | None = None
    ) -> registry.ReapReport:
        """Drop leftovers: registered, unlocked databases of ``drill`` (or, with ``all_drills``, any past ``max_age``)."""
        now = now or datetime.now(UTC)
        self.check_server()
        report = registry.ReapReport()
        with self._registry() as conn:
            report.migrated, report.unregistered = registry.migrate_legacy(conn, PREFIX)
            for name, exists in registry.candidates(
                conn, drill=drill, max_age=max_age, all_drills=all_drills, now=now
            ):
                if name in self._held or not registry.lock(conn, name):
                    report.in_use.append(name)
                    continue
                try:
                    if not exists:
                        registry.forget(conn, name)  # the row of a database dropped by hand
                    elif registry.entry(conn, name) is None:
                        report.unregistered.append(name)  # the name was taken over by another database
                    else:
                        self._check_target(name, action="reap")
                        self._drop_now(conn, name)
                        registry.forget(conn, name)
                        report.dropped.append(name)
                except Exception as exc:
                    report.failed[name] = f"{type(exc).__name__}: {exc}"
                finally:
                    registry.unlock(conn, name)
        return report


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
