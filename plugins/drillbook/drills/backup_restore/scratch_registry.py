"""The scratch registry: which scratch databases drillbook created, and which are still in use.

Rules this module enforces:
- a database is drillbook's only when a row of ``drillbook.scratch_databases``
  (on the scratch server's maintenance database) names it by oid AND name; the
  row is written by the drill itself, before and right after ``CREATE
  DATABASE``. A name prefix or a ``COMMENT`` can be written by anyone who can
  create databases; a row in a table only the scratch role owns cannot;
- the registry is trusted only when the schema and the table are owned by the
  role the drill connects as (a superuser too): a registry someone else created
  first could hold rows they wrote, so it is refused (``ScratchUnsafe``);
- a run holds a session advisory lock keyed by the database name on the
  maintenance database for as long as it uses its scratch database; the lock
  dies with the process (SIGKILL included), so "unlocked" means "nobody is
  using it";
- the reaper takes only registered, unlocked databases of its own drill (any
  age: max_active_runs 1 means an unlocked one is a leftover; a database the
  Airflow setup task created and handed over is spared for
  ``HANDOVER_GRACE_S``), or with ``all_drills`` any registered, unlocked one
  older than ``max_age``; a prefixed database without a row is reported,
  never dropped;
- migration from the v1 ``COMMENT`` marker: a database that carries it, has no
  row, and is owned by the scratch role itself (ownership cannot be given away
  by another non-superuser) is registered from its marker; any other is
  reported as unregistered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drillbook.errors import ScratchUnsafe

SCHEMA = "drillbook"
TABLE = f"{SCHEMA}.scratch_databases"
#: First key of the two-int advisory lock a run holds on its scratch database ("drll").
LOCK_CLASS = 0x6472_6C6C
#: A database created by an Airflow setup task is unlocked until the work task adopts it.
HANDOVER_GRACE_S = 600.0
LEGACY_MARKER = "drillbook:scratch:v1 "

_DDL = f"""
create schema if not exists {SCHEMA};
create table if not exists {TABLE} (
    datname name primary key,
    db_oid oid,
    drill text not null,
    run_id text not null,
    created_at timestamptz not null,
    registered_at timestamptz not null default clock_timestamp(),
    created_by name not null default current_user,
    held boolean not null default true,
    migrated boolean not null default false
);
revoke all on schema {SCHEMA} from public;
revoke all on {TABLE} from public;
"""


@dataclass(frozen=True)
class Entry:
    name: str
    oid: int | None
    drill: str
    run_id: str
    created_at: datetime
    held: bool


@dataclass
class ReapReport:
    """What one reaper pass did: dropped, left because in use or young, and refused as not ours."""

    dropped: list[str] = field(default_factory=list)
    in_use: list[str] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    migrated: list[str] = field(default_factory=list)


def ensure(conn: Any) -> None:
    """Create the registry when missing, then refuse it unless the current role owns it."""
    row = conn.execute(
        "select c.relowner = r.oid, n.nspowner = r.oid, "
        "pg_get_userbyid(c.relowner) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "join pg_roles r on r.rolname = current_user where n.nspname = %s and c.relname = 'scratch_databases'",
        (SCHEMA,),
    ).fetchone()
    if row is None:
        with conn.transaction():
            # 20 drills starting at once would race on "create schema if not exists"
            conn.execute("select pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
            try:
                conn.execute(_DDL)
            except Exception as exc:
                if type(exc).__name__ == "InsufficientPrivilege":
                    raise ScratchUnsafe(
                        f"cannot create the scratch registry {TABLE} on the scratch server's maintenance database: "
                        f"{exc}; grant the scratch role CREATE on that database (GRANT CREATE ON DATABASE ... TO ...), "
                        f"or create schema {SCHEMA!r} owned by it"
                    ) from None
                raise
        return
    table_ok, schema_ok, owner = row
    if not (table_ok and schema_ok):
        raise ScratchUnsafe(
            f"the scratch registry {TABLE} is owned by {owner!r}, not by the scratch role: its rows could be forged; "
            f"drop schema {SCHEMA!r} on the scratch server's maintenance database and let the scratch role create it"
        )


def lock(conn: Any, name: str, *, wait: bool = False) -> bool:
    """Take the session advisory lock of scratch database ``name`` on ``conn``; False when another session has it."""
    fn = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
    row = conn.execute(f"select {fn}(%s, hashtext(%s)) is not false", (LOCK_CLASS, name)).fetchone()
    return bool(row and row[0])


def unlock(conn: Any, name: str) -> None:
    conn.execute("select pg_advisory_unlock(%s, hashtext(%s))", (LOCK_CLASS, name))


def register_pending(
    conn: Any, *, name: str, drill: str, run_id: str, created_at: datetime, held: bool
) -> None:
    """Write the row before the database exists, so a kill between the two leaves a row, not a stray."""
    conn.execute(
        f"insert into {TABLE} (datname, drill, run_id, created_at, held) values (%s, %s, %s, %s, %s)",
        (name, drill, run_id[:200], created_at, held),
    )


def bind_oid(conn: Any, name: str) -> None:
    """Record the oid of the database just created under ``name`` (again after a reset)."""
    conn.execute(
        f"update {TABLE} r set db_oid = d.oid from pg_database d where d.datname = r.datname and r.datname = %s",
        (name,),
    )


def forget(conn: Any, name: str) -> None:
    conn.execute(f"delete from {TABLE} where datname = %s", (name,))


def entry(conn: Any, name: str) -> Entry | None:
    """The registry row of database ``name`` when it matches the database that exists now (oid and name)."""
    row = conn.execute(
        f"select r.datname, r.db_oid, r.drill, r.run_id, r.created_at, r.held from {TABLE} r "
        "join pg_database d on d.datname = r.datname "
        "where r.datname = %s and (d.oid = r.db_oid or (r.db_oid is null and d.datdba = "
        "(select oid from pg_roles where rolname = current_user)))",
        (name,),
    ).fetchone()
    return None if row is None else Entry(*row)


def _legacy_marker(comment: str | None) -> dict[str, Any] | None:
    if not comment or not comment.startswith(LEGACY_MARKER):
        return None
    try:
        data = json.loads(comment[len(LEGACY_MARKER) :])
        created = datetime.fromisoformat(data["created_at"])
    except (ValueError, KeyError, TypeError):
        return None
    data["created_at"] = created if created.tzinfo else created.replace(tzinfo=UTC)
    return data if isinstance(data.get("drill"), str) else None


def migrate_legacy(conn: Any, prefix: str) -> tuple[list[str], list[str]]:
    """Register v1-marked databases the scratch role owns; return (migrated, unregistered) names."""
    rows = conn.execute(
        f"select d.datname, shobj_description(d.oid, 'pg_database'), "
        "d.datdba = (select oid from pg_roles where rolname = current_user) "
        f"from pg_database d left join {TABLE} r on r.datname = d.datname "
        "where starts_with(d.datname, %s) and r.datname is null order by d.datname",
        (prefix,),
    ).fetchall()
    migrated: list[str] = []
    unregistered: list[str] = []
    for name, comment, owned in rows:
        marker = _legacy_marker(comment)
        if marker is None or not owned:
            unregistered.append(name)
            continue
        conn.execute(
            f"insert into {TABLE} (datname, db_oid, drill, run_id, created_at, held, migrated) "
            "select datname, oid, %s, %s, %s, false, true from pg_database where datname = %s on conflict do nothing",
            (marker["drill"], str(marker.get("run_id") or "")[:200], marker["created_at"], name),
        )
        migrated.append(name)
    return migrated, unregistered


def candidates(
    conn: Any, *, drill: str | None, max_age: float, all_drills: bool, now: datetime
) -> list[tuple[str, bool]]:
    """(name, exists) of the rows this reaper may take, judged by drill and age only (locks are checked later)."""
    rows = conn.execute(
        f"select r.datname, r.drill, r.created_at, r.held, d.oid is not null from {TABLE} r "
        "left join pg_database d on d.datname = r.datname order by r.created_at"
    ).fetchall()
    out: list[tuple[str, bool]] = []
    for name, row_drill, created_at, held, exists in rows:
        age = (now - created_at).total_seconds()
        if all_drills and age > max_age:
            out.append((name, exists))
        elif drill is not None and row_drill == drill and (held or age > min(HANDOVER_GRACE_S, max_age)):
            out.append((name, exists))
    return out
