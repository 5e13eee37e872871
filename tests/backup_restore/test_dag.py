"""End to end through Airflow: dag.test() of a generated backup-restore DAG, healthy and failing."""

from __future__ import annotations

import pytest
import yaml

from drillbook.drills.backup_restore.scratch import PREFIX
from drillbook.resources.pg import airflow_connection_json
from tests.backup_restore.conftest import MIN_ROWS

pytestmark = pytest.mark.airflow


@pytest.fixture
def dag_env(pg, shop, ledger_dsn, tmp_path, monkeypatch):
    """Connections as AIRFLOW_CONN_* and a catalogue writer; returns write(location, **drill_extra) -> DAG."""
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_SCRATCH", airflow_connection_json(pg.admin_dsn))
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_SOURCE", airflow_connection_json(shop.dsn))
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_LEDGER", airflow_connection_json(ledger_dsn))
    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK", raising=False)

    def write(location: str, name: str = "shop_dag", **extra):
        drill = {
            "name": name,
            "kind": "backup_restore",
            "schedule": "@daily",
            "controls": ["SOC2:A1.2", "DORA:Art.12"],
            "source": {"connection": "drillbook_source"},
            "backup": {"location": location},
            "scratch": {"connection": "drillbook_scratch"},
            "objectives": {"rto": "15m", "rpo": "26h"},
            "verify": {"min_rows": MIN_ROWS, "rpo_probe": "select max(created_at) from public.orders"},
            **extra,
        }
        path = tmp_path / "drills.yaml"
        path.write_text(
            yaml.safe_dump({"version": 1, "defaults": {"retries": 1, "retry_delay": "0s"}, "drills": [drill]})
        )
        monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(path))
        from drillbook.airflow.factory import build_dags

        return build_dags("backup_restore")[f"dr_backup_restore__{name}"]

    return write


def _records(ledger_dsn, drill):
    from drillbook.ledger.store import Ledger

    return [r for r in Ledger(ledger_dsn).query(drill=drill) if r.record_type == "drill"]


def test_dag_shape_and_policy(airflow_db, dag_env, dumps):
    dag = dag_env(str(dumps["custom"].parent))
    assert set(dag.task_ids) == {
        "reap_scratch",
        "create_scratch",
        "restore_and_verify",
        "record",
        "drop_scratch",
    }
    assert dag.get_task("create_scratch").is_setup and dag.get_task("drop_scratch").is_teardown
    assert set(dag.tags) == {"drillbook", "backup_restore"}
    assert dag.max_active_runs == 1 and not dag.catchup


def test_dag_healthy_end_to_end(airflow_db, dag_env, dumps, pg, ledger_dsn):
    from datetime import UTC, datetime, timedelta

    from drillbook.drills.backup_restore.scratch import ScratchGuard

    dag = dag_env(str(dumps["custom"].parent))
    before = set(pg.databases(PREFIX))
    # a scratch database left behind by a killed worker 7 hours ago: the reaper task drops it
    left = ScratchGuard(scratch_dsn=pg.admin_dsn).create(
        drill="shop_dag", run_id="killed", hold=False, now=datetime.now(UTC) - timedelta(hours=7)
    )
    run = dag.test()
    assert run.state == "success"
    assert left not in pg.databases(PREFIX)
    records = _records(ledger_dsn, "shop_dag")
    assert len(records) == 1
    rec = records[0]
    assert (rec.verdict, rec.dag_id, rec.task_id) == ("PASS", "dr_backup_restore__shop_dag", "record")
    assert rec.controls == ["SOC2:A1.2", "DORA:Art.12"]
    assert rec.result["measurements"]["rto_seconds"] > 0
    assert rec.result["details"]["scratch_database"].startswith(PREFIX + "shop_dag_")
    reaped = [f for f in rec.result["findings"] if f["code"] == "SCRATCH_REAPED"]
    assert [f["subject"] for f in reaped] == [left]
    assert set(pg.databases(PREFIX)) == before, "teardown must drop the scratch database"


def test_dag_failing_restore_still_tears_down(airflow_db, dag_env, dumps, pg, ledger_dsn, tmp_path):
    data = dumps["custom"].read_bytes()
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "shop.dump").write_bytes(data[: len(data) // 2])
    dag = dag_env(str(folder), name="shop_dag_bad")
    before = set(pg.databases(PREFIX))
    run = dag.test()
    assert run.state == "failed"
    records = _records(ledger_dsn, "shop_dag_bad")
    assert [r.verdict for r in records] == ["FAIL"]
    assert "ARCHIVE_TRUNCATED" in [f["code"] for f in records[0].result["findings"]]
    assert set(pg.databases(PREFIX)) == before, (
        "teardown must drop the scratch database after a failed restore"
    )


def test_retried_record_writes_one_ledger_row(airflow_db, dag_env, dumps, ledger_dsn, slack):
    """Slack fails once: record fails after writing evidence, is retried, and the ledger keeps one drill row."""
    slack.fail("chat.postMessage", status=500, times=1)
    dag = dag_env(
        str(dumps["custom"].parent), name="shop_dag_retry", notify={"on": ["PASS", "FAIL", "ERROR"]}
    )
    run = dag.test()
    assert run.state == "success"
    assert len(_records(ledger_dsn, "shop_dag_retry")) == 1
    assert slack.posted("#dr-oncall"), "the retry delivered the report"
