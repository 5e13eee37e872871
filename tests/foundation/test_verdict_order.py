"""One verdict order in Python and SQL: the worst record is the run's verdict, and an unknown value never passes."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from drillbook import verdict_order
from drillbook.result import Verdict

PLUGINS = Path(__file__).resolve().parents[2] / "plugins" / "drillbook"


def test_the_order_is_pass_skipped_fail_error_and_covers_every_verdict():
    assert sorted(verdict_order.VERDICT_RANK, key=verdict_order.rank) == ["PASS", "SKIPPED", "FAIL", "ERROR"]
    assert set(verdict_order.VERDICT_RANK) == {v.value for v in Verdict}
    assert verdict_order.worst(["PASS", "FAIL", "SKIPPED"]) == "FAIL"
    assert verdict_order.worst(["PASS", "ERROR", "FAIL"]) == "ERROR"
    assert verdict_order.worst([]) is None


@pytest.mark.parametrize("value", ["", "pass", "UNKNOWN", "PASSED"])
def test_an_unknown_verdict_ranks_as_error_in_python(value):
    assert verdict_order.rank(value) == verdict_order.rank("ERROR")
    assert verdict_order.worst(["PASS", value]) == value  # it outranks PASS: never read as a pass
    assert verdict_order.verdict_of_rank(verdict_order.rank(value)) == "ERROR"


def test_sql_ranks_exactly_as_python_including_unknown_values(fresh_db):
    values = ["PASS", "SKIPPED", "FAIL", "ERROR", "pass", "UNKNOWN", ""]
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute(
            f"SELECT verdict, {verdict_order.RANK_SQL} FROM unnest(%s::text[]) AS v(verdict)", (values,)
        ).fetchall()
        qualified = conn.execute(
            f"SELECT {verdict_order.rank_sql('e.verdict')} FROM unnest(%s::text[]) AS e(verdict)", (values,)
        ).fetchall()
    assert {v: r for v, r in rows} == {v: verdict_order.rank(v) for v in values}
    assert [r for (r,) in qualified] == [verdict_order.rank(v) for v in values]


def test_no_module_keeps_an_order_of_its_own():
    # a second copy drifted once: one SQL copy ranked an unknown verdict as PASS
    pattern = re.compile(r"WHEN 'PASS' THEN|WHEN 'ERROR' THEN 3|\"PASS\": 0")
    own = PLUGINS / "verdict_order.py"
    copies = [
        str(p.relative_to(PLUGINS))
        for p in PLUGINS.rglob("*.py")
        if p != own and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert copies == []
