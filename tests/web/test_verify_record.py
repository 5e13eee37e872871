"""The verify button's outcome is kept in the ledger, not in the api-server: a restart or another worker
shows it, and the pages' own connection stays SELECT-only.

The ledger is real (tests/web/conftest.py); the writer is a role with the workers' grants
(docs/ledger.md: SELECT and INSERT); "a restart" is a second app built from the same connections.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from drillbook.ledger.store import Ledger
from drillbook.web.app import create_app
from drillbook.web.ledger_route import csrf_token, verify_with
from tests.web.conftest import ledger_writer
from tests.web.test_pages import TOKEN, user


@pytest.fixture
def writer_dsn(pg, seeded) -> Iterator[str]:
    with ledger_writer(pg, seeded) as dsn:
        yield dsn


@pytest.fixture
def start(seeded):
    """Start an app (a fresh process, as far as the pages can tell) and return its client."""
    apps = []

    def make(*, writer: str | None, verify_dsn: str | None = None) -> TestClient:
        app = create_app(
            dsn_provider=lambda: seeded.reader_dsn,
            user_dependency=user,
            verify=verify_with(lambda: verify_dsn or seeded.reader_dsn),
            writer_dsn=(lambda: writer),
        )
        client = TestClient(app, root_path="/drillbook")
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        client.__enter__()
        apps.append((app, client))
        return client

    yield make
    for app, client in apps:
        client.__exit__(None, None, None)
        app.state.pool.close()


def press(client: TestClient):
    return client.post("/ledger/verify", data={"csrf": csrf_token(TOKEN)}, follow_redirects=False)


def section(page: str, title: str) -> str:
    return page[page.index(title) :][:1500]


def test_the_outcome_survives_a_restart_and_is_itself_chained_evidence(start, seeded, writer_dsn):
    first = start(writer=writer_dsn)
    assert "none recorded" in section(first.get("/ledger").text, "from these pages")
    answer = press(first)
    assert answer.status_code == 303 and answer.headers["location"] == "/drillbook/ledger"

    restarted = start(writer=writer_dsn)  # nothing of the first app's memory
    mine = section(restarted.get("/ledger").text, "from these pages")
    assert re.search(
        r"OK at \S+ \S+ UTC by auditor \(<a href=\"/drillbook/record/7\">record 7</a>\)", mine
    ), mine
    assert "chain intact" in mine, mine

    with Ledger(seeded.dsn, spool=None) as ledger:
        row = ledger.get(7)
        assert row is not None and (row.record_type, row.kind, row.drill, row.verdict) == (
            "watchdog",
            "ledger",
            "verify",
            "PASS",
        )
        assert row.result["details"]["verify"]["by"] == "auditor"
        assert ledger.verify().ok  # appended by the seal like any row: the chain still holds
    record_page = restarted.get("/record/7")
    assert record_page.status_code == 200 and "PASS" in record_page.text


def test_tampering_found_is_recorded_as_a_fail_with_ledger_tampered(start, seeded, writer_dsn):
    with psycopg.connect(seeded.dsn) as admin, admin.transaction():
        admin.execute("ALTER TABLE drillbook_evidence DISABLE TRIGGER USER")
        admin.execute("UPDATE drillbook_evidence SET target = 'postgresql://elsewhere/x' WHERE seq = 2")
        admin.execute("ALTER TABLE drillbook_evidence ENABLE TRIGGER USER")
    assert press(start(writer=writer_dsn)).status_code == 303
    page = start(writer=writer_dsn).get("/ledger").text
    mine = section(page, "from these pages")
    assert "TAMPERING FOUND at" in mine and 'class="warn"' in mine and "seq=2" in mine.replace(" 2", "=2")
    with Ledger(seeded.dsn, spool=None) as ledger:
        row = ledger.get(7)
    assert row is not None and row.verdict == "FAIL"
    assert [f["code"] for f in row.result["findings"]] == ["LEDGER_TAMPERED"]


def test_a_verify_that_could_not_run_is_recorded_as_error_never_ok(start, seeded, writer_dsn):
    dead = "host=127.0.0.1 port=9 user=x password=hunter2-secret dbname=l connect_timeout=2"
    assert press(start(writer=writer_dsn, verify_dsn=dead)).status_code == 303
    page = start(writer=writer_dsn).get("/ledger").text
    mine = section(page, "from these pages")
    assert "COULD NOT VERIFY at" in mine and "OK at" not in mine and "hunter2-secret" not in page
    with Ledger(seeded.dsn, spool=None) as ledger:
        row = ledger.get(7)
    assert row is not None and row.verdict == "ERROR"
    assert "LEDGER_UNVERIFIABLE" in [f["code"] for f in row.result["findings"]]


def test_without_a_writer_the_outcome_is_shown_once_and_said_not_recorded(start, seeded):
    client = start(writer=None)
    answer = press(client)
    assert answer.status_code == 200
    ran = html.unescape(section(answer.text, "Verify just run"))
    assert "OK at" in ran and "chain intact" in ran and "NOT RECORDED: no 'drillbook_ledger_writer'" in ran
    # nothing was kept anywhere: not in this app, not in the ledger
    assert "Verify just run" not in client.get("/ledger").text
    assert "none recorded" in section(client.get("/ledger").text, "from these pages")
    with Ledger(seeded.dsn, spool=None) as ledger:
        assert ledger.count() == 6


def test_a_writer_that_cannot_insert_is_a_503_naming_it_without_the_password(start, seeded):
    # the read-only role given as the writer: the insert is refused by PostgreSQL
    answer = press(start(writer=seeded.reader_dsn))
    assert answer.status_code == 503
    assert "OK at" in answer.text and "NOT RECORDED: writing the outcome through connection" in answer.text
    assert "reader-pw-123" not in answer.text
    with Ledger(seeded.dsn, spool=None) as ledger:
        assert ledger.count() == 6


def test_the_digests_own_verify_is_shown_from_its_ledger_row(start, seeded):
    from drillbook.drills.base import ResultBuilder
    from drillbook.run.context import RunContext

    builder = ResultBuilder(kind="digest", drill="daily", target="ledger")
    builder.checked(1)
    builder.details["scorecard"] = {"ledger": "LEDGER DOES NOT VERIFY: record seq 3 hash_mismatch: edited"}
    with Ledger(seeded.dsn, spool=None) as ledger:
        ledger.record_event(
            "digest",
            builder.finish(),
            RunContext(dag_id="dr_digest__daily", run_id="scheduled__x", task_id="digest"),
        )
    digest = section(start(writer=None).get("/ledger").text, "by the digest")
    assert "TAMPERING FOUND at" in digest and "daily digest: LEDGER DOES NOT VERIFY" in digest
    assert "record/7" in digest
