"""A first start is quiet and lossless.

- the watchdog gives a drill one full schedule interval plus the grace from its
  first appearance (the oldest ledger row naming it; the watchdog writes one the
  first time it meets a drill with none) before DRILL_MISSED, and pages after;
- a drill run that Airflow failed before the drill could record anything (the
  task never started on a worker, or died on one) gets an ERROR record in the
  ledger from the failure callback, with the cause, and the page carries it;
- a run that has its record already, or a DAG that is not a drill, gets none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from drillbook.catalogue import load_catalogue
from drillbook.ledger.store import Ledger
from drillbook.notify import Notifier, SlackSender
from drillbook.notify.slack import SlackConnection
from drillbook.reporting.watchdog import run_watchdog
from tests.notify.conftest import make_ctx

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "include" / "drills.yaml"


def watchdog_ctx(n: int):
    return make_ctx(dag_id="dr_watchdog", run_id=f"scheduled__first_start_{n}", task_id="watchdog")


def test_watchdog_waits_one_interval_plus_grace_from_first_appearance_then_pages(slack, ledger_dsn):
    catalogue = load_catalogue(CATALOGUE)
    names = sorted(d.name for d in catalogue.drills)
    notifier = Notifier(
        catalogue=catalogue,
        sender=SlackSender(connection=SlackConnection(token=slack.token, base_url=slack.base_url, timeout=5)),
    )
    ledger = Ledger(ledger_dsn)
    now = datetime.now(UTC)

    first = run_watchdog(catalogue, ledger=ledger, notifier=notifier, ctx=watchdog_ctx(1), now=now)
    assert all(v == [] for v in first.incidents.values()) and first.posted == 0
    assert slack.posted() == []
    seen = ledger.query(record_type="watchdog")
    assert sorted(r.drill for r in seen) == names and all(r.codes == [] for r in seen)  # first appearances

    # within the hourly drill's interval plus grace (1h + 1h): still quiet, nothing new written
    within = run_watchdog(
        catalogue, ledger=ledger, notifier=notifier, ctx=watchdog_ctx(2), now=now + timedelta(minutes=119)
    )
    assert all(v == [] for v in within.incidents.values())
    assert len(ledger.query(record_type="watchdog")) == len(names)

    # past it, the hourly drill that never ran is missed; the daily and weekday drills are not due yet
    hourly = run_watchdog(
        catalogue, ledger=ledger, notifier=notifier, ctx=watchdog_ctx(3), now=now + timedelta(minutes=121)
    )
    assert {k for k, v in hourly.incidents.items() if v} == {"shop_orders_quality"}

    # four days on, nothing has run: every drill is missed and on-call is paged
    late = run_watchdog(
        catalogue, ledger=ledger, notifier=notifier, ctx=watchdog_ctx(4), now=now + timedelta(days=4)
    )
    assert {k: [i.code for i in v] for k, v in late.incidents.items()} == {n: ["DRILL_MISSED"] for n in names}
    assert any("DRILL_MISSED" in m.text for m in slack.posted("#dr-oncall"))
    assert ledger.verify().ok


@pytest.fixture
def callback_env(slack, ledger_dsn, monkeypatch, tmp_path):
    from drillbook.resources.pg import airflow_connection_json

    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_LEDGER", airflow_connection_json(ledger_dsn))
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(CATALOGUE))
    monkeypatch.setenv("DRILLBOOK_OUTBOX", str(tmp_path / "outbox.jsonl"))
    return slack


def failed_ti(**overrides):
    """The task instance Airflow's dag-processor puts in a DAG failure callback's context (``last_ti``)."""
    fields = {
        "dag_id": "dr_backup_restore__shop_nightly",
        "task_id": "restore_and_verify",
        "run_id": "scheduled__2026-11-30T03:30:00+00:00",
        "try_number": 1,
        "map_index": -1,
        "hostname": None,
    }
    return SimpleNamespace(**{**fields, **overrides})


def test_a_task_that_never_started_leaves_an_error_record_with_its_cause_and_the_page_says_it(
    callback_env, ledger_dsn
):
    from drillbook.airflow.notify import on_failure_callback

    slack = callback_env
    ti = failed_ti()
    on_failure_callback({"ti": ti, "run_id": ti.run_id, "reason": "task_failure"})
    [record] = Ledger(ledger_dsn).query(record_type="drill")
    assert (record.dag_id, record.run_id, record.task_id, record.drill, record.kind) == (
        ti.dag_id,
        ti.run_id,
        "restore_and_verify",
        "shop_nightly",
        "backup_restore",
    )
    assert record.verdict == "ERROR" and record.codes == ["DRILL_NOT_RUN"]
    message = record.result["findings"][0]["message"]
    assert (
        "never started on a worker" in message
        and "execution_api_server_url" in message
        and "task_failure" in message
    )
    [page] = slack.posted("#dr-oncall")
    assert "task restore_and_verify failed" in page.text
    assert "never started on a worker" in str(page.blocks)  # the cause, not a bare 'task_failure'

    # the same run's callback again (a retry of the callback): no second record, no second page
    on_failure_callback({"ti": ti, "run_id": ti.run_id, "reason": "task_failure"})
    assert len(Ledger(ledger_dsn).query(record_type="drill")) == 1
    assert len(slack.posted("#dr-oncall")) == 1


def test_a_task_killed_on_a_worker_names_the_worker(callback_env, ledger_dsn):
    from drillbook.airflow.notify import on_failure_callback

    ti = failed_ti(hostname="airflow-worker", try_number=2, run_id="manual__killed")
    on_failure_callback({"ti": ti, "run_id": ti.run_id, "reason": "task_failure"})
    [record] = Ledger(ledger_dsn).query(record_type="drill")
    message = record.result["findings"][0]["message"]
    assert "started on 'airflow-worker'" in message and "(try 2)" in message


def test_no_record_for_a_run_that_has_one_or_a_dag_that_is_not_a_drill(callback_env, ledger_dsn):
    from drillbook.airflow.notify import on_failure_callback
    from tests.notify.conftest import make_result

    slack = callback_env
    ledger = Ledger(ledger_dsn)
    ti = failed_ti(run_id="scheduled__recorded")
    ledger.record(
        make_result("FAIL", drill="shop_nightly", kind="backup_restore", started=datetime.now(UTC)),
        make_ctx(dag_id=ti.dag_id, run_id=ti.run_id, task_id="restore_and_verify"),
    )
    on_failure_callback({"ti": ti, "run_id": ti.run_id, "reason": "task_failure"})
    watchdog_ti = failed_ti(dag_id="dr_watchdog", task_id="watchdog", run_id="scheduled__wd")
    on_failure_callback({"ti": watchdog_ti, "run_id": watchdog_ti.run_id, "reason": "task_failure"})
    assert [(r.run_id, r.codes) for r in ledger.query(record_type="drill")] == [
        ("scheduled__recorded", make_result("FAIL").codes())
    ]
    assert any(
        "dr_watchdog" in m.text for m in slack.posted()
    )  # the non-drill DAG still pages, without a drill record


def write_task_log(folder: Path, ti, lines: list[dict]) -> Path:
    import json

    path = (
        folder
        / f"dag_id={ti.dag_id}"
        / f"run_id={ti.run_id}"
        / f"task_id={ti.task_id}"
        / f"attempt={ti.try_number}.log"
    )
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json {\n")
    return path


def test_the_cause_quotes_the_task_logs_errors_such_as_an_import_error_on_the_worker(
    callback_env, ledger_dsn, tmp_path, monkeypatch
):
    from drillbook.airflow.notify import on_failure_callback

    logs = tmp_path / "logs"
    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(logs))
    ti = failed_ti(hostname="airflow-worker", run_id="manual__import_error")
    write_task_log(
        logs,
        ti,
        [
            {"level": "info", "event": "Filling up the DagBag"},
            {"level": "error", "event": "Failed to import: /opt/airflow/dags/dr_backup_restore.py"},
            {
                "level": "error",
                "event": "Error loading DAG from dr_backup_restore.py: catalogue has 1 problem:\n  drills.yaml:4: unknown kind",
            },
            {"level": "error", "event": "Dag not found during start up"},
            {"level": "error", "event": "a third error is not quoted"},
        ],
    )
    on_failure_callback({"ti": ti, "run_id": ti.run_id, "reason": "task_failure"})
    [record] = Ledger(ledger_dsn).query(record_type="drill")
    message = record.result["findings"][0]["message"]
    assert (
        "its task log says: Error loading DAG from dr_backup_restore.py: catalogue has 1 problem: drills.yaml:4: unknown kind"
        in message
    )
    assert (
        "Dag not found during start up" in message
        and "third error" not in message
        and "Failed to import" not in message
    )
    assert "unknown kind" in str(callback_env.posted("#dr-oncall")[0].blocks)


def test_a_log_without_errors_points_at_a_killed_process_and_no_log_gives_the_plain_cause(
    callback_env, ledger_dsn, tmp_path, monkeypatch
):
    from drillbook.airflow.notify import on_failure_callback

    logs = tmp_path / "logs"
    monkeypatch.setenv("AIRFLOW__LOGGING__BASE_LOG_FOLDER", str(logs))
    quiet = failed_ti(hostname="airflow-worker", run_id="manual__quiet")
    write_task_log(
        logs, quiet, [{"level": "info", "event": "phase restore ok"}, {"level": "warning", "event": "slow"}]
    )
    on_failure_callback({"ti": quiet, "run_id": quiet.run_id, "reason": "task_failure"})
    missing = failed_ti(hostname="airflow-worker", run_id="manual__no_log")
    on_failure_callback({"ti": missing, "run_id": missing.run_id, "reason": "task_failure"})
    messages = {
        r.run_id: r.result["findings"][0]["message"] for r in Ledger(ledger_dsn).query(record_type="drill")
    }
    assert len(messages) == 2 and all(
        "task log says" not in m and "started on 'airflow-worker'" in m for m in messages.values()
    )
    assert "ends without an error" in messages["manual__quiet"] and "heartbeat" in messages["manual__quiet"]
    assert "ends without an error" not in messages["manual__no_log"]
