"""The watchdog: missed, never verified, stale, and one message per incident (not one per hour)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from drillbook.errors import NotificationFailed
from drillbook.ledger.store import Ledger
from drillbook.notify import Notifier, SlackSender
from drillbook.notify.slack import SlackConnection
from drillbook.reporting.assessment import assess, assess_drill
from drillbook.reporting.drill_history import DrillHistory, history_from_records
from drillbook.reporting.incident_state import plan_drill
from drillbook.reporting.watchdog import run_watchdog
from tests.notify.conftest import make_ctx, make_result

D = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)


def at(hours: float) -> datetime:
    return D + timedelta(hours=hours)


def codes(incidents) -> list[str]:
    return [i.code for i in incidents]


def check(catalogue, name, history, now):
    drill = catalogue.drill(name)
    return codes(
        assess_drill(drill, history, now=now, grace=3600, max_unverified=catalogue.max_unverified_of(drill))
    )


def test_missed_when_a_drill_has_no_row(catalogue):
    seen_long_ago = DrillHistory(
        first_seen=at(-100)
    )  # first appearance: see tests/deploy/test_first_start.py
    assert check(catalogue, "web_certs", seen_long_ago, at(8)) == ["DRILL_MISSED"]
    assert set(assess(catalogue, {}, now=at(8))) == {"web_certs", "api_certs", "quiet_certs", "loud_certs"}


def test_a_drill_is_not_missed_for_a_due_time_before_it_came_into_force(catalogue):
    drill = catalogue.drill("web_certs")  # daily at 06:00 UTC
    seen_long_ago = DrillHistory(first_seen=at(-100))
    ran_yesterday = DrillHistory(newest_at=at(6.02 - 24), last_pass_at=at(6.02 - 24), first_at=at(-100))

    def incidents(since, history, now):
        changed = drill.model_copy(update={"since": since})
        return codes(assess_drill(changed, history, now=now, grace=3600, max_unverified=10**9))

    # in force from 06:30 today: today's 06:00 run was due before it, so nothing is missed yet
    assert incidents(at(6.5).isoformat(), seen_long_ago, at(8)) == []
    assert incidents(at(6.5).isoformat(), ran_yesterday, at(8)) == []
    # tomorrow's 06:00 run is due after it: missed once its grace has passed
    assert incidents(at(6.5).isoformat(), ran_yesterday, at(31.01)) == ["DRILL_MISSED"]
    # in force since before today's 06:00: missed as without since
    assert incidents(at(5).isoformat(), seen_long_ago, at(8)) == ["DRILL_MISSED"]
    assert incidents(None, ran_yesterday, at(8)) == ["DRILL_MISSED"]


def test_quiet_when_on_time_and_within_grace_missed_after(catalogue):
    ran_today = DrillHistory(newest_at=at(6.02), last_pass_at=at(6.02), first_at=at(-100))
    assert check(catalogue, "web_certs", ran_today, at(8)) == []
    ran_yesterday = DrillHistory(newest_at=at(6.02 - 24), last_pass_at=at(6.02 - 24), first_at=at(-100))
    assert (
        check(catalogue, "web_certs", ran_yesterday, at(6.5)) == []
    )  # today's 06:00 run is still within grace
    assert check(catalogue, "web_certs", ran_yesterday, at(7.01)) == ["DRILL_MISSED"]
    hourly = DrillHistory(newest_at=at(7.01), last_pass_at=at(7.01), first_at=at(-10))
    assert check(catalogue, "api_certs", hourly, at(8.5)) == []
    assert check(catalogue, "api_certs", hourly, at(9.01)) == ["DRILL_MISSED"]


def test_never_verified_when_errors_outlast_the_grace(catalogue):
    def rec(hours, verdict):  # one row per run
        return SimpleNamespace(
            recorded_at=at(hours), verdict=verdict, dag_id="dr_certificates__web_certs", run_id=f"r{hours}"
        )

    one_error = history_from_records(
        [rec(6, "ERROR"), rec(-18, "PASS")], last_pass_at=at(-18), first_at=at(-100)
    )
    assert check(catalogue, "web_certs", one_error, at(7.5)) == []  # a single ERROR pages by itself
    streak = history_from_records(
        [rec(30, "ERROR"), rec(6, "ERROR"), rec(-18, "PASS")], last_pass_at=at(-18), first_at=at(-100)
    )
    assert streak.error_streak == (at(6), at(30))
    assert check(catalogue, "web_certs", streak, at(31)) == ["DRILL_NEVER_VERIFIED"]
    fail_between = history_from_records([rec(30, "ERROR"), rec(6, "FAIL")], last_pass_at=None, first_at=at(6))
    assert check(catalogue, "web_certs", fail_between, at(31)) == []


def test_stale_when_the_newest_pass_is_older_than_max_unverified(catalogue):
    old_pass = DrillHistory(newest_at=at(6.01), last_pass_at=at(6.01 - 9 * 24), first_at=at(-1000))
    assert check(catalogue, "web_certs", old_pass, at(7)) == ["DRILL_STALE"]  # defaults.max_unverified 8d
    recent = DrillHistory(newest_at=at(6.01), last_pass_at=at(6.01 - 24), first_at=at(-1000))
    assert check(catalogue, "web_certs", recent, at(7)) == []
    assert check(
        catalogue,
        "api_certs",
        DrillHistory(newest_at=at(6.5), last_pass_at=at(6.5 - 49), first_at=at(-1000)),
        at(7),
    ) == ["DRILL_STALE"]  # the drill's own max_unverified: 2d
    never = DrillHistory(newest_at=at(6.01), last_pass_at=None, first_at=at(6.01 - 9 * 24))
    assert check(catalogue, "web_certs", never, at(7)) == ["DRILL_STALE"]
    new_drill = DrillHistory(newest_at=at(6.01), last_pass_at=None, first_at=at(6.01 - 24))
    assert check(catalogue, "web_certs", new_drill, at(7)) == []


def test_plan_posts_once_then_after_renotify_then_the_resolution(catalogue):
    incident = assess(catalogue, {"web_certs": DrillHistory(first_seen=at(-100))}, now=at(8))["web_certs"]
    first = plan_drill("web_certs", incident, {}, now=at(8), renotify=24 * 3600)
    assert codes(first.post) == ["DRILL_MISSED"] and first.changed
    hour_later = plan_drill("web_certs", incident, first.state, now=at(9), renotify=24 * 3600)
    assert hour_later.post == [] and not hour_later.changed
    day_later = plan_drill("web_certs", incident, hour_later.state, now=at(32), renotify=24 * 3600)
    assert (
        codes(day_later.post) == ["DRILL_MISSED"]
        and day_later.state["DRILL_MISSED"]["since"] == at(8).isoformat()
    )
    resolved = plan_drill("web_certs", [], day_later.state, now=at(33), renotify=24 * 3600)
    assert resolved.resolved == ["DRILL_MISSED"] and resolved.changed and resolved.state == {}


# --- with the real ledger and the Slack emulator -------------------------------------------------------
def notifier(slack, catalogue) -> Notifier:
    conn = SlackConnection(token=slack.token, base_url=slack.base_url, timeout=5)
    return Notifier(catalogue=catalogue, sender=SlackSender(connection=conn))


# every drill of the catalogue appeared long ago (a first appearance within the last interval is not paged)
LONG_AGO = {
    name: datetime.now(UTC) - timedelta(days=30)
    for name in ("web_certs", "api_certs", "quiet_certs", "loud_certs")
}


def watchdog_ctx(n: int):
    return make_ctx(dag_id="dr_watchdog", run_id=f"scheduled__watchdog_{n}", task_id="watchdog")


def top_level(slack, channel):
    return [m.text for m in slack.posted(channel) if m.thread_ts is None]


def test_run_watchdog_pages_once_an_hour_apart_and_reports_the_resolution(slack, catalogue, ledger_dsn):
    ledger = Ledger(ledger_dsn)
    now = datetime.now(UTC)
    ledger.record(
        make_result("PASS", drill="web_certs", started=now - timedelta(seconds=5)), make_ctx(run_id="r-web")
    )
    n = notifier(slack, catalogue)

    # "an hour later" is 59m59s: any later and a drill due on the hour could legitimately be missed by then
    hour_later = now + timedelta(seconds=3599)
    first = run_watchdog(
        catalogue, ledger=ledger, notifier=n, seen_since=LONG_AGO, ctx=watchdog_ctx(1), now=now
    )
    assert {k: codes(v) for k, v in first.incidents.items()} == {
        "web_certs": [],
        "api_certs": ["DRILL_MISSED"],
        "quiet_certs": ["DRILL_MISSED"],
        "loud_certs": ["DRILL_MISSED"],
    }
    oncall = top_level(slack, "#dr-oncall")
    assert len(oncall) == 2 and all(t.startswith("DRILL_MISSED: ") for t in oncall)
    alerts = top_level(slack, "#alerts")
    assert len(alerts) == 1 and alerts[0].startswith("DRILL_MISSED: loud_certs: ")
    rows = ledger.query(record_type="watchdog")
    assert sorted(r.drill for r in rows) == [
        "api_certs",
        "loud_certs",
        "quiet_certs",
    ]  # no row for a quiet drill
    assert all(r.codes == ["DRILL_MISSED"] and r.verdict == "FAIL" for r in rows)

    second = run_watchdog(
        catalogue, ledger=ledger, notifier=n, seen_since=LONG_AGO, ctx=watchdog_ctx(2), now=hour_later
    )
    assert second.posted == 0
    assert len(slack.posted()) == 3
    assert len(ledger.query(record_type="watchdog")) == 3  # nothing changed: nothing written

    ledger.record(
        make_result("PASS", drill="api_certs", started=now),
        make_ctx(run_id="r-api", dag_id="dr_certificates__api_certs"),
    )
    third = run_watchdog(
        catalogue, ledger=ledger, notifier=n, seen_since=LONG_AGO, ctx=watchdog_ctx(3), now=hour_later
    )
    assert third.posted == 1
    assert top_level(slack, "#dr-oncall")[-1] == "RESOLVED: DRILL_MISSED for api_certs"
    latest = ledger.query(record_type="watchdog", drill="api_certs", newest_first=True, limit=1)[0]
    assert latest.verdict == "PASS" and latest.codes == []
    assert ledger.verify().ok


def test_a_failed_watchdog_post_is_recorded_and_retried_next_hour(slack, catalogue, ledger_dsn):
    ledger = Ledger(ledger_dsn)
    now = datetime.now(UTC)
    for name in ("web_certs", "api_certs", "loud_certs"):
        ledger.record(
            make_result("PASS", drill=name, started=now),
            make_ctx(run_id=f"r-{name}", dag_id=f"dr_certificates__{name}"),
        )
    slack.fail("chat.postMessage", error="invalid_auth", times=1)
    n = notifier(slack, catalogue)
    with pytest.raises(NotificationFailed, match="invalid_auth"):
        run_watchdog(catalogue, ledger=ledger, notifier=n, seen_since=LONG_AGO, ctx=watchdog_ctx(1), now=now)
    assert [
        (r.record_type, r.drill, r.codes)
        for r in ledger.query(since=now - timedelta(seconds=1))
        if r.record_type != "drill"
    ] == [("watchdog", "quiet_certs", ["DRILL_MISSED"]), ("notification", "quiet_certs", ["NOTIFY_FAILED"])]
    again = run_watchdog(
        catalogue,
        ledger=ledger,
        notifier=n,
        seen_since=LONG_AGO,
        ctx=watchdog_ctx(2),
        now=now + timedelta(seconds=3599),
    )
    assert again.posted == 1
    oncall = top_level(slack, "#dr-oncall")
    assert len(oncall) == 1 and oncall[0].startswith("DRILL_MISSED: quiet_certs: ")
