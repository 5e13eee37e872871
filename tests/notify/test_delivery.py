"""Delivery against the Slack API emulator with the real slack_sdk client, and evidence first."""

from __future__ import annotations

import json
import logging
import time

import pytest

from drillbook.errors import NotificationFailed
from drillbook.ledger.store import Ledger
from drillbook.notify import Notifier, SlackSender, notifier_from_env, render_outbox_text
from drillbook.notify.outbox import OutboxSender, read_outbox
from drillbook.notify.slack import SlackConnection, connection_from_env
from drillbook.run.pipeline import record_and_report
from drillbook.settings import load_settings  # the test is the entry point: its settings passed down
from tests.notify.conftest import make_ctx, make_record, make_result


def slack_notifier(slack, catalogue, ledger=None) -> Notifier:
    conn = SlackConnection(token=slack.token, base_url=slack.base_url, timeout=5)
    return Notifier(catalogue=catalogue, sender=SlackSender(connection=conn), ledger=ledger)


def test_fail_goes_to_oncall_with_mention_and_details_in_the_thread(slack, catalogue):
    result = make_result("FAIL")
    outcome = slack_notifier(slack, catalogue).notify(result, make_record(result), make_ctx())
    main, reply = slack.posted("#dr-oncall")
    assert outcome.delivered and outcome.main.ts == main.ts
    assert main.thread_ts is None and reply.thread_ts == main.ts
    assert main.blocks[1]["text"]["text"].startswith("<!subteam^S0ONCALL> *FAIL")
    assert "CERT_EXPIRED" in main.text
    assert reply.blocks[0]["text"]["text"].startswith("Phases:")


def test_pass_goes_nowhere_and_notify_overrides_apply(slack, catalogue):
    notifier = slack_notifier(slack, catalogue)
    assert notifier.notify(make_result("PASS"), None, make_ctx()).route is None
    assert notifier.notify(make_result("FAIL", drill="quiet_certs"), None, make_ctx()).route is None
    assert slack.posted() == []
    notifier.notify(make_result("PASS", drill="loud_certs"), None, make_ctx())
    notifier.notify(make_result("ERROR", drill="loud_certs"), None, make_ctx())
    posted = [m for m in slack.posted("#alerts") if m.thread_ts is None]
    assert [m.text.split(":")[0] for m in posted] == ["PASS", "ERROR"]
    assert "<@U0OWNER>" not in posted[0].blocks[1]["text"]["text"]  # no mention on a PASS
    assert posted[1].blocks[1]["text"]["text"].startswith("<@U0OWNER> *ERROR")


def test_rate_limit_with_retry_after_is_retried_and_succeeds(slack, catalogue):
    slack.fail("chat.postMessage", status=429, retry_after=1, times=1)
    started = time.monotonic()
    result = make_result("FAIL")
    outcome = slack_notifier(slack, catalogue).notify(result, make_record(result), make_ctx())
    assert outcome.delivered
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    posts = [r for r in slack.state.requests if r["method"] == "chat.postMessage"]
    assert len(posts) == 3  # 429, then the page, then its thread reply
    assert len(slack.posted("#dr-oncall")) == 2


@pytest.mark.parametrize(
    ("fault", "expected_posts"),
    [({"status": 500, "times": 10}, 3), ({"error": "invalid_auth", "times": 10}, 1)],
    ids=["http-500-after-retries", "invalid-auth-at-once"],
)
def test_failed_delivery_fails_loudly_records_notify_failed_and_keeps_the_evidence(
    slack, catalogue, ledger_dsn, caplog, fault, expected_posts
):
    caplog.set_level(logging.DEBUG)
    slack.fail("chat.postMessage", **fault)
    ledger = Ledger(ledger_dsn)
    result, ctx = make_result("FAIL"), make_ctx()
    with pytest.raises(NotificationFailed) as raised:
        record_and_report(result, ctx=ctx, ledger=ledger, notifier=slack_notifier(slack, catalogue, ledger))
    assert "chat.postMessage" in str(raised.value) and "#dr-oncall" in str(raised.value)
    assert len([r for r in slack.state.requests if r["method"] == "chat.postMessage"]) == expected_posts
    rows = ledger.query()
    assert [(r.record_type, r.verdict) for r in rows] == [("drill", "FAIL"), ("notification", "FAIL")]
    assert rows[0].codes == ["CERT_EXPIRED", "CERT_EXPIRING"]
    assert rows[1].codes == ["NOTIFY_FAILED"]
    dumped = json.dumps([r.result for r in rows]) + caplog.text + str(raised.value)
    assert slack.token not in dumped
    assert ledger.verify().ok


def test_token_never_reaches_logs_on_success(slack, catalogue, caplog):
    caplog.set_level(logging.DEBUG)
    result = make_result("ERROR")
    slack_notifier(slack, catalogue).notify(result, make_record(result), make_ctx())
    assert slack.posted("#dr-oncall")
    assert slack.token not in caplog.text


def test_unreachable_slack_fails_in_bounded_time(catalogue):
    conn = SlackConnection(token="xoxb-unreachable-0000", base_url="http://127.0.0.1:9/api/", timeout=2)
    notifier = Notifier(catalogue=catalogue, sender=SlackSender(connection=conn))
    started = time.monotonic()
    with pytest.raises(NotificationFailed, match="could not be reached"):
        notifier.notify(make_result("FAIL"), None, make_ctx())
    assert time.monotonic() - started < 20


def test_not_in_channel_fails_at_once(slack, catalogue):
    slack.state.member_of.discard("C0ONCALL")
    with pytest.raises(NotificationFailed, match="not_in_channel"):
        slack_notifier(slack, catalogue).notify(make_result("FAIL"), None, make_ctx())


def test_a_failed_thread_reply_after_the_page_does_not_fail_the_task(slack, catalogue):
    class ThreadBreaks(SlackSender):  # the real sender; the emulator is told to fail the thread reply
        def post(self, *, channel, message, thread_ts=None, report_id=None):
            if thread_ts:
                slack.fail("chat.postMessage", error="fatal_error")
            return super().post(channel=channel, message=message, thread_ts=thread_ts, report_id=report_id)

    conn = SlackConnection(token=slack.token, base_url=slack.base_url, timeout=5)
    notifier = Notifier(catalogue=catalogue, sender=ThreadBreaks(connection=conn))
    outcome = notifier.notify(make_result("FAIL"), None, make_ctx())
    assert outcome.delivered and outcome.thread is None
    assert "fatal_error" in outcome.thread_error
    assert len(slack.posted("#dr-oncall")) == 1


def test_connection_from_env_reads_json_and_uri(slack, monkeypatch):
    conn = connection_from_env("drillbook_slack")  # the fixture sets the JSON form
    assert conn is not None and conn.token == slack.token and conn.base_url == slack.base_url
    assert slack.token not in repr(conn)
    monkeypatch.setenv(
        "AIRFLOW_CONN_DRILLBOOK_SLACK",
        "slack://:xoxb-uri-token-1234@/?base_url=http%3A%2F%2F127.0.0.1%3A1%2Fapi&timeout=3",
    )
    conn = connection_from_env("drillbook_slack")
    assert (conn.token, conn.base_url, conn.timeout) == ("xoxb-uri-token-1234", "http://127.0.0.1:1/api/", 3)
    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK")
    assert connection_from_env("drillbook_slack") is None
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_SLACK", '{"conn_type": "slack"}')
    with pytest.raises(NotificationFailed, match="no password"):
        connection_from_env("drillbook_slack")


def test_notifier_from_env_uses_slack_when_the_connection_exists(slack, catalogue):
    notifier = notifier_from_env(catalogue, outbox=load_settings().outbox)
    assert isinstance(notifier.sender, SlackSender)
    notifier.notify(make_result("FAIL"), None, make_ctx())
    assert len(slack.posted("#dr-oncall")) == 2


def test_without_slack_the_outbox_gets_the_message_and_the_ledger_says_nobody_was_told(
    catalogue, ledger_dsn, tmp_path, monkeypatch, caplog
):
    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK", raising=False)
    caplog.set_level(logging.INFO)
    outbox = tmp_path / "outbox.jsonl"
    ledger = Ledger(ledger_dsn)
    notifier = notifier_from_env(catalogue, ledger=ledger, outbox=str(outbox))
    assert isinstance(notifier.sender, OutboxSender)
    result, ctx = make_result("FAIL"), make_ctx()
    reported = record_and_report(result, ctx=ctx, ledger=ledger, notifier=notifier)
    assert reported.delivery.delivered is False
    entries = read_outbox(outbox)
    assert [e["channel"] for e in entries] == ["#dr-oncall", "#dr-oncall"]
    assert entries[1]["thread_ts"] == entries[0]["ts"]
    assert "written to the outbox" in caplog.text and "CERT_EXPIRED" in caplog.text  # and the task log
    rows = ledger.query()
    assert [(r.record_type, r.codes) for r in rows] == [
        ("drill", ["CERT_EXPIRED", "CERT_EXPIRING"]),
        ("notification", ["NOTIFY_NOT_CONFIGURED"]),
    ]
    text = render_outbox_text(outbox)
    assert text.startswith("2 messages drillbook would have posted")
    assert "FAIL: web_certs (certificates)" in text and "↳ thread reply in #dr-oncall" in text
    assert "CERT_EXPIRED" in text and "&amp;" not in text


def test_outbox_text_of_an_empty_outbox(tmp_path):
    assert "is empty" in render_outbox_text(tmp_path / "none.jsonl")


def test_drillbook_outbox_command_shows_and_clears(catalogue, tmp_path, capsys):
    from drillbook.cli import main

    outbox = tmp_path / "outbox.jsonl"
    Notifier(catalogue=catalogue, sender=OutboxSender(path=outbox)).notify(
        make_result("ERROR"), None, make_ctx()
    )
    assert main(["outbox", "--path", str(outbox), "--clear"]) == 0
    captured = capsys.readouterr()
    assert "ERROR: web_certs (certificates)" in captured.out and "CERT_UNREADABLE" in captured.out
    assert "removed 2 message(s)" in captured.err and not outbox.exists()
