"""Evidence-view helpers: a ledger whose rows carry chosen times, chained and sealed exactly as the database seals them.

The database stamps ``recorded_at`` with its own clock, so a history months long is written the way
bench/ledger.py writes one: as a superuser with the append-only trigger bypassed (replica role), each
row's seq, prev_hash and hash computed with ``drillbook.ledger.canonical`` — the chain verifies.
"""

from __future__ import annotations

from datetime import datetime

import psycopg
import pytest

from drillbook.catalogue.models import Catalogue
from drillbook.drills.base import ResultBuilder
from drillbook.ledger.canonical import COLUMNS, GENESIS_HASH, canonical_json, normalise, record_hash


def result_doc(
    *, drill: str, kind: str, verdict: str, controls: list[str], target: str, rto: float | None = 30.0
) -> dict:
    """A real DrillResult document, built the way drills build them."""
    b = ResultBuilder(kind=kind, drill=drill, target=target, controls=controls, objectives={"rto": 900.0})
    with b.phase("restore"):
        b.checked(1)
    b.measurements.rto_seconds = rto
    if verdict == "FAIL":
        b.find("RTO_EXCEEDED", "restore took 1200 s, objective 900 s", subject=target)
    elif verdict == "ERROR":
        b.find("CONNECTION_MISSING", "connection drillbook_source is not defined", subject=target)
    if verdict == "SKIPPED":
        from drillbook.result import Verdict

        result = b.finish(verdict=Verdict.SKIPPED)
    else:
        result = b.finish()
    assert result.verdict.value == verdict, (result.verdict, verdict)
    return normalise(result.to_json_dict())


class History:
    """Append sealed rows with chosen times to one ledger database."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT seq, hash FROM drillbook_evidence ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        self.seq, self.prev = (row[0], row[1]) if row else (0, GENESIS_HASH)

    def add(
        self,
        at: datetime,
        *,
        drill: str = "nightly",
        kind: str = "backup_restore",
        verdict: str = "PASS",
        controls: tuple[str, ...] = ("SOC2:A1.2",),
        target: str = "backups/shop",
        run_id: str | None = None,
        record_type: str = "drill",
        task_id: str = "drill",
        map_index: int = -1,
    ) -> dict:
        self.seq += 1
        fields = {
            "seq": self.seq,
            "recorded_at": at,
            "record_type": record_type,
            "kind": kind,
            "drill": drill,
            "target": target,
            "verdict": verdict,
            "controls": list(controls),
            "dag_id": f"dr_{kind}__{drill}",
            "run_id": run_id or f"scheduled__{at.isoformat()}",
            "task_id": task_id,
            "map_index": map_index,
            "try_number": 1,
            "trigger": "scheduled",
            "result": canonical_json(
                result_doc(drill=drill, kind=kind, verdict=verdict, controls=list(controls), target=target)
            ),
            "prev_hash": self.prev,
        }
        fields["hash"] = record_hash(fields)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(
                f"INSERT INTO drillbook_evidence ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                [fields[c] for c in COLUMNS],
            )
        self.prev = fields["hash"]
        return fields


@pytest.fixture
def history(ledger_dsn) -> History:
    return History(ledger_dsn)


def catalogue(*drills: dict, timezone: str = "UTC") -> Catalogue:
    return Catalogue.model_validate(
        {"defaults": {"timezone": timezone, "watchdog": {"grace": "1h"}}, "drills": list(drills)}
    )


def backup_drill(
    name: str = "nightly", schedule: str = "30 3 * * *", controls=("SOC2:A1.2",), **extra
) -> dict:
    return {
        "name": name,
        "kind": "backup_restore",
        "schedule": schedule,
        "controls": list(controls),
        "source": {"connection": "drillbook_source"},
        "backup": {"location": "backups/shop", "pattern": "*.dump"},
        "scratch": {"connection": "drillbook_scratch"},
        "objectives": {"rto": "15m", "rpo": "26h"},
        **extra,
    }
