"""Test harness: real PostgreSQL, moto's server, a Slack emulator and Airflow's metadata DB.

Airflow reads its configuration at import time, so the environment for it is
set here, at the top of the root conftest, before any test imports Airflow.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# pgserver logs from an atexit hook after pytest closed its streams ("--- Logging error ---")
logging.getLogger("pgserver").setLevel(logging.WARNING)

REPO = Path(__file__).resolve().parents[1]

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="drillbook-test-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.setdefault("DRILLBOOK_OUTBOX", str(_AIRFLOW_HOME / "outbox.jsonl"))
# Fake AWS credentials: every AWS call in tests goes to moto on 127.0.0.1.
for _key, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_key] = _value
os.environ.pop("AWS_PROFILE", None)
# Any AWS client built without an explicit endpoint goes to a dead loopback port, never to
# the internet; the ``aws`` fixture points it at moto instead.
os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"


# --- PostgreSQL ----------------------------------------------------------------------
@dataclass
class PgServer:
    """A real PostgreSQL server for tests, with tools of a matching or newer major version."""

    admin_dsn: str
    bin_dir: str

    def dsn(self, dbname: str) -> str:
        from drillbook.resources.pg import with_dbname

        return with_dbname(self.admin_dsn, dbname)

    def execute(self, dbname: str, sql: str, params: tuple | None = None) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.execute("postgres", f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def databases(self, prefix: str = "") -> list[str]:
        rows = self.execute(
            "postgres", "select datname from pg_database where datname like %s", (prefix + "%",)
        )
        return [r[0] for r in rows]


def _pgserver_bin() -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH)


def _client_bin_for(dsn: str) -> str:
    """The client tools' directory for the server at ``dsn``: pg_dump of its own major, as an operator would
    use (pgserver's 16 against the machine's 15 writes a 16 dump, which a drill rightly restores into 16 and
    flags SERVER_MAJOR_MISMATCH); pgserver's when no tools of that major are installed."""
    import psycopg

    from drillbook.drills.backup_restore import tools

    with psycopg.connect(dsn, connect_timeout=10) as conn:
        major = conn.info.server_version // 10000
    for tool in tools.available("pg_dump"):
        if tool.major == major:
            return str(Path(tool.path).parent)
    return _pgserver_bin()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """DRILLBOOK_TEST_PG_DSN when set (a superuser DSN), else an embedded pgserver."""
    dsn = os.environ.get("DRILLBOOK_TEST_PG_DSN")
    if dsn:
        yield PgServer(admin_dsn=dsn, bin_dir=os.environ.get("DRILLBOOK_TEST_PG_BIN") or _client_bin_for(dsn))
        return
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="drillbook-test-pg-"))
    server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield PgServer(admin_dsn=server.get_uri("postgres"), bin_dir=_pgserver_bin())
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def fresh_db(pg: PgServer) -> Iterator[str]:
    """A new empty database on the test server; yields its DSN and drops it afterwards."""
    name = pg.create_database("fresh")
    try:
        yield pg.dsn(name)
    finally:
        pg.drop_database(name)


@pytest.fixture
def ledger_dsn(pg: PgServer) -> Iterator[str]:
    """A new database holding an initialised evidence ledger."""
    name = pg.create_database("ledger")
    dsn = pg.dsn(name)
    from drillbook.ledger.store import Ledger

    Ledger(dsn).init_schema()
    try:
        yield dsn
    finally:
        pg.drop_database(name)


# --- AWS through moto's server -------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _host, port = server.get_host_and_port()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Fresh moto state, and the ``aws_default`` connection pointing at it; yields the endpoint URL."""
    import urllib.request

    urllib.request.urlopen(
        urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10
    ).read()
    conn = {"conn_type": "aws", "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    yield moto_endpoint


@pytest.fixture
def boto(aws: str):
    """Factory of boto3 clients bound to the moto server."""
    import boto3

    def make(service: str, region: str = "us-east-1"):
        return boto3.client(service, endpoint_url=aws, region_name=region)

    return make


# --- Slack -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def _slack_server():
    from tests.support.slack_emulator import SlackEmulator

    emulator = SlackEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture
def slack(_slack_server, monkeypatch: pytest.MonkeyPatch):
    """The Slack emulator (state reset), with the ``drillbook_slack`` connection pointing at it."""
    _slack_server.reset()
    conn = {
        "conn_type": "slack",
        "password": _slack_server.token,
        "extra": {"base_url": _slack_server.base_url, "timeout": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_SLACK", json.dumps(conn))
    return _slack_server


# --- Airflow ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite) in a temporary AIRFLOW_HOME."""
    from airflow.utils import db

    db.initdb()
    return _AIRFLOW_HOME


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)
