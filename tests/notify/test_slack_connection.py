"""One parser of a Slack connection for the CLI and for Airflow (issue 10 item 11).

``max_retry_after=5`` in the connection's extras is honoured from the CLI
(``notifier_from_env``) and under Airflow (the connection resolved by
Airflow's ``BaseHook`` from ``AIRFLOW_CONN_DRILLBOOK_SLACK``, then the runtime
resolver): a 429 asking for 8 s fails fast on both paths instead of waiting.
"""

from __future__ import annotations

import json
import time

import pytest

from drillbook.errors import ConnectionNotConfigured, NotificationFailed
from drillbook.notify.slack import connection_from_env, parse_slack_connection
from drillbook.settings import load_settings  # the test is the entry point: its settings passed down
from tests.notify.conftest import make_ctx, make_record, make_result


def slack_conn_env(slack, monkeypatch, **extra) -> None:
    conn = {
        "conn_type": "slack",
        "password": slack.token,
        "extra": {"base_url": slack.base_url, "timeout": 5, **extra},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_SLACK", json.dumps(conn))


def test_the_parser_reads_every_extra_plain_or_prefixed():
    conn = parse_slack_connection(
        "s",
        password="xoxb-parse-0001",
        extra={
            "extra__slack__base_url": "http://127.0.0.1:1/api",
            "timeout": "7",
            "proxy": "http://127.0.0.1:3128",
            "max_retry_after": "5",
            "channel": "#dr-oncall",
        },
    )
    assert (conn.base_url, conn.timeout, conn.proxy, conn.max_retry_after, conn.channel) == (
        "http://127.0.0.1:1/api/",
        7,
        "http://127.0.0.1:3128",
        5.0,
        "#dr-oncall",
    )
    assert "xoxb-parse-0001" not in repr(conn)
    client = conn.web_client()
    assert client.proxy == "http://127.0.0.1:3128" and client.timeout == 7


def test_a_bad_extra_is_a_clear_error_naming_key_and_value():
    with pytest.raises(
        ConnectionNotConfigured, match=r"'max_retry_after' must be a positive number of seconds, got 'soon'"
    ):
        parse_slack_connection("drillbook_slack", password="xoxb-x", extra={"max_retry_after": "soon"})
    with pytest.raises(ConnectionNotConfigured, match="no password"):
        parse_slack_connection("drillbook_slack", password=None, extra={})


def test_drillbook_conn_variable_is_read_like_every_other_connection(slack, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK")
    monkeypatch.setenv(
        "DRILLBOOK_CONN_DRILLBOOK_SLACK",
        json.dumps(
            {
                "conn_type": "slack",
                "password": slack.token,
                "extra": {"base_url": slack.base_url, "max_retry_after": 5},
            }
        ),
    )
    conn = connection_from_env("drillbook_slack")
    assert conn is not None and conn.max_retry_after == 5.0


def _fails_fast(notifier, slack) -> None:
    slack.fail("chat.postMessage", status=429, retry_after=8, times=1)
    result = make_result("FAIL")
    started = time.monotonic()
    with pytest.raises(NotificationFailed, match=r"max_retry_after 5 s"):
        notifier.notify(result, make_record(result), make_ctx())
    assert time.monotonic() - started < 5, "a Retry-After of 8 s above the 5 s cap must not be waited for"
    assert slack.posted("#dr-oncall") == []


def test_max_retry_after_is_honoured_from_the_cli(slack, catalogue, monkeypatch):
    from drillbook.notify.notifier import notifier_from_env

    slack_conn_env(slack, monkeypatch, max_retry_after=5)
    notifier = notifier_from_env(catalogue, outbox=load_settings().outbox)
    assert notifier.sender.max_retry_after == 5.0
    _fails_fast(notifier, slack)


@pytest.mark.airflow
def test_max_retry_after_is_honoured_under_airflow(airflow_db, slack, catalogue, monkeypatch):
    from drillbook.airflow import runtime
    from drillbook.airflow.notify import notifier_for_airflow

    slack_conn_env(slack, monkeypatch, max_retry_after=5)
    conn = runtime.slack_connection("drillbook_slack")  # through Airflow's BaseHook
    assert conn.max_retry_after == 5.0 and conn.base_url == slack.base_url
    for notifier in (runtime.notifier_for(catalogue, None), notifier_for_airflow(catalogue)):
        assert notifier.sender.max_retry_after == 5.0
        _fails_fast(notifier, slack)
    # and a Retry-After within the cap is waited for and delivered
    slack.fail("chat.postMessage", status=429, retry_after=1, times=1)
    result = make_result("FAIL")
    assert runtime.notifier_for(catalogue, None).notify(result, make_record(result), make_ctx()).delivered


@pytest.mark.airflow
def test_alert_path_clients_read_the_same_extras(airflow_db, slack, monkeypatch):
    from drillbook.drills.alert_path.clients import EnvPathClients
    from drillbook.drills.alert_path.dag import AirflowPathClients

    slack_conn_env(slack, monkeypatch, max_retry_after=5, timeout=4)
    for client in (AirflowPathClients().slack("drillbook_slack"), EnvPathClients().slack("drillbook_slack")):
        assert client.timeout == 4 and client.base_url == slack.base_url
        assert client.auth_test()["ok"]


# --- 11.8: the 429 message says one thing, and the true one ----------------------------------------
def test_rate_limited_after_the_retries_does_not_claim_the_wait_was_too_long(slack, catalogue, monkeypatch):
    from drillbook.notify.notifier import notifier_from_env

    slack_conn_env(slack, monkeypatch)  # default cap: 60 s
    slack.fail(
        "chat.postMessage", status=429, retry_after=1, times=5
    )  # every try rate-limited, each asking 1 s
    result = make_result("FAIL")
    with pytest.raises(NotificationFailed) as caught:
        notifier_from_env(catalogue, outbox=load_settings().outbox).notify(
            result, make_record(result), make_ctx()
        )
    message = str(caught.value)
    assert "more than drillbook waits" not in message, message
    assert "after 2 retries" in message and "last Retry-After 1 s" in message


def test_a_retry_after_beyond_the_cap_says_so_and_only_that(slack, catalogue, monkeypatch):
    from drillbook.notify.notifier import notifier_from_env

    slack_conn_env(slack, monkeypatch, max_retry_after=5)
    slack.fail("chat.postMessage", status=429, retry_after=30, times=1)
    result = make_result("FAIL")
    with pytest.raises(NotificationFailed) as caught:
        notifier_from_env(catalogue, outbox=load_settings().outbox).notify(
            result, make_record(result), make_ctx()
        )
    message = str(caught.value)
    assert "Retry-After 30 s, more than drillbook waits (max_retry_after 5 s)" in message
    assert "retries" not in message.split(";")[0]
