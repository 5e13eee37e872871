"""Evidence-page fixtures: a real ledger with a few drills (one with hostile names), and a SELECT-only reader."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from drillbook.drills.base import ResultBuilder
from drillbook.ledger.store import Ledger
from drillbook.run.context import RunContext

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@dataclass
class Seeded:
    dsn: str  # superuser DSN of the ledger database
    reader_dsn: str  # SELECT-only role: what the pages run with
    seqs: dict[str, list[int]]  # drill -> seqs in order


def record(
    ledger: Ledger,
    *,
    drill: str,
    kind: str = "backup_restore",
    controls: tuple[str, ...] = ("SOC2:A1.2",),
    rto: float = 40.0,
    fail: bool = False,
    message: str = "restore took 1200 s, objective 900 s",
    pg_version: str = "16.2",
    run: str,
) -> int:
    builder = ResultBuilder(
        kind=kind,
        drill=drill,
        target=f"postgresql://db.internal/{drill}",
        controls=list(controls),
        objectives={"rto_seconds": 900.0, "rpo_seconds": 3600.0},
    )
    for name in ("locate", "fetch", "restore", "verify"):
        with builder.phase(name) as ph:
            ph.detail = f"{name} ok"
            builder.checked()
    builder.measurements.rto_seconds = rto
    builder.measurements.rpo_seconds = 1800.0
    builder.environment.update({"server_version": pg_version, "pg_restore": pg_version})
    if fail:
        builder.find("RTO_EXCEEDED", message, subject=drill)
    ctx = RunContext(dag_id=f"dr_{kind}__{drill}", run_id=run, task_id="drill", map_index=-1, try_number=1)
    return ledger.record(builder.finish(), ctx).seq


@contextmanager
def seed_ledger(pg) -> Iterator[Seeded]:
    """A new ledger database with six records (one hostile drill) and a checkpoint, plus a SELECT-only role."""
    from drillbook.ledger.store import Ledger as _Ledger

    name = pg.create_database("ledger_web")
    dsn = pg.dsn(name)
    role = f"drillbook_reader_{uuid.uuid4().hex[:8]}"
    try:
        seqs: dict[str, list[int]] = {}
        with _Ledger(dsn) as ledger:
            ledger.init_schema()
            for i in range(3):
                seqs.setdefault("orders_nightly", []).append(
                    record(ledger, drill="orders_nightly", run=f"r{i}", rto=30.0 + i)
                )
            seqs["orders_nightly"].append(
                record(ledger, drill="orders_nightly", run="r3", fail=True, rto=1200.0, pg_version="16.4")
            )
            seqs[HOSTILE] = [
                record(ledger, drill=HOSTILE, run="h0", controls=(HOSTILE,), fail=True, message=HOSTILE)
            ]
            seqs["api_certs"] = [
                record(
                    ledger, drill="api_certs", kind="certificates", controls=("ISO27001:A.5.30",), run="c0"
                )
            ]
            ledger.checkpoint(source="test")
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw-123'")
            admin.execute(f'GRANT CONNECT ON DATABASE "{name}" TO {role}')
            admin.execute(
                f"GRANT SELECT ON drillbook_evidence, drillbook_checkpoint, drillbook_schema_version TO {role}"
            )
        yield Seeded(dsn, make_conninfo(dsn, user=role, password="reader-pw-123"), seqs)
    finally:
        pg.drop_database(name)
        pg.execute("postgres", f"DROP ROLE IF EXISTS {role}")


@contextmanager
def ledger_writer(pg, seeded: Seeded) -> Iterator[str]:
    """A role with the workers' grants (docs/ledger.md: SELECT and INSERT), as a DSN: the verify button's writer."""
    role = f"drillbook_writer_{uuid.uuid4().hex[:8]}"
    dbname = psycopg.conninfo.conninfo_to_dict(seeded.dsn)["dbname"]
    with psycopg.connect(seeded.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'writer-pw-456'")
        admin.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO {role}')
        admin.execute(f"GRANT SELECT, INSERT ON drillbook_evidence, drillbook_checkpoint TO {role}")
        admin.execute(f"GRANT SELECT ON drillbook_schema_version TO {role}")
    try:
        yield make_conninfo(seeded.dsn, user=role, password="writer-pw-456")
    finally:
        with psycopg.connect(seeded.dsn, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
        pg.execute("postgres", f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def seeded(pg, tmp_path, monkeypatch) -> Iterator[Seeded]:
    monkeypatch.setenv("DRILLBOOK_SPOOL", str(tmp_path / "spool.jsonl"))
    for key in ("DRILLBOOK_CHECKPOINT_KEY", "DRILLBOOK_CHECKPOINT_PUBLIC_KEY", "DRILLBOOK_CHECKPOINT_PATH"):
        monkeypatch.delenv(key, raising=False)
    with seed_ledger(pg) as seeded:
        yield seeded
