"""Webhook paths against a receiver on 127.0.0.1: acceptance, refusals, read-back, resolve."""

from __future__ import annotations

import json

import pytest

from drillbook.drills.alert_path import run_alert_path
from drillbook.drills.alert_path.clients import EnvPathClients
from drillbook.result import Verdict
from tests.alert_path.conftest import closed_port, make_drill

PATH_TOKEN = "whk-path-T0ken-1234567890abcdef"
HEADER_TOKEN = "hdr-secret-0987654321-drillbook"
PASSWORD = "pw-bearer-secret-42-drillbook"


@pytest.fixture
def hook_conn(webhook, monkeypatch):
    """An HTTP connection whose URL path, password and a header all carry secrets."""

    def set_conn(
        *,
        host: str | None = None,
        password: str | None = PASSWORD,
        extra: dict | None = None,
        login: str | None = None,
    ):
        conn = {
            "conn_type": "http",
            "host": host or f"{webhook.origin}/hooks/{PATH_TOKEN}",
            "password": password,
            "login": login,
            "extra": {"headers": {"X-Webhook-Token": HEADER_TOKEN}} if extra is None else extra,
        }
        monkeypatch.setenv("AIRFLOW_CONN_ALERT_HOOK", json.dumps(conn))

    set_conn()
    return set_conn


def hook_drill(**path_kw):
    drill_kw = {k: path_kw.pop(k) for k in ("delivery", "give_up") if k in path_kw}
    return make_drill({"name": "hook", "type": "webhook", "connection": "alert_hook", **path_kw}, **drill_kw)


def run(drill):
    [result] = run_alert_path(drill=drill, clients=EnvPathClients())
    return result


SECRETS = (PATH_TOKEN, HEADER_TOKEN, PASSWORD)


def test_2xx_without_readback_passes_as_accepted(webhook, hook_conn, leak_check):
    result = run(hook_drill())
    assert result.verdict is Verdict.PASS, result.findings
    d = result.details["delivery"]
    assert d["http_status"] == 202 and d["attempts"] == 1
    # nothing was read back, so nothing was seen and no latency was measured
    assert (
        d["seen_via"].startswith("accepted, not seen")
        and d["latency_seconds"] is None
        and d["seen_at"] is None
    )
    assert d["destination"] == f"{webhook.origin}/hooks/***"
    [post] = webhook.posts()
    assert post.path == f"/hooks/{PATH_TOKEN}"
    assert (
        post.headers["Authorization"] == f"Bearer {PASSWORD}"
        and post.headers["X-Webhook-Token"] == HEADER_TOKEN
    )
    assert (
        post.body["nonce"] == result.details["nonce"]
        and post.body["label"] == "drillbook test alert — no action needed"
    )
    leak_check.record([result])
    leak_check.assert_clean(*SECRETS)


def test_a_connection_without_schema_is_http_like_httphook(webhook, hook_conn):
    hook_conn(host=webhook.origin.removeprefix("http://") + "/hooks/x")  # no schema, no conn schema field
    result = run(hook_drill())
    assert result.verdict is Verdict.PASS, result.findings
    assert result.details["delivery"]["destination"].startswith("http://127.0.0.1:")
    assert len(webhook.posts()) == 1


def test_a_token_as_the_only_path_segment_is_hidden_too(webhook, hook_conn, leak_check):
    hook_conn(host=f"{webhook.origin}/{PATH_TOKEN}")
    result = run(hook_drill())
    assert result.verdict is Verdict.PASS
    assert PATH_TOKEN not in result.details["delivery"]["destination"]
    leak_check.record([result])
    leak_check.assert_clean(*SECRETS)


def test_readback_seen_passes_with_latency(webhook, hook_conn, leak_check):
    webhook.state.required_auth = f"Bearer {PASSWORD}"  # the read-back on the same host gets the same auth
    result = run(hook_drill(readback_url="/readback?nonce={nonce}"))
    assert result.verdict is Verdict.PASS, result.findings
    d = result.details["delivery"]
    assert d["seen_via"] == "read-back" and d["latency_seconds"] < 2
    assert d["readback_url"] == f"{webhook.origin}/readback?***"
    leak_check.record([result])
    leak_check.assert_clean(*SECRETS)


def test_readback_never_seen_is_not_delivered(webhook, hook_conn, leak_check):
    webhook.state.readback_delay = None
    result = run(hook_drill(readback_url="/readback", give_up="2s"))
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_NOT_DELIVERED"]
    assert result.details["delivery"]["polls"] >= 5
    leak_check.record([result])
    leak_check.assert_clean(*SECRETS)


def test_slow_readback_is_alert_slow(webhook, hook_conn):
    webhook.state.readback_delay = 1.5
    result = run(hook_drill(readback_url="/readback", delivery="1s", give_up="3s"))
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_SLOW"]
    assert 1.5 <= result.details["delivery"]["latency_seconds"] < 3


def test_readback_that_never_answers_2xx_could_not_verify(webhook, hook_conn):
    webhook.state.readback_status = 403
    result = run(hook_drill(readback_url="/readback", delivery="1s", give_up="1s"))
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["ALERT_READBACK_FAILED"]


def test_persistent_500_is_rejected_after_three_attempts(webhook, hook_conn, leak_check):
    webhook.state.default_status = 500
    result = run(hook_drill())
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_REJECTED"]
    d = result.details["delivery"]
    assert d["http_status"] == 500 and d["attempts"] == 3 and len(webhook.posts()) == 3
    leak_check.record([result])
    leak_check.assert_clean(*SECRETS)


def test_one_500_then_2xx_passes_after_a_retry(webhook, hook_conn):
    webhook.state.statuses = [503]
    result = run(hook_drill())
    assert result.verdict is Verdict.PASS
    assert result.details["delivery"]["attempts"] == 2


def test_4xx_is_rejected_without_retry(webhook, hook_conn):
    hook_conn(password="pw-wrong-token-drillbook-1")
    webhook.state.required_auth = f"Bearer {PASSWORD}"
    result = run(hook_drill())
    assert result.codes() == ["ALERT_REJECTED"]
    assert result.details["delivery"]["http_status"] == 401 and len(webhook.posts()) == 1


def test_connection_refused_is_unreachable_error(hook_conn, leak_check):
    hook_conn(host=f"http://127.0.0.1:{closed_port()}/hooks/{PATH_TOKEN}")
    result = run(hook_drill())
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["ALERT_PATH_UNREACHABLE"]
    assert result.findings[0].detail["error"] == "ConnectError"
    leak_check.record([result])
    leak_check.assert_clean(*SECRETS)


def test_several_paths_give_one_result_each(webhook, hook_conn, slack, leak_check):
    drill = make_drill(
        {"name": "hook", "type": "webhook", "connection": "alert_hook"},
        {"name": "oncall", "type": "slack", "channel": "#dr-oncall"},
        {"name": "dead", "type": "webhook", "connection": "dead_hook"},
    )
    import os

    os.environ["AIRFLOW_CONN_DEAD_HOOK"] = json.dumps(
        {"conn_type": "http", "host": f"http://127.0.0.1:{closed_port()}/x/{PATH_TOKEN}"}
    )
    try:
        results = run_alert_path(drill=drill, clients=EnvPathClients())
    finally:
        del os.environ["AIRFLOW_CONN_DEAD_HOOK"]
    assert [r.target for r in results] == ["hook", "oncall", "dead"]
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.PASS, Verdict.ERROR]
    records = leak_check.record(results)
    assert [r.map_index for r in records] == [0, 1, 2]
    assert records[2].result["details"]["delivery"]["destination"].endswith("/x/***")
    leak_check.assert_clean(*SECRETS, slack.token)
