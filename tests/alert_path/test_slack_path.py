"""Slack path through the emulator: read-back by nonce, refusals, lost and slow canaries."""

from __future__ import annotations

import json

import pytest

from drillbook.drills.alert_path import run_alert_path
from drillbook.drills.alert_path.clients import EnvPathClients
from drillbook.result import Verdict
from tests.alert_path.conftest import closed_port, make_drill


def slack_drill(**kw):
    cleanup = kw.pop("cleanup", "mark")
    return make_drill({"name": "oncall", "type": "slack", "channel": "#dr-oncall", "cleanup": cleanup}, **kw)


def run(drill):
    [result] = run_alert_path(drill=drill, clients=EnvPathClients())
    return result


def test_seen_in_history_passes_with_latency_and_marks_the_canary(slack, leak_check):
    result = run(slack_drill())
    assert result.verdict is Verdict.PASS, result.findings
    assert result.codes() == []
    d = result.details["delivery"]
    assert d["latency_seconds"] is not None and 0 <= d["latency_seconds"] < 2
    assert d["sent_at"] and d["seen_at"] and d["attempts"] == 1 and d["http_status"] == 200
    assert result.measurements.values["latency_seconds"] == d["latency_seconds"]
    assert result.objectives == {"delivery_seconds": 2.0, "give_up_seconds": 4.0}
    [msg] = slack.posted("#dr-oncall")
    assert "drillbook test alert — no action needed" in msg.text
    assert result.details["nonce"] in msg.text and "verified by drillbook" in msg.text  # marked
    assert d["cleanup"] == "marked"
    leak_check.record([result])
    leak_check.assert_clean(slack.token)


def test_delete_cleanup_removes_the_canary(slack):
    result = run(slack_drill(cleanup="delete"))
    assert result.verdict is Verdict.PASS
    assert slack.posted("#dr-oncall") == []
    assert result.details["delivery"]["cleanup"] == "deleted"


def test_never_visible_is_not_delivered(slack, leak_check):
    slack.state.hidden = True
    result = run(slack_drill(give_up="2s"))
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_NOT_DELIVERED"]
    d = result.details["delivery"]
    assert d["seen_at"] is None and d["latency_seconds"] is None and d["polls"] >= 2
    phases = result.measurements.phase_seconds
    assert (
        1.95 <= phases["send"] + phases["read back"] < 3.5
    )  # kept looking until give_up (from the send), no longer
    leak_check.record([result])
    leak_check.assert_clean(slack.token)


def test_visible_after_the_objective_is_slow_not_lost(slack):
    slack.state.visibility_delay = 1.6
    result = run(slack_drill(delivery="1s", give_up="4s"))
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_SLOW"]
    assert 1.6 <= result.details["delivery"]["latency_seconds"] < 3


def test_not_in_channel_is_rejected(slack, leak_check):
    slack.state.member_of.discard("C0ONCALL")
    result = run(slack_drill())
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_REJECTED"]
    assert result.findings[0].detail["slack_error"] == "not_in_channel"
    leak_check.record([result])
    leak_check.assert_clean(slack.token)


def test_unknown_channel_is_rejected(slack):
    drill = make_drill({"name": "oncall", "type": "slack", "channel": "#no-such-channel"})
    result = run(drill)
    assert result.codes() == ["ALERT_REJECTED"]
    assert result.findings[0].detail["slack_error"] == "channel_not_found"


def test_wrong_token_is_invalid_auth_and_rejected(slack, monkeypatch, leak_check):
    wrong = "xoxb-wrong-drillbook-token-777"
    conn = {"conn_type": "slack", "password": wrong, "extra": {"base_url": slack.base_url}}
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_SLACK", json.dumps(conn))
    result = run(slack_drill())
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_REJECTED"]
    assert result.findings[0].detail["slack_error"] == "invalid_auth"
    leak_check.record([result])
    leak_check.assert_clean(wrong, slack.token)


def test_persistent_500_is_rejected_after_retries(slack):
    slack.fail("chat.postMessage", status=500, times=5)
    result = run(slack_drill())
    assert result.codes() == ["ALERT_REJECTED"]
    assert result.details["delivery"]["attempts"] == 3
    assert result.details["delivery"]["http_status"] == 500


def test_history_without_scope_could_not_verify(slack):
    slack.fail("conversations.history", error="missing_scope", times=50)
    result = run(slack_drill())
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["ALERT_READBACK_FAILED"]
    assert result.details["delivery"]["cleanup"] == "marked"  # the posted canary is still tidied


def test_unreachable_api_is_error(monkeypatch):
    conn = {
        "conn_type": "slack",
        "password": "xoxb-unreachable-000000",
        "extra": {"base_url": f"http://127.0.0.1:{closed_port()}/api/"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_SLACK", json.dumps(conn))
    result = run(slack_drill())
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["ALERT_PATH_UNREACHABLE"]


def test_missing_connection_is_error(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK", raising=False)
    monkeypatch.delenv("DRILLBOOK_CONN_DRILLBOOK_SLACK", raising=False)
    result = run(slack_drill())
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["CONNECTION_MISSING"]


@pytest.mark.parametrize("bad", [{"delivery": "10s", "give_up": "5s"}])
def test_give_up_shorter_than_objective_is_a_catalogue_error(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="give_up"):
        make_drill({"name": "p", "type": "slack", "channel": "#x", **bad})


@pytest.mark.parametrize("status", [500, 429])
def test_history_never_readable_could_not_verify_not_not_delivered(slack, status):
    # every read of the history hiccups until give_up: absence was never observed, so this is no FAIL
    slack.fail(
        "conversations.history",
        status=status,
        error="internal_error" if status == 500 else "ratelimited",
        retry_after=0,
        times=1000,
    )
    result = run(slack_drill(give_up="2s"))
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["ALERT_READBACK_FAILED"]
    assert result.measurements.counts["checks_run"] == 0
    d = result.details["delivery"]
    assert d["history_reads_ok"] == 0 and d["history_reads_failed"] >= 1
    assert result.findings[0].detail["http_status"] == status
    assert d["cleanup"] == "marked"  # the posted canary is still tidied


def test_history_hiccups_then_answers_still_passes(slack):
    slack.fail("conversations.history", status=500, error="internal_error", times=2)
    result = run(slack_drill())
    assert result.verdict is Verdict.PASS, result.findings
    assert result.codes() == []
    assert result.details["delivery"]["history_reads_failed"] == 2


def test_hidden_canary_with_readable_history_is_still_not_delivered(slack):
    # the history answered (and did not hold the canary) while other reads failed: delivery was disproven
    slack.state.hidden = True
    slack.fail("conversations.history", status=500, error="internal_error", times=2)
    result = run(slack_drill(give_up="2s"))
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_NOT_DELIVERED"]
    assert result.details["delivery"]["history_reads_ok"] >= 1
