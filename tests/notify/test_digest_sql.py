"""The digest's numbers come from one SQL aggregate (issue 14); they must equal the Python rule exactly.

``aggregate_records`` is the rule written over records in hand (the pure scorecard tests use it);
``aggregate_sql`` is what ``run_digest`` runs. On a real ledger with several drills, a mapped run with one
bad target, an even number of RTO values (median between two), info findings, objectives in both spellings
and a drill outside the catalogue, both must give the same aggregate for every drill.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drillbook.findings import finding
from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.ledger.store import Ledger
from drillbook.reporting.aggregate import DrillAggregate, aggregate_records, aggregate_sql
from drillbook.settings import load_settings  # the test is the entry point: its settings passed down
from tests.notify.conftest import make_ctx, make_result


@pytest.fixture
def filled(ledger_dsn):
    ledger = Ledger(ledger_dsn)
    now = datetime.now(UTC)

    def put(verdict, drill, run, *, rto=None, rpo=None, objectives=None, map_index=-1, findings=None):
        ledger.record(
            make_result(
                verdict, drill=drill, started=now, rto=rto, rpo=rpo, objectives=objectives, findings=findings
            ),
            make_ctx(dag_id=f"dr_certificates__{drill}", run_id=run, map_index=map_index),
        )

    put("PASS", "api_certs", "r1", rto=200.0, objectives={"rto_seconds": 900.0})
    put("FAIL", "api_certs", "r2", rto=1300.0, rpo=60.0, objectives={"rto": 800.0})
    put("PASS", "api_certs", "r3", rto=300.0, map_index=0)
    put("ERROR", "api_certs", "r3", rto=250.0, map_index=1)  # one bad target: the run is ERROR
    put(
        "PASS",
        "web_certs",
        "w1",
        rto=10.0,
        findings=[finding("CERT_EXPIRING", "info only", subject="a", severity="info")],
    )
    put("FAIL", "web_certs", "w2")
    put("PASS", "web_certs", "w3", rpo=5.5)
    put("FAIL", "not_in_catalogue", "x1", rto=1.0)
    yield ledger, now
    ledger.close()


@pytest.mark.parametrize("columns", [True, False], ids=["v6-columns", "json-text"])
def test_sql_aggregate_equals_the_python_rule(filled, columns):
    """Both SQL forms: schema v6's generated columns, and the JSON text a ledger before v6 is read from."""
    ledger, now = filled
    drills = ["api_certs", "web_certs", "quiet_certs", "loud_certs"]
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    in_python = aggregate_records(ledger.query(), drills=drills, start=start, end=end)
    in_sql = aggregate_sql(ledger.connection, drills=drills, start=start, end=end, columns=columns)
    assert in_sql == in_python
    assert in_sql["api_certs"] == DrillAggregate(
        runs=3,
        passes=1,
        failed=2,
        newest_verdict="ERROR",
        open_findings=["CERT_UNREADABLE"],
        rto=(1300.0, 275.0),
        rto_objective=800.0,
        rpo=(60.0, 60.0),
        rpo_objective=None,
    )
    assert (in_sql["web_certs"].runs, in_sql["web_certs"].passes, in_sql["web_certs"].newest_verdict) == (
        3,
        2,
        "PASS",
    )
    assert "quiet_certs" not in in_sql and "not_in_catalogue" not in in_sql


def test_sql_aggregate_honours_the_period(filled):
    ledger, now = filled
    later = now + timedelta(hours=2)
    assert (
        aggregate_sql(ledger.connection, drills=["api_certs"], start=later, end=later + timedelta(hours=1))
        == {}
    )


def test_daily_digest_verifies_incrementally_and_weekly_in_full(catalogue, ledger_dsn, tmp_path, monkeypatch):
    """Documented trade-off: an edit older than the newest trusted checkpoint is not seen by the daily digest
    (it walks from the checkpoint), and is seen by the weekly digest (``evidence verify --full``)."""
    import psycopg
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from drillbook.ledger.checkpoint import CheckpointSettings
    from drillbook.notify import notifier_from_env
    from drillbook.reporting.digest import run_digest

    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK", raising=False)
    monkeypatch.setenv("DRILLBOOK_OUTBOX", str(tmp_path / "outbox.jsonl"))
    settings = CheckpointSettings(private_key=Ed25519PrivateKey.generate().private_bytes_raw().hex())
    ledger = Ledger(ledger_dsn)
    now = datetime.now(UTC)
    for run in ("a", "b"):
        ledger.record(make_result("PASS", drill="web_certs", started=now), make_ctx(run_id=run))
    ledger.checkpoint(source="digest:daily", settings=settings)
    ledger.record(make_result("PASS", drill="web_certs", started=now), make_ctx(run_id="c"))
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE drillbook_evidence SET verdict = 'FAIL' WHERE seq = 1")
    notifier = notifier_from_env(catalogue, ledger=ledger, outbox=load_settings().outbox)
    later = now + timedelta(seconds=5)
    daily = run_digest(
        catalogue,
        ledger=ledger,
        notifier=notifier,
        ctx=make_ctx(dag_id="dr_digest__daily", run_id="d1", task_id="digest"),
        schedule="@daily",
        now=later,
        checkpoints=settings,
    )
    assert daily.ledger_ok is True and "(incremental)" in daily.ledger_summary
    weekly = run_digest(
        catalogue,
        ledger=ledger,
        notifier=notifier,
        ctx=make_ctx(dag_id="dr_digest__weekly", run_id="w1", task_id="digest"),
        schedule="@weekly",
        now=later,
        checkpoints=settings,
    )
    assert (
        weekly.ledger_ok is False and "LEDGER DOES NOT VERIFY: record seq 1 edited" in weekly.ledger_summary
    )
    ledger.close()


def test_a_control_that_missed_expected_runs_is_an_exception_not_verified(
    catalogue, ledger_dsn, tmp_path, monkeypatch
):
    """The "VERIFIED 1/19 runs" rule: api_certs is hourly; one passing run in a day is 1 of ~23 due."""
    from drillbook.notify import notifier_from_env
    from drillbook.reporting.digest import run_digest

    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK", raising=False)
    monkeypatch.setenv("DRILLBOOK_OUTBOX", str(tmp_path / "outbox.jsonl"))
    ledger = Ledger(ledger_dsn)
    now = datetime.now(UTC)
    ledger.record(
        make_result("PASS", drill="api_certs", started=now),
        make_ctx(dag_id="dr_certificates__api_certs", run_id="only"),
    )
    half_a_day_ago = now - timedelta(
        hours=12
    )  # a daily cron that fired 12 h ago: the period is 12 h, at any hour
    card = run_digest(
        catalogue,
        ledger=ledger,
        notifier=notifier_from_env(catalogue, ledger=ledger, outbox=load_settings().outbox),
        ctx=make_ctx(dag_id="dr_digest__custom", run_id="d1", task_id="digest"),
        schedule=f"{half_a_day_ago.minute} {half_a_day_ago.hour} * * *",
        now=now + timedelta(seconds=1),
        checkpoints=CheckpointSettings.from_settings(load_settings()),
    )
    iso = next(c for c in card.controls if c.control == "ISO27001:A.8.24")
    assert (iso.status, iso.runs, iso.passes) == ("EXCEPTIONS", 1, 1) and iso.expected > 1
    assert (
        next(d for d in card.drills if d.drill == "api_certs").status == "EXCEPTIONS"
    )  # one rule for drills too
    assert "EXCEPTIONS" in (tmp_path / "outbox.jsonl").read_text()
    ledger.close()
