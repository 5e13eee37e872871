"""Ledger test helpers: build real DrillResults, open the ledger, tamper as a superuser."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from drillbook.drills.base import ResultBuilder
from drillbook.ledger.store import Ledger
from drillbook.result import DrillResult
from drillbook.run.context import RunContext


def make_result(
    *,
    drill: str = "orders_nightly",
    kind: str = "backup_restore",
    controls: tuple[str, ...] = ("SOC2:A1.2", "NIST:CP-9(1)"),
    fail: bool = False,
    target: str = "postgresql://orders@db.internal:5432/orders",
) -> DrillResult:
    """A real result assembled the way drills assemble them (verdict derived by the builder)."""
    builder = ResultBuilder(
        kind=kind, drill=drill, target=target, controls=list(controls), objectives={"rto": 900.0}
    )
    with builder.phase("restore") as ph:
        ph.detail = "restored 12 tables"
        builder.checked(3)
    builder.measurements.rto_seconds = 12.5
    builder.measurements.counts["tables"] = 12
    if fail:
        builder.find(
            "RTO_EXCEEDED", "restore took 1200 s, objective 900 s", subject="orders", detail={"rto": 1200.0}
        )
    return builder.finish()


def ctx(
    run: str = "scheduled__2026-01-01T00:00:00+00:00",
    *,
    task: str = "drill",
    map_index: int = -1,
    try_number: int = 1,
    dag: str = "dr_backup_restore__orders_nightly",
) -> RunContext:
    return RunContext(dag_id=dag, run_id=run, task_id=task, map_index=map_index, try_number=try_number)


@pytest.fixture
def ledger(ledger_dsn: str) -> Iterator[Ledger]:
    with Ledger(ledger_dsn) as handle:
        yield handle


def fill(ledger: Ledger, n: int, *, drill: str = "orders_nightly", **kwargs) -> list:
    """Append ``n`` drill records with distinct run ids."""
    return [ledger.record(make_result(drill=drill, **kwargs), ctx(f"run_{drill}_{i}")) for i in range(n)]


def tamper(dsn: str, *statements: str, how: str = "replica") -> None:
    """Run statements as a superuser with the append-only guard bypassed (what an insider could do)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if how == "replica":
            conn.execute("SET session_replication_role = replica")
            for sql in statements:
                conn.execute(sql)
        else:
            with conn.transaction():
                conn.execute("ALTER TABLE drillbook_evidence DISABLE TRIGGER USER")
                for sql in statements:
                    conn.execute(sql)
                conn.execute("ALTER TABLE drillbook_evidence ENABLE TRIGGER USER")


@pytest.fixture(autouse=True)
def _private_spool(tmp_path, monkeypatch):
    """Each test gets its own evidence spool, so nothing one test spooled is replayed by another."""
    monkeypatch.setenv("DRILLBOOK_SPOOL", str(tmp_path / "evidence-spool.jsonl"))
    monkeypatch.delenv("DRILLBOOK_CHECKPOINT_KEY", raising=False)
    monkeypatch.delenv("DRILLBOOK_CHECKPOINT_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("DRILLBOOK_CHECKPOINT_PATH", raising=False)


@pytest.fixture
def writer_dsn(ledger, ledger_dsn, pg):
    """The documented least-privilege writer: SELECT + INSERT only."""
    role = f"drillbook_writer_{uuid.uuid4().hex[:8]}"
    dbname = psycopg.conninfo.conninfo_to_dict(ledger_dsn)["dbname"]
    with psycopg.connect(ledger_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'writer-pw-123'")
        admin.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO {role}')
        admin.execute(f"GRANT SELECT, INSERT ON drillbook_evidence, drillbook_checkpoint TO {role}")
        admin.execute(f"GRANT SELECT ON drillbook_schema_version TO {role}")
    yield make_conninfo(ledger_dsn, user=role, password="writer-pw-123")
    with psycopg.connect(ledger_dsn, autocommit=True) as admin:
        admin.execute(f"DROP OWNED BY {role}")
    pg.execute("postgres", f"DROP ROLE IF EXISTS {role}")
