"""Evidence first, then notify, and a retry reports what the ledger holds (drillbook.run.pipeline)."""

from __future__ import annotations

import json

import pytest

from drillbook.catalogue.models import Catalogue
from drillbook.drills.base import ResultBuilder
from drillbook.run.context import RunContext


def _result(code: str | None):
    b = ResultBuilder(kind="data_quality", drill="orders_dq", target="public.orders")
    b.checked()
    if code:
        b.find(code, "x")
    return b.finish()


class SlackDown:
    def notify(self, result, record, ctx):
        raise RuntimeError("slack 500")


def test_evidence_is_written_even_when_notify_fails(ledger_dsn):
    from drillbook.ledger.store import Ledger
    from drillbook.run.pipeline import record_and_report

    ledger = Ledger(ledger_dsn)
    ctx = RunContext(dag_id="dr_data_quality__orders_dq", run_id="r1", task_id="validate")
    with pytest.raises(RuntimeError):
        record_and_report(_result("DQ_EXPECTATION_FAILED"), ctx=ctx, ledger=ledger, notifier=SlackDown())
    rows = ledger.query()
    assert [r.record_type for r in rows] == ["drill", "notification"]
    assert rows[0].verdict == "FAIL" and rows[1].result["findings"][0]["code"] == "NOTIFY_FAILED"


def test_a_retry_reports_and_judges_the_recorded_result_not_the_rerun(ledger_dsn, tmp_path):
    """Try 1: FAIL recorded, Slack down. Try 2 re-runs the drill and gets PASS: the FAIL is still what is told."""
    from drillbook.ledger.store import Ledger
    from drillbook.notify.notifier import build_notifier
    from drillbook.run.pipeline import record_and_report

    ledger = Ledger(ledger_dsn)
    ctx1 = RunContext(
        dag_id="dr_data_quality__orders_dq", run_id="scheduled__1", task_id="validate", try_number=1
    )
    with pytest.raises(RuntimeError):
        record_and_report(_result("DQ_EXPECTATION_FAILED"), ctx=ctx1, ledger=ledger, notifier=SlackDown())
    ctx2 = RunContext(dag_id=ctx1.dag_id, run_id=ctx1.run_id, task_id=ctx1.task_id, try_number=2)
    outbox = tmp_path / "outbox.jsonl"
    notifier = build_notifier(catalogue=Catalogue(), ledger=ledger, outbox=str(outbox))
    reported = record_and_report(_result(None), ctx=ctx2, ledger=ledger, notifier=notifier)
    assert reported.record.created is False and reported.record.verdict == "FAIL"
    assert reported.result.verdict.value == "FAIL"
    posted = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert posted and "FAIL" in json.dumps(posted[0])
    assert len(ledger.query(record_type="drill")) == 1


def test_a_fresh_attempt_reports_its_own_result(ledger_dsn):
    from drillbook.ledger.store import Ledger
    from drillbook.run.pipeline import record_and_report

    ctx = RunContext(dag_id="dr_data_quality__orders_dq", run_id="r2", task_id="validate")
    reported = record_and_report(_result(None), ctx=ctx, ledger=Ledger(ledger_dsn), notifier=None)
    assert reported.record.created is True and reported.result.verdict.value == "PASS"
