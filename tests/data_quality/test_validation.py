"""The drill against real PostgreSQL: a healthy table passes; each defect fails exactly its expectation.

Suite ``suites/orders_full.json`` (index: expectation):
0 row count >= 500 · 1 customer_id not null · 2 id unique · 3 total_cents in [0, 1e6] ·
4 status in set · 5 currency matches ^[A-Z]{3}$ · 6 created_at not null · 7 email regex ·
8 max(total_cents) <= 1e6
"""

from __future__ import annotations

import json

import pytest

from tests.data_quality.conftest import SUITES

N_EXPECTATIONS = 9


def run(dsn: str, table: str | None = None, **kwargs):
    from drillbook.drills.data_quality import run_data_quality

    kwargs.setdefault("suite", "orders_full")
    kwargs.setdefault("suites_dir", SUITES)
    return run_data_quality(drill_name="orders_quality", dsn=dsn, table=table, **kwargs)


def failed_indexes(result) -> list[int]:
    return sorted(f.detail["index"] for f in result.findings if f.code == "DQ_EXPECTATION_FAILED")


def test_healthy_table_passes_every_expectation(dq_db, orders_table):
    result = run(dq_db, orders_table())
    assert result.verdict.value == "PASS", result.findings
    assert result.findings == []
    assert result.measurements.counts["checks_run"] == N_EXPECTATIONS
    assert [p.name for p in result.phases] == ["load suite", "inspect target", "validate", "evaluate"]
    [entry] = result.details["data_quality"]
    assert [e["success"] for e in entry["expectations"]] == [True] * N_EXPECTATIONS
    assert entry["expectations"][0]["observed"] == "1000"  # the row count, as evidence
    assert result.environment["great_expectations"].startswith("1.")


@pytest.mark.parametrize(
    ("defect", "rows", "expected"),
    [
        pytest.param(
            "update {table} set customer_id = null where id in (3, 4, 5)",
            1000,
            [1],
            id="nulls-in-not-null-column",
        ),
        pytest.param("update {table} set id = 1 where id = 2", 1000, [2], id="duplicate-in-unique-column"),
        pytest.param("update {table} set total_cents = -5 where id = 7", 1000, [3], id="value-below-range"),
        pytest.param(
            "update {table} set total_cents = 2000000 where id = 7",
            1000,
            [3, 8],
            id="value-above-range-and-max",
        ),
        pytest.param("", 100, [0], id="row-count-below-minimum"),
        pytest.param(
            "update {table} set status = 'lost' where id = 9", 1000, [4], id="value-outside-allowed-set"
        ),
        pytest.param("update {table} set currency = 'eur' where id = 11", 1000, [5], id="regex-mismatch"),
    ],
)
def test_each_defect_fails_exactly_its_expectation(dq_db, orders_table, defect, rows, expected):
    result = run(dq_db, orders_table(defect, rows=rows))
    assert result.verdict.value == "FAIL"
    assert failed_indexes(result) == expected
    assert set(result.codes()) == {"DQ_EXPECTATION_FAILED"}
    assert result.measurements.counts["checks_run"] == N_EXPECTATIONS  # failures are checks that ran
    assert all(f.severity.value in ("high", "critical") for f in result.findings)


def test_failure_detail_has_counts_and_no_sample_by_default(dq_db, orders_table):
    result = run(dq_db, orders_table("update {table} set status = 'lost' where id in (9, 10)"))
    [f] = result.findings
    assert f.subject == "orders_full#4 expect_column_values_to_be_in_set(status)"
    assert f.detail["unexpected_count"] == 2
    assert f.detail["unexpected_percent"] == pytest.approx(0.2)
    assert f.detail["sample"] is None
    assert "lost" not in json.dumps(result.to_json_dict())


def test_sample_is_taken_only_when_asked_and_never_for_sensitive_columns(dq_db, orders_table):
    table = orders_table(
        "update {table} set status = 'lost', email = 'secret-person-at-example.com' where id = 9"
    )
    result = run(dq_db, table, sample=5, sensitive=["email"])
    by_index = {f.detail["index"]: f for f in result.findings}
    assert sorted(by_index) == [4, 7]
    assert by_index[4].detail["sample"] == "lost"
    assert by_index[7].detail["sample"] is None
    assert by_index[7].detail["unexpected_count"] == 1
    assert "secret-person" not in json.dumps(result.to_json_dict())


def test_suite_meta_marks_columns_sensitive(dq_db, orders_table, tmp_path):
    data = json.loads((SUITES / "orders_full.json").read_text())
    data["meta"]["drillbook"]["sensitive_columns"] = ["email"]
    (tmp_path / "marked.json").write_text(json.dumps(data))
    table = orders_table("update {table} set email = 'secret-person-at-example.com' where id = 9")
    result = run(dq_db, table, suite="marked", suites_dir=tmp_path, sample=5)
    assert failed_indexes(result) == [7]
    assert "secret-person" not in json.dumps(result.to_json_dict())


def test_missing_table_is_an_error(dq_db):
    result = run(dq_db, "public.no_such_orders")
    assert result.verdict.value == "ERROR"
    assert result.codes() == ["DQ_VALIDATION_ERROR"]
    assert "public.no_such_orders" in result.findings[0].message
    assert result.measurements.counts["checks_run"] == 0


def test_missing_column_is_an_error_not_a_pass_or_a_fail(dq_db, orders_table):
    result = run(dq_db, orders_table(drop="currency"))
    assert result.verdict.value == "ERROR"
    assert result.codes() == ["DQ_VALIDATION_ERROR"]
    [f] = result.findings
    assert f.detail["index"] == 5 and f.detail["column"] == "currency"
    assert "currency" in f.message and "does not exist" in f.message
    # the other expectations still ran and count; the one that could not run does not
    assert result.measurements.counts["checks_run"] == N_EXPECTATIONS - 1


def test_gx_reports_a_missing_column_inside_the_result():
    """GX puts the exception in exception_info (one entry per metric): it must read as an error."""
    from drillbook.drills.data_quality.results import interpret

    raw = {
        "success": False,
        "result": {},
        "exception_info": {
            "MetricConfigurationID(metric_name='column_values.nonnull.condition', ...)": {
                "exception_traceback": "Traceback ...",
                "exception_message": 'Error: The column "nope" in BatchData does not exist.',
            }
        },
    }
    exp = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nope"}}
    outcome = interpret(raw, index=0, expectation=exp, severity="high", sample=0, sensitive=())
    assert not outcome.evaluated and "does not exist" in outcome.error
    single = {
        "success": False,
        "result": {},
        "exception_info": {"raised_exception": True, "exception_message": "boom"},
    }
    assert (
        interpret(single, index=0, expectation=exp, severity="high", sample=0, sensitive=()).error == "boom"
    )
    assert interpret(None, index=0, expectation=exp, severity="high", sample=0, sensitive=()).error


def test_query_target_is_validated_in_the_database(dq_db, orders_table):
    table = orders_table("update {table} set status = 'lost' where id = 9")
    result = run(dq_db, query=f"select * from {table} where status <> 'lost'")
    assert result.verdict.value == "PASS", result.findings
    assert result.target.endswith("(query)")


def test_bad_query_is_an_error(dq_db):
    result = run(dq_db, query="select * from public.not_there")
    assert result.verdict.value == "ERROR"
    assert result.codes() == ["DQ_VALIDATION_ERROR"]


def test_severity_comes_from_expectation_then_suite_meta(dq_db, orders_table, tmp_path):
    data = json.loads((SUITES / "orders_full.json").read_text())
    data["meta"]["severity"] = "low"
    data["expectations"][4]["meta"] = {"severity": "critical"}
    (tmp_path / "sev.json").write_text(json.dumps(data))
    table = orders_table("update {table} set status = 'lost', currency = 'eur' where id = 9")
    result = run(dq_db, table, suite="sev", suites_dir=tmp_path)
    sev = {f.detail["index"]: f.severity.value for f in result.findings}
    assert sev == {4: "critical", 5: "low"}
    assert result.verdict.value == "FAIL"
    only_low = run(
        dq_db,
        orders_table("update {table} set currency = 'eur' where id = 9"),
        suite="sev",
        suites_dir=tmp_path,
    )
    assert only_low.verdict.value == "PASS"  # a low-severity expectation is a warning: recorded, not red
    assert only_low.codes() == ["DQ_EXPECTATION_FAILED"]


def test_unreachable_server_is_an_error():
    result = run("postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2", "public.orders")
    assert result.verdict.value == "ERROR"
    assert result.codes() == ["DQ_VALIDATION_ERROR"]


def test_password_never_reaches_the_result(dq_db, orders_table):
    from psycopg.conninfo import make_conninfo

    from drillbook.resources.pg import parse

    params = parse(dq_db)
    dsn = make_conninfo(dq_db, password="hunter2-very-secret") if not params.get("password") else dq_db
    result = run(dsn, orders_table("update {table} set status = 'lost' where id = 9"), sample=3)
    assert result.codes() == ["DQ_EXPECTATION_FAILED"]  # GX ran with the password in its URL
    assert "hunter2-very-secret" not in json.dumps(result.to_json_dict())


def test_sensitive_values_never_leave_the_database(dq_db, orders_table):
    """GX fetches samples per run, not per expectation: sensitive ones run apart, with no sample at all."""
    from drillbook.drills.data_quality.engine import run_suite
    from drillbook.drills.data_quality.suites import load_suite

    suite = load_suite("orders_full", suites_dir=SUITES)
    table = orders_table(
        "update {table} set status = 'lost', email = 'secret-person-at-example.com' where id = 9"
    )
    run = run_suite(dsn=dq_db, suite=suite, table=table, sample=5, unsampled=[7])
    assert all(r is not None for r in run.results)
    assert run.results[4]["result"]["partial_unexpected_list"] == ["lost"]
    assert run.results[7]["result"]["unexpected_count"] == 1
    assert "secret-person" not in json.dumps(run.results, default=str)
