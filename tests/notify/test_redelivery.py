"""Reports that never reached Slack are re-sent, each at most once (issue 11, item 3).

Real parts only: the slack_sdk WebClient against the Slack emulator (which
stores posts, stalls, refuses, resets and goes down on a clock the test moves),
and a real ledger on the ``pg`` fixture. "Exactly once" is counted in the
emulator's channels by report id (metadata, context line or summary line).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drillbook.errors import NotificationFailed
from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.ledger.store import Ledger
from drillbook.notify import Notifier, SlackSender
from drillbook.notify.history import report_id_of
from drillbook.notify.outbox import OutboxSender
from drillbook.notify.owed import delivery_state
from drillbook.notify.redeliver import MAX_PAGES_PER_RUN, redeliver
from drillbook.notify.slack import SlackConnection
from drillbook.reporting.watchdog import run_watchdog
from drillbook.run.pipeline import record_and_report
from drillbook.settings import load_settings  # the test is the entry point: its settings passed down
from tests.notify.conftest import make_ctx, make_result

# the catalogue's drills appeared long ago: a drill never seen is not missed before one interval plus grace
LONG_AGO = {
    name: datetime.now(UTC) - timedelta(days=30)
    for name in ("web_certs", "api_certs", "quiet_certs", "loud_certs")
}


def slack_notifier(slack, catalogue, ledger, *, timeout: int = 2) -> Notifier:
    conn = SlackConnection(token=slack.token, base_url=slack.base_url, timeout=timeout)
    return Notifier(catalogue=catalogue, sender=SlackSender(connection=conn), ledger=ledger)


def drill_ctx(name: str, n: int, *, try_number: int = 1):
    return make_ctx(dag_id=f"dr_certificates__{name}", run_id=f"scheduled__{name}_{n}", try_number=try_number)


def wd_ctx(n: int):
    return make_ctx(dag_id="dr_watchdog", run_id=f"scheduled__watchdog_{n}", task_id="watchdog")


def copies(slack, record, channel: str | None = None) -> int:
    """Top-level messages in Slack that carry the report id of ``record``."""
    return len(slack.with_marker(report_id_of(record), channel))


def report(ledger, notifier, result, ctx):
    """One drill task: evidence first, then the page; a failed page is recorded by the pipeline and raised."""
    try:
        return record_and_report(result, ctx=ctx, ledger=ledger, notifier=notifier).record
    except NotificationFailed:
        return ledger.record(result, ctx)  # the record the failed page was about (idempotent read-back)


def test_a_slack_outage_over_several_runs_ends_with_every_report_delivered_exactly_once(
    slack, catalogue, ledger_dsn
):
    ledger = Ledger(ledger_dsn)
    notifier = slack_notifier(slack, catalogue, ledger)
    now = datetime.now(UTC)

    # minute 0-4: connection refused; two drills fail to page
    slack.outage(minutes=4, mode="refuse")
    a = report(ledger, notifier, make_result("FAIL", drill="web_certs"), drill_ctx("web_certs", 1))
    b = report(ledger, notifier, make_result("ERROR", drill="web_certs"), drill_ctx("web_certs", 2))
    with pytest.raises(NotificationFailed):
        run_watchdog(catalogue, seen_since=LONG_AGO, ledger=ledger, notifier=notifier, ctx=wd_ctx(1), now=now)
    slack.advance(4 * 60 + 1)

    # minute 4-8: Slack resets connections after reading the request (ambiguous); a PASS for a drill that asks for PASS
    slack.outage(minutes=4, mode="reset")
    c = report(ledger, notifier, make_result("FAIL", drill="loud_certs"), drill_ctx("loud_certs", 1))
    d = report(ledger, notifier, make_result("PASS", drill="loud_certs"), drill_ctx("loud_certs", 2))
    slack.advance(4 * 60 + 1)

    # minute 8-10: HTTP 500; the watchdog runs again, and a digest fails to post
    slack.outage(minutes=2, mode="error")
    with pytest.raises(NotificationFailed):
        run_watchdog(
            catalogue,
            seen_since=LONG_AGO,
            ledger=ledger,
            notifier=notifier,
            ctx=wd_ctx(2),
            now=now + timedelta(hours=1),
        )
    from drillbook.reporting.digest import run_digest

    with pytest.raises(NotificationFailed):
        run_digest(
            catalogue,
            ledger=ledger,
            notifier=notifier,
            ctx=make_ctx(dag_id="dr_digest__daily", run_id="scheduled__d1", task_id="digest"),
            schedule="@daily",
            now=now,
            checkpoints=CheckpointSettings.from_settings(load_settings()),
        )
    digest = ledger.query(record_type="digest")[-1]
    assert slack.posted() == [] and slack.down
    state = delivery_state(ledger)
    assert sorted(o.record.seq for o in state.owed) == sorted([a.seq, b.seq, c.seq, d.seq, digest.seq])
    assert {o.record.seq: o.attempts for o in state.owed}[a.seq] == 3  # the page, and two watchdog re-sends

    # minute 10: Slack is back; the next watchdog run delivers everything, each once
    slack.advance(2 * 60 + 1)
    assert not slack.down
    back = run_watchdog(
        catalogue,
        seen_since=LONG_AGO,
        ledger=ledger,
        notifier=notifier,
        ctx=wd_ctx(3),
        now=now + timedelta(hours=2),
    )
    assert sorted(back.redelivery.resent) == [a.seq, b.seq, c.seq] and back.redelivery.left == 0
    assert sorted(back.redelivery.summarised) == sorted([d.seq, digest.seq])
    for record, channel in (
        (a, "#dr-oncall"),
        (b, "#dr-oncall"),
        (c, "#alerts"),
        (d, "#alerts"),
        (digest, "#dr-digest"),
    ):
        assert copies(slack, record, channel) == 1, record.describe()
    late = slack.with_marker(report_id_of(a))[0]
    assert late.text.startswith("[late] FAIL: web_certs") and "Late delivery" in str(late.blocks)

    # later runs, the CLI flush and a retry of a's task send nothing more
    again = run_watchdog(
        catalogue,
        seen_since=LONG_AGO,
        ledger=ledger,
        notifier=notifier,
        ctx=wd_ctx(4),
        now=now + timedelta(hours=2),
    )
    assert again.redelivery.owed == 0 and again.redelivery.delivered == 0
    retry = record_and_report(
        make_result("FAIL", drill="web_certs"),
        ctx=drill_ctx("web_certs", 1, try_number=2),
        ledger=ledger,
        notifier=notifier,
    )
    assert retry.delivery.main.how == "already re-sent"
    for record in (a, b, c, d, digest):
        assert copies(slack, record) == 1
    assert delivery_state(ledger).owed == []
    assert ledger.verify().ok


def test_a_post_slack_stored_but_answered_too_late_is_not_posted_twice(slack, catalogue, ledger_dsn):
    ledger = Ledger(ledger_dsn)
    notifier = slack_notifier(slack, catalogue, ledger, timeout=1)
    slack.state.strict_ids = (
        True  # like real Slack, history wants the channel ID: found through conversations.list
    )

    # within one call: the answer times out, the history shows the post, it is not sent again
    slack.slow_store(2.5)
    result = make_result("FAIL")
    reported = record_and_report(result, ctx=drill_ctx("web_certs", 1), ledger=ledger, notifier=notifier)
    assert reported.delivery.delivered and reported.delivery.main.how == "found in history"
    assert copies(slack, reported.record) == 1
    assert ledger.query(record_type="notification") == []  # delivered: nothing owed


def test_a_stored_post_whose_history_could_not_be_read_is_found_by_the_retry_and_the_watchdog(
    slack, catalogue, ledger_dsn
):
    ledger = Ledger(ledger_dsn)
    notifier = slack_notifier(slack, catalogue, ledger, timeout=1)

    # try 1: stored, answered too late, and the history cannot be read: recorded as failed, not re-posted
    slack.slow_store(2.5)
    slack.fail("conversations.history", status=500, times=3)
    first = report(ledger, notifier, make_result("FAIL"), drill_ctx("web_certs", 1))
    assert [n.codes for n in ledger.query(record_type="notification")] == [["NOTIFY_FAILED"]]
    assert "not posted again" in ledger.query(record_type="notification")[0].result["findings"][0]["message"]
    assert copies(slack, first) == 1

    # try 2 of the same task finds it in the history: no second page, and the delivery is recorded
    retry = record_and_report(
        make_result("FAIL"), ctx=drill_ctx("web_certs", 1, try_number=2), ledger=ledger, notifier=notifier
    )
    assert retry.delivery.main.how == "found in history"
    assert [n.codes for n in ledger.query(record_type="notification")] == [
        ["NOTIFY_FAILED"],
        ["NOTIFY_REDELIVERED"],
    ]

    # another drill: stored, unanswered, history unreadable; the watchdog finds it later instead of re-posting
    slack.slow_store(2.5)
    slack.fail("conversations.history", status=500, times=3)
    second = report(ledger, notifier, make_result("ERROR"), drill_ctx("web_certs", 2))
    run = redeliver(ledger, notifier, ctx=wd_ctx(1))
    assert run.found == [second.seq] and run.resent == [] and run.left == 0
    assert copies(slack, first) == 1 and copies(slack, second) == 1
    assert redeliver(ledger, notifier, ctx=wd_ctx(2)).owed == 0
    assert ledger.verify().ok


def test_a_report_nobody_was_told_about_is_delivered_once_slack_is_configured(
    slack, catalogue, catalogue_file, ledger_dsn, tmp_path, monkeypatch, capsys
):
    from drillbook.cli import main

    ledger = Ledger(ledger_dsn)
    offline = Notifier(
        catalogue=catalogue, sender=OutboxSender(path=tmp_path / "outbox.jsonl"), ledger=ledger
    )
    record = record_and_report(
        make_result("FAIL"), ctx=drill_ctx("web_certs", 1), ledger=ledger, notifier=offline
    ).record
    assert [n.codes for n in ledger.query(record_type="notification")] == [["NOTIFY_NOT_CONFIGURED"]]

    # no Slack yet: the watchdog cannot deliver it, and flush says what is missing
    quiet = redeliver(ledger, offline, ctx=wd_ctx(1))
    assert (quiet.owed, quiet.left, quiet.delivered) == (1, 1, 0)
    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK")
    assert main(["outbox", "flush", "--ledger-dsn", ledger_dsn, "--catalogue", str(catalogue_file)]) == 2
    assert "needs a Slack connection" in capsys.readouterr().err
    monkeypatch.delenv("DRILLBOOK_LEDGER_DSN", raising=False)
    assert main(["outbox", "flush", "--catalogue", str(catalogue_file)]) == 2
    assert "--ledger-dsn" in capsys.readouterr().err

    assert main(["outbox", "owed", "--ledger-dsn", ledger_dsn]) == 1
    listed = capsys.readouterr()
    assert f"#{record.seq}" in listed.out and "NOTIFY_NOT_CONFIGURED, 1 failed attempt(s)" in listed.out
    assert report_id_of(record) in listed.out and "1 report(s) owed" in listed.err

    # Slack configured: one flush delivers it, the next finds nothing owed, nor does the watchdog
    monkeypatch.setenv(
        "AIRFLOW_CONN_DRILLBOOK_SLACK",
        f'{{"conn_type": "slack", "password": "{slack.token}", '
        f'"extra": {{"base_url": "{slack.base_url}", "timeout": 5}}}}',
    )
    assert main(["outbox", "flush", "--ledger-dsn", ledger_dsn, "--catalogue", str(catalogue_file)]) == 0
    out = capsys.readouterr().out
    assert "1 report(s) owed; 1 re-sent" in out and "0 still owed" in out
    assert main(["outbox", "flush", "--ledger-dsn", ledger_dsn, "--catalogue", str(catalogue_file)]) == 0
    assert "0 report(s) owed" in capsys.readouterr().out
    assert main(["outbox", "owed", "--ledger-dsn", ledger_dsn]) == 0
    online = slack_notifier(slack, catalogue, ledger)
    assert (
        run_watchdog(
            catalogue, seen_since=LONG_AGO, ledger=ledger, notifier=online, ctx=wd_ctx(2)
        ).redelivery.owed
        == 0
    )
    assert copies(slack, record, "#dr-oncall") == 1
    assert slack.token not in str([n.result for n in ledger.query()])
    assert ledger.verify().ok


def test_the_flood_after_slack_is_first_configured_is_bounded(slack, catalogue, ledger_dsn, tmp_path):
    ledger = Ledger(ledger_dsn)
    offline = Notifier(
        catalogue=catalogue, sender=OutboxSender(path=tmp_path / "outbox.jsonl"), ledger=ledger
    )
    fails = [
        record_and_report(
            make_result("FAIL"), ctx=drill_ctx("web_certs", n), ledger=ledger, notifier=offline
        ).record
        for n in range(MAX_PAGES_PER_RUN + 3)
    ]
    passes = [
        record_and_report(
            make_result("PASS", drill="loud_certs"),
            ctx=drill_ctx("loud_certs", n),
            ledger=ledger,
            notifier=offline,
        ).record
        for n in range(30)
    ]
    online = slack_notifier(slack, catalogue, ledger)

    first = redeliver(ledger, online, ctx=wd_ctx(1))
    assert len(first.resent) == MAX_PAGES_PER_RUN and len(first.summarised) == 30 and first.left == 3
    pages = [m for m in slack.posted("#dr-oncall") if m.thread_ts is None]
    summaries = [m for m in slack.posted("#alerts") if m.thread_ts is None]
    assert len(pages) == MAX_PAGES_PER_RUN and len(summaries) == 1  # 30 PASS reports in one message
    assert "30 reports not delivered at the time" in summaries[0].text and "and 5 more" in str(
        summaries[0].blocks
    )

    second = redeliver(ledger, online, ctx=wd_ctx(2))
    assert len(second.resent) == 3 and second.left == 0
    assert all(copies(slack, r) == 1 for r in fails)
    assert len(slack.posted("#alerts")) == 1
    assert redeliver(ledger, online, ctx=wd_ctx(3)).owed == 0
    del passes


def test_a_history_that_cannot_be_read_for_good_does_not_block_the_resend(slack, catalogue, ledger_dsn):
    ledger = Ledger(ledger_dsn)
    notifier = slack_notifier(slack, catalogue, ledger)
    slack.fail("chat.postMessage", error="channel_not_found", times=1)
    record = report(ledger, notifier, make_result("FAIL"), drill_ctx("web_certs", 1))
    slack.fail("conversations.history", error="missing_scope", times=1)  # a bot without channels:history
    run = redeliver(ledger, notifier, ctx=wd_ctx(1))
    assert run.resent == [record.seq] and copies(slack, record) == 1


def test_a_resend_during_an_outage_is_recorded_and_stays_owed(slack, catalogue, ledger_dsn):
    ledger = Ledger(ledger_dsn)
    notifier = slack_notifier(slack, catalogue, ledger)
    slack.outage(mode="error")  # until switched off
    record = report(ledger, notifier, make_result("FAIL"), drill_ctx("web_certs", 1))
    run = redeliver(ledger, notifier, ctx=wd_ctx(1))
    assert run.error and run.left == 1 and run.delivered == 0
    rows = ledger.query(record_type="notification")
    assert [r.codes for r in rows] == [["NOTIFY_FAILED"], ["NOTIFY_FAILED"]]
    assert rows[1].result["details"]["redelivery"]["of"][0]["seq"] == record.seq
    slack.end_outage()
    assert redeliver(ledger, notifier, ctx=wd_ctx(2)).resent == [record.seq]
    assert copies(slack, record) == 1


def test_rate_limited_after_the_retries_says_so_without_contradicting_itself(slack, catalogue):
    slack.fail("chat.postMessage", status=429, retry_after=1, times=3)
    with pytest.raises(NotificationFailed) as raised:
        slack_notifier(slack, catalogue, None, timeout=5).notify(make_result("FAIL"), None, make_ctx())
    text = str(raised.value)
    assert "HTTP 429 still, after 2 retries that waited as asked (last Retry-After 1 s)" in text
    assert "more than drillbook waits" not in text


def test_drillbook_watchdog_says_what_it_resent(
    slack, catalogue_file, catalogue, ledger_dsn, tmp_path, capsys
):
    from drillbook.cli import main

    ledger = Ledger(ledger_dsn)
    offline = Notifier(
        catalogue=catalogue, sender=OutboxSender(path=tmp_path / "outbox.jsonl"), ledger=ledger
    )
    record = record_and_report(
        make_result("ERROR"), ctx=drill_ctx("web_certs", 1), ledger=ledger, notifier=offline
    ).record
    main(
        ["watchdog", "--ledger-dsn", ledger_dsn, "--catalogue", str(catalogue_file)]
    )  # Slack is set by the fixture
    assert "1 undelivered report(s): 1 delivered now, 0 still owed" in capsys.readouterr().err
    main(["watchdog", "--ledger-dsn", ledger_dsn, "--catalogue", str(catalogue_file)])
    assert "undelivered" not in capsys.readouterr().err
    assert copies(slack, record, "#dr-oncall") == 1


def test_a_reset_after_slack_stored_the_post_is_not_posted_twice(slack, catalogue, ledger_dsn):
    ledger = Ledger(ledger_dsn)
    slack.slow_store(0.2, then="reset")  # stored, then the connection closes without an answer
    reported = record_and_report(
        make_result("FAIL"),
        ctx=drill_ctx("web_certs", 1),
        ledger=ledger,
        notifier=slack_notifier(slack, catalogue, ledger),
    )
    assert reported.delivery.main.how == "found in history"
    assert copies(slack, reported.record) == 1


def test_a_reset_before_slack_stored_the_post_is_posted_again_once(slack, catalogue, ledger_dsn):
    ledger = Ledger(ledger_dsn)
    slack.drop("chat.postMessage")  # read, not stored, connection closed: ambiguous to the client
    reported = record_and_report(
        make_result("FAIL"),
        ctx=drill_ctx("web_certs", 1),
        ledger=ledger,
        notifier=slack_notifier(slack, catalogue, ledger),
    )
    assert reported.delivery.main.how == "posted"
    assert copies(slack, reported.record) == 1
    assert (
        len([r for r in slack.state.requests if r["method"] == "conversations.history"]) == 1
    )  # looked before posting again
    assert ledger.query(record_type="notification") == []


def test_a_retry_that_delivers_after_a_failed_try_is_recorded_so_the_watchdog_does_not_resend_it(
    slack, catalogue, ledger_dsn
):
    ledger = Ledger(ledger_dsn)
    notifier = slack_notifier(slack, catalogue, ledger)
    slack.outage(mode="error")
    first = report(ledger, notifier, make_result("FAIL"), drill_ctx("web_certs", 1))
    slack.end_outage()
    retry = record_and_report(
        make_result("FAIL"), ctx=drill_ctx("web_certs", 1, try_number=2), ledger=ledger, notifier=notifier
    )
    assert retry.delivery.main.how == "posted"
    late = ledger.query(record_type="notification")[-1]
    assert late.codes == ["NOTIFY_REDELIVERED"] and late.try_number == 2
    assert redeliver(ledger, notifier, ctx=wd_ctx(1)).owed == 0
    assert copies(slack, first) == 1


def test_a_quiet_report_already_in_a_summary_is_not_summarised_again(slack, catalogue, ledger_dsn, tmp_path):
    ledger = Ledger(ledger_dsn)
    offline = Notifier(
        catalogue=catalogue, sender=OutboxSender(path=tmp_path / "outbox.jsonl"), ledger=ledger
    )
    record = record_and_report(
        make_result("PASS", drill="loud_certs"),
        ctx=drill_ctx("loud_certs", 1),
        ledger=ledger,
        notifier=offline,
    ).record
    online = slack_notifier(slack, catalogue, ledger, timeout=1)
    slack.slow_store(2.5)  # the summary is stored, answered too late,
    slack.fail(
        "conversations.history", status=500, times=3, after=1
    )  # and then the history cannot be read: a failure
    first = redeliver(ledger, online, ctx=wd_ctx(1))
    assert first.error and first.left == 1 and copies(slack, record, "#alerts") == 1
    second = redeliver(
        ledger, online, ctx=wd_ctx(2)
    )  # the next run finds the report's id in the stored summary
    assert second.found == [record.seq] and second.summarised == [] and second.left == 0
    assert copies(slack, record, "#alerts") == 1


def test_a_rate_limit_outage_fails_fast_and_the_report_is_sent_once_it_lifts(slack, catalogue, ledger_dsn):
    ledger = Ledger(ledger_dsn)
    notifier = slack_notifier(slack, catalogue, ledger)
    slack.outage(minutes=60, mode="429", retry_after=3600)  # Slack says: come back in an hour
    record = report(ledger, notifier, make_result("FAIL"), drill_ctx("web_certs", 1))
    failed = ledger.query(record_type="notification")[0]
    assert "Retry-After 3600 s, more than drillbook waits" in failed.result["findings"][0]["message"]
    assert redeliver(ledger, notifier, ctx=wd_ctx(1)).left == 1  # still limited: stays owed
    slack.advance(3601)
    assert redeliver(ledger, notifier, ctx=wd_ctx(2)).resent == [record.seq]
    assert copies(slack, record) == 1
