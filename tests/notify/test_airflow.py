"""Through Airflow: dag.test() of dr_watchdog and dr_digest__daily, and the failure callback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import yaml

from drillbook.resources.pg import airflow_connection_json
from tests.notify.conftest import CATALOGUE, make_ctx, make_result


@pytest.fixture
def airflow_env(tmp_path, monkeypatch, slack, ledger_dsn):
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_LEDGER", airflow_connection_json(ledger_dsn))
    doc = json.loads(json.dumps(CATALOGUE))
    doc["defaults"]["retries"] = 0
    path = tmp_path / "drills.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(path))
    return path


def _dags(which):
    from drillbook.airflow.watchdog import build_watchdog_dags

    return build_watchdog_dags(which=which)


@pytest.mark.airflow
def test_dr_watchdog_end_to_end(airflow_db, airflow_env, slack, ledger_dsn):
    from drillbook.ledger.store import Ledger

    with Ledger(ledger_dsn) as ledger:
        ledger.record(
            make_result("PASS", drill="web_certs", started=datetime.now(UTC)), make_ctx(run_id="r-web")
        )
    dag = _dags("watchdog")["dr_watchdog"]
    assert set(dag.tags) == {"drillbook", "watchdog"}
    run = dag.test()
    assert run.state == "success"
    # a first start is quiet: the three drills that never ran appear for the first time, nobody is paged
    # (DRILL_MISSED after one interval plus grace: tests/notify/test_watchdog.py, tests/deploy/test_first_start.py)
    assert slack.posted("#dr-oncall") == [] and slack.posted("#alerts") == []
    with Ledger(ledger_dsn) as ledger:
        rows = ledger.query(record_type="watchdog")
        assert sorted(r.drill for r in rows) == [
            "api_certs",
            "loud_certs",
            "quiet_certs",
        ]  # their first appearance
        assert all(r.codes == [] for r in rows)
        assert {r.dag_id for r in rows} == {"dr_watchdog"} and {r.task_id for r in rows} == {"watchdog"}
        assert ledger.verify().ok


@pytest.mark.airflow
def test_dr_watchdog_resends_a_report_that_never_reached_slack(airflow_db, airflow_env, slack, ledger_dsn):
    from drillbook.errors import NotificationFailed
    from drillbook.ledger.store import Ledger
    from drillbook.notify.history import report_id_of

    with Ledger(ledger_dsn) as ledger:
        result, ctx = (
            make_result("FAIL", drill="web_certs", started=datetime.now(UTC)),
            make_ctx(run_id="r-web"),
        )
        record = ledger.record(result, ctx)
        ledger.record_notify_failure(result, ctx, error=NotificationFailed("Slack could not be reached"))
    for attempt in (1, 2):  # the second run finds it delivered and sends nothing
        assert _dags("watchdog")["dr_watchdog"].test().state == "success", attempt
        late = slack.with_marker(report_id_of(record), "#dr-oncall")
        assert len(late) == 1 and late[0].text.startswith("[late] FAIL: web_certs")
    with Ledger(ledger_dsn) as ledger:
        assert [r.codes for r in ledger.query(record_type="notification")] == [
            ["NOTIFY_FAILED"],
            ["NOTIFY_REDELIVERED"],
        ]


@pytest.mark.airflow
def test_dr_digest_daily_end_to_end(airflow_db, airflow_env, slack, ledger_dsn):
    dags = _dags("digest")
    assert set(dags) == {"dr_digest__daily", "dr_digest__weekly"}
    run = dags["dr_digest__daily"].test()
    assert run.state == "success"
    [posted] = slack.posted("#dr-digest")
    assert posted.text.startswith("drillbook daily scorecard") and "ledger verified" in posted.text


@pytest.mark.airflow
def test_a_crashed_task_pages_through_the_dag_failure_callback(airflow_db, airflow_env, slack, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DRILLBOOK_LEDGER",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 9,
                "login": "x",
                "password": "ledger-Secret-42",
                "schema": "nope",
            }
        ),
    )
    run = _dags("watchdog")["dr_watchdog"].test()
    assert run.state == "failed"
    [page] = slack.posted("#dr-oncall")
    assert page.text.startswith("ERROR: dr_watchdog task watchdog failed")
    assert "ledger-Secret-42" not in json.dumps(page.blocks) and slack.token not in json.dumps(page.blocks)
    assert any(
        b["type"] == "actions" and "/dags/dr_watchdog/runs/" in b["elements"][0]["url"] for b in page.blocks
    )


def test_failure_callback_reports_exception_try_and_log_and_skips_reported_drills(airflow_env, slack):
    from drillbook.airflow.notify import on_failure_callback
    from drillbook.airflow.runtime import DrillNotGreen

    ti = SimpleNamespace(
        dag_id="dr_certificates__web_certs",
        run_id="manual__1",
        task_id="check",
        try_number=3,
        log_url="http://airflow.example:8080/dags/dr_certificates__web_certs/runs/manual__1/tasks/check?try_number=3",
    )
    on_failure_callback({"ti": ti, "exception": RuntimeError("pg_restore: password=hunter2 & <boom>")})
    [page] = slack.posted("#dr-oncall")
    text = json.dumps(page.blocks)
    assert "hunter2" not in text and "&lt;boom&gt;" in text and "*Try*\\n3" in text and ti.log_url in text
    assert page.blocks[1]["text"]["text"].startswith(
        "<!subteam^S0ONCALL> *ERROR: the Airflow task check failed*"
    )
    on_failure_callback({"ti": ti, "exception": DrillNotGreen("verdict FAIL")})
    assert len(slack.posted("#dr-oncall")) == 1  # already reported by the drill: no second page


def test_dag_level_callback_skips_a_run_whose_verdict_was_delivered_and_pages_when_it_was_not(
    airflow_env, slack, ledger_dsn
):
    from drillbook.airflow.notify import on_failure_callback
    from drillbook.ledger.store import Ledger

    ctx = make_ctx(run_id="scheduled__2", task_id="check")
    ti = SimpleNamespace(dag_id=ctx.dag_id, run_id=ctx.run_id, task_id="check", try_number=1, log_url=None)
    result = make_result("FAIL")
    with Ledger(ledger_dsn) as ledger:
        ledger.record(result, ctx)
    on_failure_callback({"ti": ti, "reason": "task_failure"})  # DAG level: Airflow passes no exception
    assert slack.posted() == []
    with Ledger(ledger_dsn) as ledger:
        ledger.record_notify_failure(result, ctx, error=RuntimeError("slack down"))
    on_failure_callback({"ti": ti, "reason": "task_failure"})
    [page] = slack.posted("#dr-oncall")
    assert "task check failed" in page.text and "task_failure" in page.text


def test_failure_callback_never_raises(monkeypatch, slack, airflow_env, ledger_dsn):
    from drillbook.airflow.notify import on_failure_callback
    from drillbook.ledger.store import Ledger

    slack.fail("chat.postMessage", error="invalid_auth", times=5)
    on_failure_callback(
        {
            "ti": None,
            "dag": SimpleNamespace(dag_id="dr_certificates__web_certs"),
            "run_id": "r",
            "reason": "task_failure",
        }
    )
    # evidence first: the run that never started is recorded as ERROR before the page is tried
    with Ledger(ledger_dsn) as ledger:
        [record] = ledger.query(drill="web_certs")
    assert record.record_type == "drill" and record.result["verdict"] == "ERROR"
    assert [f["code"] for f in record.result["findings"]] == ["DRILL_NOT_RUN"]
    # the page was tried once (invalid_auth is not retried), nothing was posted, and the callback returned instead of raising
    assert [r["method"] for r in slack.state.requests] == ["chat.postMessage"]
    assert slack.posted() == []
