"""Negative drills (fire alarm checks): each kind turns red on the broken input drillbook makes, and pages.

Real parts: the pgserver for the backup and scratch, a real TLS listener with an
expired certificate, a closed loopback port, the Slack emulator behind the real
slack_sdk client, the real ledger, and one dag.test() of a dr_negative DAG.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from drillbook.catalogue import load_catalogue
from drillbook.drills import negative
from drillbook.notify.notifier import Notifier
from drillbook.notify.outbox import OutboxSender
from drillbook.notify.slack import SlackSender, connection_from_env
from drillbook.resources.pg import airflow_connection_json, tool_env
from drillbook.result import Verdict
from drillbook.run.context import RunContext


def _catalogue(tmp_path: Path, drills: list[dict[str, Any]]) -> Path:
    path = tmp_path / "drills.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "defaults": {"retries": 0}, "drills": drills}))
    return path


@pytest.fixture
def backup_dir(pg, tmp_path) -> Path:
    """A directory holding one healthy custom-format dump of a small database."""
    name = pg.create_database("neg_src")
    pg.execute(
        name,
        "create table t (id int primary key, v text); insert into t select g, repeat('x', 200) "
        "from generate_series(1, 20000) g",
    )
    out = tmp_path / "backups"
    out.mkdir()
    subprocess.run(
        [str(Path(pg.bin_dir) / "pg_dump"), "-Fc", "-f", str(out / "src.dump")],
        env=tool_env(pg.dsn(name)),
        check=True,
        capture_output=True,
        timeout=120,
    )
    pg.drop_database(name)
    return out


class Resources:
    """Connections for the tests: the pgserver for every Postgres connection, env for the rest."""

    def __init__(self, pg):
        from drillbook.drills.alert_path.clients import EnvPathClients

        self.pg, self.clients = pg, EnvPathClients()

    def dsn(self, conn_id: str) -> str:
        return self.pg.admin_dsn

    def slack(self, conn_id):
        return self.clients.slack(conn_id)

    def aws(self, conn_id, service, region):
        return self.clients.aws(conn_id, service, region)

    def http(self, conn_id):
        return self.clients.http(conn_id)


def _notifier(catalogue, *, slack_on: bool, tmp_path: Path) -> Notifier:
    if slack_on:
        return Notifier(
            catalogue=catalogue, sender=SlackSender(connection=connection_from_env("drillbook_slack"))
        )
    return Notifier(catalogue=catalogue, sender=OutboxSender(path=str(tmp_path / "outbox.jsonl")))


def _run(drill_dict, *, pg, tmp_path, slack_on=True):
    catalogue = load_catalogue(_catalogue(tmp_path, [drill_dict]))
    drill = catalogue.drills[0]
    ctx = RunContext.for_cli(kind="negative", drill=drill.name)
    return negative.run_negative(
        drill,
        work_dir=tmp_path / "work",
        base_dir=catalogue.base_dir,
        resources=Resources(pg),
        notifier=_notifier(catalogue, slack_on=slack_on, tmp_path=tmp_path),
        ctx=ctx,
    )


def _backup_drill(location: Path) -> dict[str, Any]:
    return {
        "name": "neg_backup",
        "kind": "backup_restore",
        "schedule": "@daily",
        "controls": ["SOC2:A1.2"],
        "backup": {"location": str(location)},
        "scratch": {"connection": "drillbook_scratch"},
        "objectives": {"rto": "15m", "rpo": "26h"},
        "negative": {"every": "4w"},
    }


def test_backup_restore_truncated_copy_is_detected_and_paged(pg, backup_dir, slack, tmp_path):
    import hashlib

    before = hashlib.sha256((backup_dir / "src.dump").read_bytes()).hexdigest()
    result = _run(_backup_drill(backup_dir), pg=pg, tmp_path=tmp_path)
    assert result.verdict is Verdict.PASS, result.findings
    assert result.kind == "negative" and result.target == "backup_restore:neg_backup"
    assert result.codes() == ["NEGATIVE_DRILL_PASSED"]
    assert "ARCHIVE_TRUNCATED" in result.details["inner_codes"] and result.details["page_delivered"] is True
    [page] = [m for m in slack.posted() if m.thread_ts is None]
    assert "NEGATIVE DRILL" in json.dumps(page.blocks or page.text)
    # the real backup is untouched and nothing is left on the scratch server
    assert hashlib.sha256((backup_dir / "src.dump").read_bytes()).hexdigest() == before
    assert pg.databases("drillbook_scratch_") == []


def test_backup_restore_page_to_outbox_only_is_detector_blind(pg, backup_dir, tmp_path):
    result = _run(_backup_drill(backup_dir), pg=pg, tmp_path=tmp_path, slack_on=False)
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["DETECTOR_BLIND"]
    assert "not delivered" in result.findings[0].message


def test_missing_backup_cannot_be_provoked_and_is_error_not_pass(pg, tmp_path, slack):
    empty = tmp_path / "none"
    empty.mkdir()
    result = _run(_backup_drill(empty), pg=pg, tmp_path=tmp_path)
    assert result.verdict is Verdict.ERROR and result.codes() == ["DRILL_CRASHED"]
    assert slack.posted() == []


def test_certificates_expired_listener_is_detected(pg, slack, tmp_path):
    drill = {
        "name": "neg_certs",
        "kind": "certificates",
        "schedule": "@daily",
        "files": ["/nonexistent"],
        "negative": {"every": "1w"},
    }
    result = _run(drill, pg=pg, tmp_path=tmp_path)
    assert result.verdict is Verdict.PASS, result.findings
    assert "CERT_EXPIRED" in result.details["inner_codes"]


def test_alert_path_closed_port_is_detected(pg, slack, tmp_path):
    drill = {
        "name": "neg_alerts",
        "kind": "alert_path",
        "schedule": "@daily",
        "negative": {"every": "30d"},
        "paths": [{"name": "p", "type": "webhook", "connection": "drillbook_demo_webhook"}],
    }
    result = _run(drill, pg=pg, tmp_path=tmp_path)
    assert result.verdict is Verdict.PASS, result.findings
    assert set(result.details["inner_codes"]) & {"ALERT_PATH_UNREACHABLE", "ALERT_NOT_DELIVERED"}


def test_judge_turns_red_when_the_detector_stays_green_or_goes_red_for_another_reason():
    from drillbook.drills.base import ResultBuilder

    class D:
        name, kind, controls = "d", "certificates", ["X:1"]

    green = ResultBuilder(kind="certificates", drill="d", target="t")
    green.checked()
    blind = negative.judge(
        D(),
        negative.Inner(green.finish(), frozenset({"CERT_EXPIRED"})),
        page_delivered=True,
        page_detail="ok",
    )
    assert (
        blind.verdict is Verdict.FAIL
        and blind.codes() == ["DETECTOR_BLIND"]
        and "stayed green" in blind.findings[0].message
    )

    other = ResultBuilder(kind="certificates", drill="d", target="t")
    other.find("ENDPOINT_UNREACHABLE", "refused")
    wrong = negative.judge(
        D(),
        negative.Inner(other.finish(), frozenset({"CERT_EXPIRED"})),
        page_delivered=True,
        page_detail="ok",
    )
    assert wrong.verdict is Verdict.FAIL and "without any of" in wrong.findings[0].message


def test_is_due():
    now = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    assert negative.is_due(None, every=86400, now=now)
    assert not negative.is_due(now - dt.timedelta(hours=23), every=86400, now=now)
    assert negative.is_due(now - dt.timedelta(days=1), every=86400, now=now)


def test_catalogue_rejects_a_period_under_a_day(tmp_path):
    from drillbook.errors import CatalogueError

    bad = {
        "name": "x",
        "kind": "certificates",
        "schedule": "@daily",
        "files": ["a"],
        "negative": {"every": "12h"},
    }
    with pytest.raises(CatalogueError) as exc:
        load_catalogue(_catalogue(tmp_path, [bad]))
    assert "negative.every" in str(exc.value.problems)


def test_cli_records_a_negative_row_and_if_due_skips(
    pg, backup_dir, ledger_dsn, slack, tmp_path, monkeypatch, capsys
):
    from drillbook.cli import main
    from drillbook.ledger.store import Ledger

    path = _catalogue(tmp_path, [_backup_drill(backup_dir)])
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_SCRATCH", airflow_connection_json(pg.admin_dsn))
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", ledger_dsn)
    args = ["run", "negative", "--drill", "neg_backup", "--catalogue", str(path)]
    assert main(args) == 0
    assert "NEGATIVE_DRILL_PASSED" in capsys.readouterr().out
    with Ledger(ledger_dsn) as ledger:
        rows = ledger.query(kind="negative", record_type="drill")
        assert [(r.drill, r.verdict) for r in rows] == [("neg_backup", "PASS")]
        assert (
            ledger.query(kind="backup_restore", record_type="drill") == []
        )  # never evidence about the drill itself
    assert main([*args, "--if-due"]) == 0
    assert "not due" in capsys.readouterr().out


@pytest.mark.airflow
def test_negative_dag_runs_end_to_end(airflow_db, pg, ledger_dsn, slack, tmp_path, monkeypatch):
    from drillbook.airflow.negative import build_negative_dags
    from drillbook.ledger.store import Ledger

    path = tmp_path / "drills.yaml"
    path.write_text(
        textwrap.dedent("""
        version: 1
        defaults: {retries: 0}
        drills:
          - name: neg_dag_certs
            kind: certificates
            schedule: "@daily"
            files: [certs]
            negative: {every: 4w}
          - name: plain_certs
            kind: certificates
            schedule: "@daily"
            files: [certs]
    """)
    )
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(path))
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_LEDGER", airflow_connection_json(ledger_dsn))
    dags = build_negative_dags()
    assert list(dags) == ["dr_negative__neg_dag_certs"]
    dag = dags["dr_negative__neg_dag_certs"]
    assert dag.schedule == dt.timedelta(weeks=4) or str(dag.timetable.summary).startswith("28 days")
    run = dag.test()
    assert run.state == "success"
    with Ledger(ledger_dsn) as ledger:
        [row] = ledger.query(kind="negative", record_type="drill")
    assert row.verdict == "PASS" and row.dag_id == "dr_negative__neg_dag_certs"
    assert any("NEGATIVE DRILL" in json.dumps(m.blocks or m.text) for m in slack.posted())
