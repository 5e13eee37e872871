"""``drillbook run data-quality``: ad hoc and from the catalogue; exit code is the verdict's."""

from __future__ import annotations

import json

from drillbook.resources.pg import airflow_connection_json
from tests.data_quality.conftest import SHIPPED_SUITES, SUITES


def test_ad_hoc_run_prints_phases_and_passes(shop_db, capsys):
    from drillbook.cli import main

    code = main(
        ["run", "data-quality", "--dsn", shop_db, "--suite", "orders", "--suites-dir", str(SHIPPED_SUITES)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "inspect target" in out and "verdict: PASS" in out
    assert "public.orders" in out


def test_ad_hoc_json_fail_exit_code_and_suite_path(dq_db, orders_table, capsys):
    from drillbook.cli import main

    table = orders_table("update {table} set status = 'lost' where id = 9")
    code = main(
        [
            "run",
            "data-quality",
            "--dsn",
            dq_db,
            "--table",
            table,
            "--suite",
            str(SUITES / "orders_full.json"),
            "--json",
        ]
    )
    payload = json.loads(capsys.readouterr().out)
    assert code == 1
    assert payload["verdict"] == "FAIL"
    assert [f["code"] for f in payload["findings"]] == ["DQ_EXPECTATION_FAILED"]


def test_catalogue_drill_resolves_its_connection_from_the_environment(shop_db, tmp_path, monkeypatch, capsys):

    from drillbook.cli import main

    (tmp_path / "expectations").mkdir()
    (tmp_path / "expectations" / "orders.json").write_text((SHIPPED_SUITES / "orders.json").read_text())
    (tmp_path / "drills.yaml").write_text(
        "version: 1\ndrills:\n  - name: orders_quality\n    kind: data_quality\n    schedule: '@hourly'\n"
        "    connection: dq_source\n    table: public.orders\n    suite: orders\n"
    )
    monkeypatch.setenv("AIRFLOW_CONN_DQ_SOURCE", airflow_connection_json(shop_db))
    code = main(
        [
            "run",
            "data-quality",
            "--drill",
            "orders_quality",
            "--catalogue",
            str(tmp_path / "drills.yaml"),
            "--json",
        ]
    )
    payload = json.loads(capsys.readouterr().out)
    assert code == 0, payload["findings"]
    assert payload["drill"] == "orders_quality"
    assert payload["details"]["data_quality"][0]["suite"] == "orders"


def test_missing_arguments_are_a_clear_error(capsys):
    from drillbook.cli import main

    assert main(["run", "data-quality", "--suite", "orders"]) == 2
    assert "give --drill NAME" in capsys.readouterr().err
