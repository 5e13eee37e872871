"""CONNECTION_MISSING says how to define a connection of the path's own type (issue 11 item 8).

A webhook path whose connection is missing was told to set a ``postgresql://``
URI; from the CLI and under Airflow the message and the fix hint now describe
an HTTP (or Slack) connection.
"""

from __future__ import annotations

import pytest

from drillbook.drills.alert_path import run_alert_path
from drillbook.drills.alert_path.clients import EnvPathClients
from drillbook.result import Verdict
from tests.alert_path.conftest import make_drill


def _missing(result):
    assert result.verdict is Verdict.ERROR and result.codes() == ["CONNECTION_MISSING"], result.findings
    return result.findings[0]


def _webhook_drill():
    return make_drill({"name": "hook", "type": "webhook", "connection": "absent_hook"})


def test_cli_webhook_connection_missing_hint_is_http_not_postgres(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_ABSENT_HOOK", raising=False)
    [result] = run_alert_path(drill=_webhook_drill(), clients=EnvPathClients())
    found = _missing(result)
    text = found.message + " " + found.hint
    assert "postgresql://" not in text, text
    assert '"conn_type": "http"' in text and "AIRFLOW_CONN_ABSENT_HOOK" in found.hint


def test_cli_slack_connection_missing_hint_is_slack(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_ABSENT_SLACK", raising=False)
    drill = make_drill(
        {"name": "oncall", "type": "slack", "channel": "#dr-oncall", "connection": "absent_slack"}
    )
    [result] = run_alert_path(drill=drill, clients=EnvPathClients())
    found = _missing(result)
    assert "postgresql://" not in found.message + found.hint
    assert "xoxb-" in found.hint


@pytest.mark.airflow
def test_airflow_webhook_connection_missing_hint_is_http_not_postgres(airflow_db, monkeypatch):
    from drillbook.drills.alert_path.dag import AirflowPathClients

    monkeypatch.delenv("AIRFLOW_CONN_ABSENT_HOOK", raising=False)
    [result] = run_alert_path(drill=_webhook_drill(), clients=AirflowPathClients())
    found = _missing(result)
    assert "postgresql://" not in found.message + found.hint
    assert '"conn_type": "http"' in found.message and '"conn_type": "http"' in found.hint


def test_postgres_connections_keep_their_postgres_example(monkeypatch):
    from drillbook.errors import ConnectionNotConfigured
    from drillbook.resources.connections import require_connection

    monkeypatch.delenv("AIRFLOW_CONN_ABSENT_DB", raising=False)
    with pytest.raises(ConnectionNotConfigured, match="postgresql://"):
        require_connection("absent_db")
