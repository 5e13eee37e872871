"""The deployment's outside world on loopback: PostgreSQL 15 (metadata DB, ledger, source), Redis, the demo environment.

The metadata DB, the ledger and the source are fresh databases (and one fresh
role) on the machine's PostgreSQL at 127.0.0.1:5432, all dropped afterwards;
the broker is one Redis database, flushed at start. Without them the tests
skip, except under CI=true, where a missing service is a failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_ADMIN = os.environ.get("DRILLBOOK_E2E_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DRILLBOOK_E2E_REDIS", "redis://127.0.0.1:6379/11")


def _unavailable(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not reachable; .ci/run must start it")
    pytest.skip(f"{what} is not reachable")


@dataclass
class Deployment:
    """Names and secrets of one deployment; ``dotenv`` is what its .env would hold."""

    suffix: str
    role: str
    password: str
    var: Path
    dotenv: dict[str, str] = field(default_factory=dict)

    @property
    def ledger_dsn(self) -> str:
        return f"postgresql://{self.role}:{self.password}@127.0.0.1:5432/{self.dotenv['LEDGER_DB_NAME']}"

    @property
    def source_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{self.role}_shop"


def admin_execute(sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def scratch_databases(role: str) -> list[str]:
    return [
        r[0]
        for r in admin_execute(
            "select d.datname from pg_database d join pg_roles r on r.oid = d.datdba "
            f"where r.rolname = '{role}' and d.datname like 'drillbook_scratch_%'"
        )
    ]


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """A private directory for a long-running stack, removed afterwards.

    Not pytest's tmp_path: on a machine where other pytest sessions run as the same
    user, each new session deletes all but the newest three /tmp/pytest-of-<user>
    directories, and a stack (or an embedded PostgreSQL) running for minutes lost
    its data directory that way.
    """
    path = Path(tempfile.mkdtemp(prefix="drillbook-e2e-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def redis_db() -> Iterator[int]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        _unavailable(f"Redis at {REDIS_URL}")
    db = int(REDIS_URL.rsplit("/", 1)[1])
    yield db
    client.flushdb()


@pytest.fixture
def deployment(work_dir: Path, redis_db: int) -> Iterator[Deployment]:
    """A fresh role and databases on PostgreSQL 15, the demo's source, backup and certificate; dropped afterwards."""
    try:
        admin_execute("select 1")
    except Exception:
        _unavailable(f"PostgreSQL at {PG_ADMIN}")
    with provisioned(work_dir, redis_db) as dep:
        yield dep


@contextlib.contextmanager
def provisioned(root: Path, redis_db: int) -> Iterator[Deployment]:
    """The deployment's databases, role, .env values and demo data (bench/celery_load.py uses this too)."""
    suffix = uuid.uuid4().hex[:8]
    role = f"dbk_e2e_{suffix}"
    password = secrets.token_urlsafe(16)
    var = root / "var"
    var.mkdir()
    dep = Deployment(suffix=suffix, role=role, password=password, var=var)
    dep.dotenv = {
        "AIRFLOW_DB_USER": role,
        "AIRFLOW_DB_PASSWORD": password,
        "AIRFLOW_DB_NAME": f"{role}_airflow",
        "AIRFLOW_REDIS_DB": str(redis_db),
        "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "LEDGER_DB_USER": role,
        "LEDGER_DB_PASSWORD": password,
        "LEDGER_DB_NAME": f"{role}_ledger",
        "AIRFLOW_CONN_DRILLBOOK_SOURCE": dep.source_dsn,
        # the scratch registry lives in the scratch connection's maintenance database and belongs to one role;
        # on a shared server (this machine's PostgreSQL 15) `postgres` may hold another role's, so use our own
        "SCRATCH_MAINT_DB": f"{role}_maint",
    }
    # superuser like compose's POSTGRES_USER (the official postgres image makes it one); dropped afterwards
    admin_execute(f"create role {role} login superuser password '{password}'")
    try:
        for db in (f"{role}_airflow", f"{role}_ledger", f"{role}_maint"):
            admin_execute(f"create database {db} owner {role}")
        admin_execute(f"create database {role}_shop")
        from scripts.demo import take_backup, write_demo_certificate

        from drillbook.sample.shop import seed_shop

        seed_shop(dep.source_dsn)
        take_backup(dep.source_dsn, var=var)
        write_demo_certificate(var=var)
        yield dep
    finally:
        for name in [
            r[0] for r in admin_execute(f"select datname from pg_database where datname like '{role}%'")
        ] + scratch_databases(role):
            admin_execute(f'drop database if exists "{name}" with (force)')
        admin_execute(f"drop role if exists {role}")
