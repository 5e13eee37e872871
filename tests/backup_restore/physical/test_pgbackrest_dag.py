"""One dag.test() of a pgBackRest drill end to end: reap_clusters -> restore_and_verify -> record, evidence in the ledger."""

from __future__ import annotations

import time

import pytest
import yaml

from drillbook.resources.pg import airflow_connection_json

from .conftest import STANZA, SourceCluster

pytestmark = pytest.mark.airflow


def test_pgbackrest_dag_end_to_end(
    airflow_db, pg_source: SourceCluster, ledger_dsn, tmp_path, monkeypatch
) -> None:
    from drillbook.ledger.store import Ledger

    pg_source.full_backup()
    pg_source.insert_marker("row1")
    time.sleep(1.1)
    pg_source.insert_marker("row2")
    pg_source.switch_wal()
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_LEDGER", airflow_connection_json(ledger_dsn))
    monkeypatch.setenv("DRILLBOOK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK", raising=False)
    drill = {
        "name": "pitr_dag",
        "kind": "backup_restore",
        "schedule": "@daily",
        "controls": ["SOC2:A1.2"],
        "backup": {
            "pgbackrest": {"stanza": STANZA, "config": str(pg_source.config)},
            "target": "latest",
            "pitr_proof": {"must_exist": "select 1 from public.pitr_marker where name = 'row2'"},
        },
        "scratch": {"connection": "drillbook_scratch"},
        "objectives": {"rto": "15m", "rpo": "26h"},
        "verify": {"min_rows": {"public.pitr_marker": 2}},
    }
    path = tmp_path / "drills.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "defaults": {"retries": 0}, "drills": [drill]}))
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(path))
    from drillbook.airflow.factory import build_dags

    dag = build_dags("backup_restore")["dr_backup_restore__pitr_dag"]
    assert set(dag.task_ids) == {"reap_clusters", "restore_and_verify", "record"}
    run = dag.test()
    assert run.state == "success"
    records = [r for r in Ledger(ledger_dsn).query(drill="pitr_dag") if r.record_type == "drill"]
    assert len(records) == 1 and records[0].verdict == "PASS", (
        records[0].result.get("findings") if records else None
    )
    result = records[0].result
    assert result["details"]["pitr_proof"] == {"must_exist": 1}
    assert [p["name"] for p in result["phases"]][:5] == ["locate", "archive", "restore", "safety", "recover"]
    assert result["measurements"]["rpo_seconds"] is not None
