"""``drillbook run alert-path``: one result per path, exit code = worst verdict, nothing secret printed."""

from __future__ import annotations

import json
import textwrap

import pytest

from drillbook.cli import main
from tests.alert_path.conftest import closed_port

PATH_TOKEN = "cli-path-T0ken-1122334455667788"


@pytest.fixture
def catalogue(tmp_path, monkeypatch, webhook, slack):
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERT_HOOK",
        json.dumps({"conn_type": "http", "host": f"{webhook.origin}/hooks/{PATH_TOKEN}"}),
    )
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_HOOK", f"http://127.0.0.1:{closed_port()}/hooks/{PATH_TOKEN}")
    monkeypatch.delenv("DRILLBOOK_LEDGER_DSN", raising=False)
    path = tmp_path / "drills.yaml"
    path.write_text(
        textwrap.dedent("""
        version: 1
        drills:
          - name: cli_alerts
            kind: alert_path
            schedule: "@daily"
            objectives: {delivery: 2s, give_up: 3s}
            poll_interval: 0.1s
            paths:
              - {name: oncall, type: slack, channel: "#dr-oncall"}
              - {name: hook, type: webhook, connection: alert_hook, readback_url: /readback}
              - {name: dead, type: webhook, connection: dead_hook}
          - name: cli_accept
            kind: alert_path
            schedule: "@daily"
            paths:
              - {name: accepted_only, type: webhook, connection: alert_hook}
          - name: not_alerts
            kind: certificates
            schedule: "@daily"
            files: [certs]
    """)
    )
    return path


def test_healthy_paths_exit_0_and_print_latency(catalogue, capsys, slack):
    code = main(
        [
            "run",
            "alert-path",
            "--drill",
            "cli_alerts",
            "--catalogue",
            str(catalogue),
            "--path",
            "oncall",
            "--path",
            "hook",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "alert path cli_alerts/oncall (slack)" in out and "alert path cli_alerts/hook (webhook)" in out
    assert "latency" in out and "PASS" in out
    assert PATH_TOKEN not in out and slack.token not in out


def test_acceptance_only_says_accepted_not_seen_without_latency(catalogue, capsys):
    code = main(["run", "alert-path", "--drill", "cli_accept", "--catalogue", str(catalogue)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "seen accepted, not seen · latency n/a" in out, out


def test_a_dead_path_makes_the_run_error_and_json_lists_every_path(catalogue, capsys, slack):
    code = main(["run", "alert-path", "--drill", "cli_alerts", "--catalogue", str(catalogue), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    results = json.loads(captured.out)
    assert [(r["target"], r["verdict"]) for r in results] == [
        ("oncall", "PASS"),
        ("hook", "PASS"),
        ("dead", "ERROR"),
    ]
    assert results[2]["details"]["delivery"]["destination"].endswith("/hooks/***")
    assert PATH_TOKEN not in captured.out + captured.err and slack.token not in captured.out + captured.err


def test_records_each_path_in_the_ledger_when_configured(catalogue, capsys, ledger_dsn):
    from drillbook.ledger.store import Ledger

    code = main(
        [
            "run",
            "alert-path",
            "--drill",
            "cli_alerts",
            "--catalogue",
            str(catalogue),
            "--path",
            "hook",
            "--ledger-dsn",
            ledger_dsn,
        ]
    )
    assert code == 0
    with Ledger(ledger_dsn) as ledger:
        [record] = [r for r in ledger.query(drill="cli_alerts") if r.record_type == "drill"]
    assert record.target == "hook" and record.trigger == "manual" and record.verdict == "PASS"
    assert PATH_TOKEN not in json.dumps(record.result)


def test_wrong_kind_and_unknown_path_are_clear_errors(catalogue, capsys):
    assert main(["run", "alert-path", "--drill", "not_alerts", "--catalogue", str(catalogue)]) == 2
    assert "is a certificates drill, not alert_path" in capsys.readouterr().err
    assert (
        main(["run", "alert-path", "--drill", "cli_alerts", "--catalogue", str(catalogue), "--path", "nope"])
        == 2
    )
    assert "has no path 'nope'" in capsys.readouterr().err
