"""End to end through Airflow: dag.test() validates, writes the ledger row, tells Slack, fails when red."""

from __future__ import annotations

import json
import textwrap

import pytest

from drillbook.resources.pg import airflow_connection_json
from tests.data_quality.conftest import SHIPPED_SUITES


@pytest.fixture
def dq_catalogue(tmp_path, monkeypatch, shop_db, dq_db, orders_table, ledger_dsn, slack):
    broken = orders_table(
        "update {table} set status = 'lost' where id = 9; update {table} set customer_id = null where id = 3"
    )
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_LEDGER", airflow_connection_json(ledger_dsn))
    monkeypatch.setenv("AIRFLOW_CONN_DQ_SHOP", airflow_connection_json(shop_db))
    monkeypatch.setenv("AIRFLOW_CONN_DQ_VARIANTS", airflow_connection_json(dq_db))
    (tmp_path / "expectations").mkdir()
    (tmp_path / "expectations" / "orders.json").write_text((SHIPPED_SUITES / "orders.json").read_text())
    full = json.loads(
        (SHIPPED_SUITES.parents[1] / "tests" / "data_quality" / "suites" / "orders_full.json").read_text()
    )
    (tmp_path / "expectations" / "orders_full.json").write_text(json.dumps(full))
    catalogue = tmp_path / "drills.yaml"
    catalogue.write_text(
        textwrap.dedent(f"""
        version: 1
        defaults:
          retries: 0
        drills:
          - name: orders_ok
            kind: data_quality
            schedule: "@hourly"
            controls: ["SOC2:PI1.2"]
            connection: dq_shop
            table: public.orders
            suite: orders
          - name: orders_broken
            kind: data_quality
            schedule: "@hourly"
            controls: ["SOC2:PI1.2"]
            connection: dq_variants
            table: {broken}
            suite: orders_full
            sample_unexpected: 3
            sensitive_columns: [customer_id]
    """)
    )
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(catalogue))
    return catalogue


@pytest.mark.airflow
def test_dag_test_records_evidence_and_fails_on_failed_expectations(
    airflow_db, dq_catalogue, ledger_dsn, slack
):
    from drillbook.airflow.factory import build_dags
    from drillbook.ledger.store import Ledger

    dags = build_dags("data_quality")
    assert set(dags) == {"dr_data_quality__orders_ok", "dr_data_quality__orders_broken"}

    ok = dags["dr_data_quality__orders_ok"].test()
    assert ok.state == "success"
    broken = dags["dr_data_quality__orders_broken"].test()
    assert broken.state == "failed"  # a failed expectation never leaves the run green

    with Ledger(ledger_dsn) as ledger:
        records = {r.drill: r for r in ledger.query(kind="data_quality") if r.record_type == "drill"}
        assert ledger.verify().ok
    assert records["orders_ok"].verdict == "PASS"
    assert records["orders_ok"].result["measurements"]["counts"]["checks_run"] == 11
    bad = records["orders_broken"]
    assert bad.verdict == "FAIL" and bad.task_id == "validate"
    assert sorted(f["subject"] for f in bad.result["findings"]) == [
        "orders_full#1 expect_column_values_to_not_be_null(customer_id)",
        "orders_full#4 expect_column_values_to_be_in_set(status)",
    ]
    assert bad.result["details"]["data_quality"][0]["expectations"][4]["sample"] == ["lost"]
    assert bad.controls == ["SOC2:PI1.2"]

    text = json.dumps(
        [m.__dict__ if hasattr(m, "__dict__") else str(m) for m in slack.posted("#dr-oncall")], default=str
    )
    assert "DQ_EXPECTATION_FAILED" in text
    assert "expect_column_values_to_be_in_set" in text
