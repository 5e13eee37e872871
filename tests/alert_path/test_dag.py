"""End to end through Airflow: dag.test() maps one task per path and writes one ledger row each."""

from __future__ import annotations

import json
import textwrap

import pytest

from drillbook.resources.pg import airflow_connection_json
from tests.alert_path.conftest import closed_port

PATH_TOKEN = "dagtest-path-T0ken-99887766554433"


@pytest.fixture
def alert_catalogue(tmp_path, monkeypatch, webhook, slack, ledger_dsn):

    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_LEDGER", airflow_connection_json(ledger_dsn))
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERT_HOOK",
        json.dumps({"conn_type": "http", "host": f"{webhook.origin}/hooks/{PATH_TOKEN}"}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEAD_HOOK",
        json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{closed_port()}/hooks/{PATH_TOKEN}"}),
    )
    catalogue = tmp_path / "drills.yaml"
    catalogue.write_text(
        textwrap.dedent("""
        version: 1
        defaults:
          retries: 0
        drills:
          - name: dag_alerts
            kind: alert_path
            schedule: "@daily"
            controls: ["SOC2:CC7.3"]
            objectives: {delivery: 2s, give_up: 3s}
            poll_interval: 0.2s
            paths:
              - {name: oncall, type: slack, channel: "#alerts"}
              - {name: hook, type: webhook, connection: alert_hook, readback_url: /readback}
              - {name: dead, type: webhook, connection: dead_hook}
    """)
    )
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(catalogue))
    return catalogue


@pytest.mark.airflow
def test_dag_maps_one_task_per_path_and_records_each(airflow_db, alert_catalogue, ledger_dsn, slack, webhook):
    from drillbook.airflow.factory import build_dags
    from drillbook.ledger.store import Ledger

    dags = build_dags("alert_path")
    dag = dags["dr_alert_path__dag_alerts"]
    assert dag.tags == ["drillbook", "alert_path"] or set(dag.tags) == {"drillbook", "alert_path"}
    run = dag.test()
    assert run.state == "failed"  # the dead path is ERROR, so its mapped task fails the run

    with Ledger(ledger_dsn) as ledger:
        records = [r for r in ledger.query(drill="dag_alerts") if r.record_type == "drill"]
        assert ledger.verify().ok
    by_index = {r.map_index: r for r in records}
    assert sorted(by_index) == [0, 1, 2]
    assert {i: (r.target, r.verdict) for i, r in by_index.items()} == {
        0: ("oncall", "PASS"),
        1: ("hook", "PASS"),
        2: ("dead", "ERROR"),
    }
    assert all(r.dag_id == "dr_alert_path__dag_alerts" and r.task_id == "prove_path" for r in records)
    hook = by_index[1].result["details"]["delivery"]
    assert (
        hook["seen_via"] == "read-back" and hook["latency_seconds"] is not None and hook["http_status"] == 202
    )
    assert by_index[2].result["findings"][0]["code"] == "ALERT_PATH_UNREACHABLE"
    # the canary really went through the emulator and the receiver
    assert any("drillbook test alert" in m.text for m in slack.posted("#alerts"))
    [post] = webhook.posts()
    # the canary links back to the run that sent it: the Airflow task log, not a fixed project URL
    assert "dr_alert_path__dag_alerts" in post.body["run"] and post.body["run"].startswith("http"), post.body[
        "run"
    ]
    rows = json.dumps([r.result for r in records])
    assert PATH_TOKEN not in rows and slack.token not in rows
