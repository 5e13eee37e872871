"""The guard checks the server every scratch connection reaches, not only the first one.

A multi-host DSN with ``load_balance_hosts=random`` (libpq 16+), a DNS name that moves, or a failover
list can reach one server when the guard asks who it is and another when the registry is written and
the database created. Each connection the guard opens must be the server it checked.

The machine's PostgreSQL 15 plays the source (a database of its own, dropped afterwards); the
embedded server is the scratch server; the scratch DSN lists both.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from drillbook.drills.backup_restore.scratch import PREFIX, ScratchGuard
from drillbook.errors import ScratchUnsafe

PG15 = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
TRIALS = 24  # a wrong-server sequence has probability 1/4 per trial: missing it 24 times is 0.1 %


def _pg15_or_skip() -> None:
    try:
        with psycopg.connect(PG15, autocommit=True) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as exc:  # pragma: no cover - the CI machine has it
        pytest.skip(f"the machine's PostgreSQL 15 is not reachable: {exc}")


def test_a_load_balanced_scratch_dsn_never_writes_to_the_source(pg):
    _pg15_or_skip()
    name = f"rr_source_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG15, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    pg.execute("postgres", f"create database {name}")
    local = conninfo_to_dict(pg.admin_dsn)
    source = f"host=127.0.0.1 port=5432 user=postgres dbname={name} connect_timeout=5"
    scratch = (
        f"host={local['host']},127.0.0.1 port={local.get('port') or 5432},5432 "
        f"user={local.get('user') or 'postgres'} dbname={name} load_balance_hosts=random connect_timeout=5"
    )
    created: list[str] = []
    try:
        for _ in range(TRIALS):
            guard = ScratchGuard(scratch_dsn=scratch, source_dsn=source)
            try:
                created.append(guard.create(drill="rr_multihost", run_id="manual__1"))
            except ScratchUnsafe:
                pass  # refused: the guard saw (or caught) the source
            finally:
                guard.close()
            with psycopg.connect(source, autocommit=True) as conn:
                schema = conn.execute("select 1 from pg_namespace where nspname = 'drillbook'").fetchone()
                strays = conn.execute(
                    "select datname from pg_database where starts_with(datname, %s)",
                    (PREFIX + "rr_multihost",),
                ).fetchall()
            assert schema is None, "the scratch registry was created inside the source database"
            assert strays == [], f"scratch databases were created on the source server: {strays}"
    finally:
        with psycopg.connect(PG15, autocommit=True) as conn:
            for (db,) in conn.execute(
                "select datname from pg_database where starts_with(datname, %s)", (PREFIX + "rr_multihost",)
            ).fetchall():
                conn.execute(f'drop database "{db}" with (force)')
            conn.execute(f"drop database if exists {name} with (force)")
        for db in pg.databases(PREFIX + "rr_multihost"):
            pg.drop_database(db)
        pg.execute("postgres", f"drop database if exists {name} with (force)")
