"""The evidence pages against a real ledger read by a SELECT-only role (auth: see test_plugin_api_server.py).

Here the app's user dependency is a stand-in that accepts one bearer token, so each page's
content, escaping, filters, paging and the verify form can be checked in-process; the real
Airflow auth manager is exercised by the api-server test.
"""

from __future__ import annotations

import re

import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from drillbook.web.app import create_app
from drillbook.web.ledger_route import csrf_token, verify_with
from tests.web.conftest import HOSTILE

TOKEN = "session-token-of-an-airflow-user"


def user(request: Request) -> str:
    if request.headers.get("authorization") != f"Bearer {TOKEN}" and request.cookies.get("_token") != TOKEN:
        raise HTTPException(status_code=401, detail="Not authenticated")
    return "auditor"


@pytest.fixture
def client(seeded):
    app = create_app(
        dsn_provider=lambda: seeded.reader_dsn,
        user_dependency=user,
        verify=verify_with(lambda: seeded.reader_dsn),
    )
    with TestClient(app, root_path="/drillbook") as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c
    app.state.pool.close()


PAGES = ("/history", "/controls", "/coverage", "/trends", "/ledger", "/api/history")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_user(seeded, path):
    app = create_app(dsn_provider=lambda: seeded.reader_dsn, user_dependency=user)
    with TestClient(app) as anonymous:
        assert anonymous.get(path).status_code == 401
        assert anonymous.get(path, headers={"Authorization": "Bearer forged"}).status_code == 401
    app.state.pool.close()


@pytest.mark.parametrize("path", PAGES)
def test_pages_answer_with_a_select_only_role(client, path):
    answer = client.get(path)
    assert answer.status_code == 200, answer.text


def test_history_is_newest_first_filters_and_links_records(client, seeded):
    page = client.get("/history").text
    seqs = [int(s) for s in re.findall(r'href="/drillbook/record/(\d+)"', page)]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == 6
    by_control = client.get("/history", params={"control": "ISO27001:A.5.30"}).text
    assert re.findall(r'record/(\d+)"', by_control) == [str(seeded.seqs["api_certs"][0])]
    failed = client.get("/history", params={"verdict": "fail", "drill": "orders_nightly"}).text
    assert re.findall(r'record/(\d+)"', failed) == [str(seeded.seqs["orders_nightly"][-1])]
    assert "no record matches" in client.get("/history", params={"kind": "alert_path"}).text


def test_history_pages_by_keyset(client, seeded):
    first = client.get("/history", params={"limit": 4}).text
    assert len(re.findall(r'record/(\d+)"', first)) == 4
    cursor = re.search(r'href="[^"]*before=(\d+)[^"]*"', first)
    assert cursor, "no link to the older records"
    assert "limit=4" in cursor.group(0)
    second = client.get("/history", params={"before": cursor.group(1), "limit": 4}).text
    assert [int(s) for s in re.findall(r'record/(\d+)"', second)] == [2, 1]
    assert "before=" not in second


def test_bad_filter_is_a_400_page_naming_it(client):
    answer = client.get("/history", params={"since": "last tuesday"})
    assert answer.status_code == 400
    assert "last tuesday" in answer.text and "ISO date" in answer.text and "Traceback" not in answer.text
    assert client.get("/history", params={"verdict": "GREEN"}).status_code == 400


def test_record_page_shows_verdict_phases_findings_objectives_environment_and_chain(client, seeded):
    failed = seeded.seqs["orders_nightly"][-1]
    page = client.get(f"/record/{failed}").text
    assert "Failed: the drill ran and found a problem" in page
    assert page.count("<rect") == 4 and "restore (ok)" in page  # the waterfall: one bar per phase
    assert "RTO_EXCEEDED" in page and "Look at the phase timings" in page and "high" in page
    assert "1200.0 s" in page and "900.0 s" in page and "missed" in page
    green = seeded.seqs["orders_nightly"][-2]
    assert f"record/{green}" in page  # the last green run of the same drill
    assert re.search(r"server_version</td><td>16.2</td><td>16.4", page)
    assert "/dags/dr_backup_restore__orders_nightly/runs/r3" in page
    head = client.get(f"/record/{failed}").text
    assert re.search(r'[0-9a-f]{64}</span></td><td><span class="mono">[0-9a-f]{64}', head)
    assert client.get("/record/999999").status_code == 404


def test_hostile_ledger_text_is_escaped_on_every_page(client, seeded):
    hostile_seq = seeded.seqs[HOSTILE][0]
    for path in (
        "/history",
        f"/record/{hostile_seq}",
        "/controls",
        "/coverage",
        "/trends",
        f"/trends?drill={HOSTILE}",
        f"/history?control={HOSTILE}",
    ):
        page = client.get(path).text
        assert "<script>" not in page and "<img" not in page, path
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in client.get(f"/record/{hostile_seq}").text


def test_trends_draw_svg_with_the_objective_line(client):
    page = client.get("/trends", params={"drill": "orders_nightly"}).text
    assert page.count("<svg") == 3 and 'class="objective"' in page and "objective 900 s" in page
    assert "<polyline" in page and "pass rate" in page and "75.0 %" in page  # 3 of 4 passed this month


def test_controls_list_exceptions_with_dates(client, seeded):
    page = client.get("/controls").text
    row = page[page.index("SOC2:A1.2") :]
    assert f"record/{seeded.seqs['orders_nightly'][-1]}" in row and "1 exception(s) in 4 runs" in row
    assert "every one of 1 runs passed" in page  # ISO27001:A.5.30


def test_verify_button_needs_the_session_token_then_runs_verify(client):
    assert "UNSIGNED" in client.get("/ledger").text  # the checkpoint taken without a key says so
    assert client.post("/ledger/verify", data={"csrf": "guess"}, follow_redirects=False).status_code == 403
    forged_origin = client.post(
        "/ledger/verify",
        data={"csrf": csrf_token(TOKEN)},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert forged_origin.status_code == 403
    done = client.post("/ledger/verify", data={"csrf": csrf_token(TOKEN)}, follow_redirects=False)
    # no writer connection here: the outcome is the answer itself, and not kept (test_verify_record.py)
    assert done.status_code == 200
    assert "OK at" in done.text and "chain intact" in done.text and "NOT RECORDED" in done.text, done.text


def test_unreachable_ledger_is_a_503_page_without_the_password(seeded):
    app = create_app(
        dsn_provider=lambda: "host=127.0.0.1 port=9 user=x password=hunter2-secret dbname=l",
        user_dependency=user,
    )
    with TestClient(app) as c:
        answer = c.get("/history", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (
        answer.status_code == 503
        and "drillbook_ledger" in answer.text
        and "hunter2-secret" not in answer.text
    )


def test_missing_ledger_connection_is_a_503_page_saying_how_to_define_it(seeded):
    from drillbook.errors import ConnectionNotConfigured

    def missing() -> str:
        raise ConnectionNotConfigured(
            "Airflow connection 'drillbook_ledger' is not defined; set AIRFLOW_CONN_DRILLBOOK_LEDGER"
        )

    app = create_app(dsn_provider=missing, user_dependency=user)
    with TestClient(app) as c:
        answer = c.get("/history", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 503 and "AIRFLOW_CONN_DRILLBOOK_LEDGER" in answer.text


def test_coverage_without_a_catalogue_lists_drills_without_passing_evidence_first(client):
    page = client.get("/coverage").text
    assert page.index("NO PASSING EVIDENCE") < page.index("passing evidence: ")
    assert (
        page.count("NO PASSING EVIDENCE") == 1 and "no catalogue configured" in page
    )  # the hostile drill only failed


def test_controls_and_coverage_use_the_catalogues_population(seeded):
    from tests.evidence.conftest import backup_drill, catalogue

    cat = catalogue(
        backup_drill("orders_nightly", schedule="*/5 * * * *"),
        backup_drill("never_ran", controls=("SOC2:CC7.4",)),
    )
    app = create_app(dsn_provider=lambda: seeded.reader_dsn, user_dependency=user, catalogue=lambda: cat)
    with TestClient(app) as c:
        controls = c.get("/controls", headers={"Authorization": f"Bearer {TOKEN}"}).text
        coverage = c.get("/coverage", headers={"Authorization": f"Bearer {TOKEN}"}).text
    app.state.pool.close()
    assert "SOC2:A1.2" in controls and "SOC2:CC7.4" in controls
    row = controls[controls.index("SOC2:A1.2") :]
    assert (
        "MISSED" in row and "FAIL" in row
    )  # 5-minute schedule over a month: missed occurrences are exceptions
    assert f"record/{seeded.seqs['orders_nightly'][-1]}" in row
    assert (
        "NONE" in coverage
        and "never_ran" in coverage
        and coverage.index("never_ran") < coverage.index("PASSING")
    )


def test_controls_page_lists_the_newest_exceptions_and_says_how_many_more(seeded):
    """The page reads the SQL population (newest 20 per control); its totals are the reference's, in words."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    from drillbook.evidence.controls import control_rows
    from tests.evidence.conftest import backup_drill, catalogue

    cat = catalogue(backup_drill("orders_nightly", schedule="*/5 * * * *"))
    from drillbook.evidence import population_cache

    app = create_app(dsn_provider=lambda: seeded.reader_dsn, user_dependency=user, catalogue=lambda: cat)
    before = dict(population_cache.CACHE_STATS)
    with TestClient(app) as c:
        page = c.get("/controls", headers={"Authorization": f"Bearer {TOKEN}"}).text
        again = c.get("/controls", headers={"Authorization": f"Bearer {TOKEN}"}).text
    app.state.pool.close()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if datetime.now(UTC) >= today + timedelta(hours=1, seconds=cat.defaults.watchdog.grace):
        # past 01:00 UTC plus the grace: the month before today is read once, then from the cache
        assert population_cache.CACHE_STATS["hit"] > before["hit"], population_cache.CACHE_STATS
    page = again  # the answer merged from the cache is the one checked against the reference
    with psycopg.connect(seeded.reader_dsn) as conn:  # the page's default window: 31 days to tomorrow
        (row,) = control_rows(conn, cat, start=today - timedelta(days=30), end=today + timedelta(days=1))
    total = row.missed + row.failed
    assert total > 20 and len(row.exceptions) == total
    row_html = page[page.index("SOC2:A1.2") :]
    assert f"{row.missed} of {row.expected} expected runs missed" in row_html
    assert f"… and {total - 20} more" in row_html
    newest = row.exceptions[-1]
    assert f"{newest.at:%Y-%m-%d %H:%M} {newest.what}" in re.sub(r"<[^>]+>", "", row_html)


def _plain_controls_summary_equals_the_page_query(dsn):
    from datetime import UTC, datetime, timedelta

    import psycopg
    from psycopg.rows import dict_row

    from drillbook.web import queries

    since, until = datetime.now(UTC) - timedelta(days=400), datetime.now(UTC) + timedelta(days=1)
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        got = queries.controls_summary(conn, since=since, until=until, limit_exceptions=2)
        plain = conn.execute(
            """SELECT c AS control, count(*) AS runs, count(*) FILTER (WHERE verdict = 'PASS') AS passes,
                      max(seq) AS newest_seq, array_agg(DISTINCT drill) AS drills,
                      (array_agg(ARRAY[seq::text, to_char(recorded_at, 'YYYY-MM-DD'), verdict, drill]
                                 ORDER BY seq DESC) FILTER (WHERE verdict IN ('FAIL', 'ERROR')))[1:2] AS exceptions,
                      count(*) FILTER (WHERE verdict IN ('FAIL', 'ERROR')) AS exception_count
               FROM drillbook_evidence, unnest(controls) AS c
               WHERE record_type = 'drill' AND recorded_at >= %s AND recorded_at < %s GROUP BY c ORDER BY c""",
            (since, until),
        ).fetchall()
    assert plain and any(r["exception_count"] for r in plain)
    assert [{k: r[k] for k in plain[0]} for r in got] == plain


def test_controls_summary_equals_one_plain_aggregate_over_the_rows(seeded):
    """The grouped-then-spread summary (no catalogue) gives what one unnest over every row gives."""
    _plain_controls_summary_equals_the_page_query(seeded.reader_dsn)


def test_controls_summary_of_a_drill_whose_controls_changed_in_the_window(ledger_dsn):
    """A drill mapped to other controls mid-window is counted per (controls, drill), not as one group."""
    from datetime import UTC, datetime, timedelta

    from tests.evidence.conftest import History

    history = History(ledger_dsn)
    now = datetime.now(UTC).replace(microsecond=0)
    for i, (controls, verdict) in enumerate(
        [
            (("SOC2:A1.2",), "PASS"),
            (("SOC2:A1.2",), "FAIL"),
            (("SOC2:A1.2", "ISO27001:A.8.13"), "PASS"),
            (("ISO27001:A.8.13",), "ERROR"),
        ]
    ):
        history.add(now - timedelta(days=3, hours=-i), drill="changing", controls=controls, verdict=verdict)
    history.add(now - timedelta(days=2), drill="steady", controls=("DORA:Art.12",), verdict="FAIL")
    _plain_controls_summary_equals_the_page_query(ledger_dsn)


def test_settled_days_are_cached_per_ledger_and_read_again_when_a_day_edge_changes(ledger_dsn):
    """Controls without a catalogue keep settled days' counts; another chain at an edge misses the cache."""
    from datetime import UTC, datetime, timedelta

    import psycopg
    from psycopg.rows import dict_row

    from drillbook.web import queries
    from tests.evidence.conftest import History

    history = History(ledger_dsn)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=5)
    history.add(day + timedelta(hours=1), drill="a", verdict="PASS")
    history.add(day + timedelta(days=1, hours=2), drill="a", verdict="FAIL")
    since, until = day - timedelta(days=2), day + timedelta(days=4)

    def runs() -> int:
        with psycopg.connect(ledger_dsn, row_factory=dict_row) as conn:
            (row,) = queries.controls_summary(conn, since=since, until=until)
        return row["runs"]

    assert runs() == 2
    cached = len(queries._DAY_GROUPS)
    assert runs() == 2 and len(queries._DAY_GROUPS) == cached  # the second request reads the cache
    history.add(day + timedelta(days=2, hours=3), drill="a", verdict="PASS")  # a new first row of a day
    assert runs() == 3
    _plain_controls_summary_equals_the_page_query(ledger_dsn)
