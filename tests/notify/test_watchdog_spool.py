"""The hourly watchdog replays the evidence spool before it judges, so a spooled result is not a missed drill.

A drill ran while the ledger was down; its result waits in the worker's spool. Drills run daily or
weekly, so "the next append" may be days away: the watchdog, which runs every hour on the same
workers, must put the spooled record into the ledger *before* it reads the histories, or it pages
DRILL_MISSED for a drill that ran and passed.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.ledger.spool import EvidenceSpool, SpoolEntry
from drillbook.ledger.store import Ledger
from drillbook.notify import Notifier
from drillbook.notify.outbox import OutboxSender
from drillbook.reporting.watchdog import run_watchdog
from drillbook.settings import load_settings  # the test is the entry point: its settings passed down
from tests.notify.conftest import make_ctx, make_result


def _watch(catalogue, ledger, tmp_path, now):
    from datetime import timedelta

    notifier = Notifier(
        catalogue=catalogue, sender=OutboxSender(path=tmp_path / "outbox.jsonl"), ledger=ledger
    )
    ctx = make_ctx(dag_id="dr_watchdog", run_id="scheduled__watchdog_1", task_id="watchdog")
    # the drill appeared long ago: its first-appearance grace (watchdog.py) is over, so an empty history is missed
    seen = {d.name: now - timedelta(days=30) for d in catalogue.drills}
    return run_watchdog(catalogue, ledger=ledger, notifier=notifier, ctx=ctx, now=now, seen_since=seen)


def _result(now):
    return make_result("PASS", drill="api_certs", started=now).model_copy(update={"finished_at": now})


def test_a_spooled_pass_is_in_the_ledger_before_the_watchdog_judges(catalogue, ledger_dsn, tmp_path):
    now = datetime.now(UTC)
    spool = EvidenceSpool(tmp_path / "evidence-spool.jsonl")
    ledger = Ledger(ledger_dsn, spool=spool)
    ctx = make_ctx(dag_id="dr_certificates__api_certs", run_id="scheduled__api_1", task_id="check")
    # what Ledger.record leaves behind when the ledger was down (same ledger, same spelling)
    spool.append(
        SpoolEntry(
            record_type="drill",
            ctx=dataclasses.asdict(ctx),
            ledger=ledger.where,
            result=_result(now).to_json_dict(),
            reason="AdminShutdown",
        )
    )
    run = _watch(catalogue, ledger, tmp_path, now)
    codes = [i.code for i in run.incidents["api_certs"]]
    assert "DRILL_MISSED" not in codes and "DRILL_STALE" not in codes, codes
    assert [r.run_id for r in ledger.query(drill="api_certs", record_type="drill")] == ["scheduled__api_1"]
    assert not spool.read().pending


def test_without_the_spooled_record_the_same_drill_is_missed(catalogue, ledger_dsn, tmp_path):
    """The healthy control: the check above can fail (an empty history is a missed drill)."""
    now = datetime.now(UTC)
    ledger = Ledger(ledger_dsn, spool=EvidenceSpool(tmp_path / "evidence-spool.jsonl"))
    run = _watch(catalogue, ledger, tmp_path, now)
    assert "DRILL_MISSED" in [i.code for i in run.incidents["api_certs"]]


def test_the_digest_counts_a_spooled_run(catalogue, ledger_dsn, tmp_path):
    from datetime import timedelta

    from drillbook.reporting.digest import run_digest

    now = datetime.now(UTC)
    spool = EvidenceSpool(tmp_path / "evidence-spool.jsonl")
    ledger = Ledger(ledger_dsn, spool=spool)
    ctx = make_ctx(dag_id="dr_certificates__web_certs", run_id="scheduled__web_1", task_id="check")
    result = make_result("PASS", drill="web_certs", started=now - timedelta(seconds=3))
    spool.append(
        SpoolEntry(
            record_type="drill",
            ctx=dataclasses.asdict(ctx),
            ledger=ledger.where,
            result=result.to_json_dict(),
            reason="AdminShutdown",
        )
    )
    notifier = Notifier(
        catalogue=catalogue, sender=OutboxSender(path=tmp_path / "outbox.jsonl"), ledger=ledger
    )
    card = run_digest(
        catalogue,
        ledger=ledger,
        notifier=notifier,
        schedule="@daily",
        now=now + timedelta(seconds=1),
        ctx=make_ctx(dag_id="dr_digest__daily", run_id="scheduled__d1", task_id="digest"),
        checkpoints=CheckpointSettings.from_settings(load_settings()),
    )
    web = next(d for d in card.drills if d.drill == "web_certs")
    assert (web.runs, web.passes) == (1, 1)
