"""The scratch guard: the one place a drill creates or drops a database.

Rules this module enforces (principle 2, never write to a source):
- a scratch database is named ``drillbook_scratch_<drill>_<run>_<nonce>``
  (sanitised to ``[a-z0-9_]``, at most 63 bytes, unique per call) and carries a
  marker, ``COMMENT ON DATABASE ... IS 'drillbook:scratch:v1 {json}'``, written
  right after it is created;
- a database is dropped only when its name has the prefix AND it carries the
  marker: a database drillbook did not create is never dropped;
- nothing is created or dropped when the scratch server and database equal the
  source's (compared by ``drillbook.pg.server_identity`` and database name), or
  when the target database is the source database itself;
- every refusal raises ``ScratchUnsafe`` before any statement runs; the drill
  turns it into ``SCRATCH_UNSAFE`` (verdict ERROR);
- the reaper drops marked scratch databases older than ``max_age`` (left by a
  killed worker), judged by the creation time in the marker.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from drillbook import pg
from drillbook.errors import ScratchUnsafe

PREFIX = "drillbook_scratch_"
MARKER = "drillbook:scratch:v1 "
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
    run_part = next((c for c in candidates if 0 < len(c) < room), candidates[-1][: max(room - 1, 0)].strip("_"))
    parts = [drill_part, run_part, run_hash, nonce] if run_part else [drill_part, run_hash, nonce]
    return (PREFIX + "_".join(parts))[:MAX_NAME_BYTES]


@dataclass(frozen=True)
class ScratchInfo:
    name: str
    drill: str | None
    run_id: str | None
    created_at: datetime | None
    marked: bool


class ScratchGuard:
    """Creates, drops and reaps scratch databases on one server, refusing anything unsafe.

    ``scratch_dsn`` points at the scratch server's maintenance database (usually
    ``postgres``); ``source_dsn`` is the source the drill reads, if it has one.
    Nothing connects until a method is called.
    """

    def __init__(self, *, scratch_dsn: str, source_dsn: str | None = None):
        self.scratch_dsn = scratch_dsn
        self.source_dsn = source_dsn

    # -- refusals ------------------------------------------------------------------
    def _source_key(self) -> tuple[tuple[str, str], str] | None:
        if not self.source_dsn:
            return None
        return pg.server_identity(self.source_dsn), pg.parse(self.source_dsn).get("dbname", "")

    def check_server(self) -> None:
        """Refuse when the scratch connection is the source connection (same server and database)."""
        source = self._source_key()
        if source is None:
            return
        scratch = (pg.server_identity(self.scratch_dsn), pg.parse(self.scratch_dsn).get("dbname", ""))
        if scratch == source:
            raise ScratchUnsafe(
                f"scratch connection {pg.describe(self.scratch_dsn)!r} is the source database "
                f"{pg.describe(self.source_dsn or '')!r}: refusing to create or drop anything there; "
                "point the scratch connection at another server or database"
            )

    def _check_target(self, name: str, *, action: str) -> None:
        self.check_server()
        if not name.startswith(PREFIX) or len(name.encode()) > MAX_NAME_BYTES:
            raise ScratchUnsafe(f"refusing to {action} database {name!r}: its name does not start with {PREFIX!r}")
        source = self._source_key()
        if source is not None and source == (pg.server_identity(self.scratch_dsn), name):
            raise ScratchUnsafe(f"refusing to {action} database {name!r}: it is the source database")

    # -- operations ----------------------------------------------------------------
    def _admin(self):  # type: ignore[no-untyped-def]
        return pg.connect(self.scratch_dsn, autocommit=True)

    def create(self, *, drill: str, run_id: str, now: datetime | None = None) -> str:
        """Create a new marked scratch database and return its name."""
        name = scratch_name(drill, run_id)
        self._check_target(name, action="create")
        marker = MARKER + json.dumps(
            {"drill": drill, "run_id": run_id[:120], "created_at": (now or datetime.now(UTC)).isoformat()},
            sort_keys=True,
        )
        with self._admin() as conn:
            # template0: a restore must start from an empty database, not whatever template1 holds.
            conn.execute(f"CREATE DATABASE {pg.quote_ident(name)} TEMPLATE template0")
            conn.execute(f"COMMENT ON DATABASE {pg.quote_ident(name)} IS {_literal(marker)}")
        return name

    def inspect(self, name: str) -> ScratchInfo | None:
        """The marker of database ``name``, or None when it does not exist."""
        with self._admin() as conn:
            row = conn.execute(
                "select d.datname, shobj_description(d.oid, 'pg_database') from pg_database d where d.datname = %s",
                (name,),
            ).fetchone()
        return None if row is None else _info(row[0], row[1])

    def list_scratch(self) -> list[ScratchInfo]:
        """Every database on the scratch server whose name has the scratch prefix."""
        with self._admin() as conn:
            rows = conn.execute(
                "select d.datname, shobj_description(d.oid, 'pg_database') from pg_database d "
                "where starts_with(d.datname, %s) order by d.datname",
                (PREFIX,),
            ).fetchall()
        return [_info(n, c) for n, c in rows]

    def is_empty(self, name: str) -> bool:
        """True when database ``name`` holds no user relation (a fresh scratch database)."""
        with pg.connect(pg.with_dbname(self.scratch_dsn, name), autocommit=True) as conn:
            row = conn.execute(
                "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'"
            ).fetchone()
        return bool(row) and int(row[0]) == 0

    def reset(self, name: str) -> None:
        """Drop and re-create a marked scratch database under the same name (a retried task restores afresh)."""
        self._check_target(name, action="reset")
        info = self.inspect(name)
        if info is None or not info.marked:
            raise ScratchUnsafe(f"refusing to reset database {name!r}: drillbook did not create it")
        with self._admin() as conn:
            marker = conn.execute(
                "select shobj_description(oid, 'pg_database') from pg_database where datname = %s", (name,)
            ).fetchone()[0]
            conn.execute(f"DROP DATABASE IF EXISTS {pg.quote_ident(name)} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {pg.quote_ident(name)} TEMPLATE template0")
            conn.execute(f"COMMENT ON DATABASE {pg.quote_ident(name)} IS {_literal(marker)}")

    def drop(self, name: str) -> bool:
        """Drop a scratch database drillbook created; False when it was already gone."""
        self._check_target(name, action="drop")
        info = self.inspect(name)
        if info is None:
            return False
        if not info.marked:
            raise ScratchUnsafe(
                f"refusing to drop database {name!r}: it has the scratch prefix but no drillbook marker, "
                "so drillbook did not create it; drop it by hand if it is really disposable"
            )
        with self._admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {pg.quote_ident(name)} WITH (FORCE)")
        return True

    def reap(self, *, max_age: float, now: datetime | None = None) -> list[str]:
        """Drop marked scratch databases created more than ``max_age`` seconds ago; return their names."""
        now = now or datetime.now(UTC)
        self.check_server()
        dropped: list[str] = []
        for info in self.list_scratch():
            if not info.marked or info.created_at is None:
                continue  # not ours, or a marker we cannot date: leave it for a human
            if (now - info.created_at).total_seconds() <= max_age:
                continue
            if self.drop(info.name):
                dropped.append(info.name)
        return dropped


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _info(name: str, comment: str | None) -> ScratchInfo:
    if not comment or not comment.startswith(MARKER):
        return ScratchInfo(name=name, drill=None, run_id=None, created_at=None, marked=False)
    try:
        data = json.loads(comment[len(MARKER):])
        created = datetime.fromisoformat(data["created_at"])
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
    except (ValueError, KeyError, TypeError):
        return ScratchInfo(name=name, drill=None, run_id=None, created_at=None, marked=True)
    return ScratchInfo(name=name, drill=data.get("drill"), run_id=data.get("run_id"), created_at=created, marked=True)
