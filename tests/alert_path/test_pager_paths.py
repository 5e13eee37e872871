"""PagerDuty and Opsgenie paths against emulators with the real APIs' asynchronous semantics.

A PASS needs the incident (PagerDuty) or alert (Opsgenie) to exist in the REST
API on the escalation policy / team that pages; 202 from the events endpoint is
not enough. Each flavour has a healthy case and the four negative ones:
suppressed, unrouted, never created, and a slow send that landed (resolved).
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from drillbook.drills.alert_path import run_alert_path
from drillbook.drills.alert_path.clients import EnvPathClients
from drillbook.result import Verdict
from tests.alert_path.conftest import closed_port, make_drill
from tests.support.pager_emulators import OpsgenieEmulator, PagerDutyEmulator, PdService

ROUTING_KEY = "R0UTINGKEYdrillbook0123456789ab"
PD_TOKEN = "pd-api-T0ken-drillbook-0123456789"
GENIE_KEY = "genie-key-drillbook-0001112223334"
POLICY = "PONCALL1"
TEAM = "team-sre-0001"


def run(drill):
    [result] = run_alert_path(drill=drill, clients=EnvPathClients())
    return result


# --- PagerDuty ---------------------------------------------------------------------------
@pytest.fixture
def pd(monkeypatch):
    emulator = PagerDutyEmulator(api_token=PD_TOKEN)
    emulator.services[ROUTING_KEY] = PdService(id="PSVC001", escalation_policy=POLICY)
    # events and REST API on the same emulator; host without schema -> http (HttpHook's rule)
    monkeypatch.setenv(
        "AIRFLOW_CONN_PD_EVENTS",
        json.dumps({"conn_type": "http", "host": emulator.origin, "password": ROUTING_KEY}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_PD_API",
        json.dumps(
            {"conn_type": "http", "host": emulator.origin.removeprefix("http://"), "password": PD_TOKEN}
        ),
    )
    yield emulator
    emulator.close()


def pd_drill(**kw):
    path = {
        "name": "pagerduty",
        "type": "webhook",
        "flavour": "pagerduty",
        "connection": "pd_events",
        "api_connection": "pd_api",
        "escalation_policy": POLICY,
        "service": "PSVC001",
        **kw,
    }
    return make_drill(path, delivery="2s", give_up="2.5s", poll="0.1s")


def test_pagerduty_passes_once_the_incident_exists_on_the_policy(pd, leak_check):
    pd.knobs.rate_limited = 1  # the first trigger is answered 429: waited out (Retry-After) and retried
    result = run(pd_drill())
    assert result.verdict is Verdict.PASS, result.findings
    d = result.details["delivery"]
    assert d["latency_seconds"] >= pd.knobs.delay  # 202 came first; the incident later
    assert d["incident"]["escalation_policy"] == POLICY and d["seen_via"].startswith("PagerDuty REST API")
    assert d["attempts"] == 2 and d["cleanup"] == "resolved"
    trigger, resolve = pd.received
    assert trigger["dedup_key"] == resolve["dedup_key"] == result.details["nonce"]
    assert trigger["payload"]["severity"] == "critical" and resolve["event_action"] == "resolve"
    pd.settle()
    assert pd.incidents[result.details["nonce"]]["status"] == "resolved"
    leak_check.record([result])
    leak_check.assert_clean(ROUTING_KEY, PD_TOKEN)


def test_pagerduty_rest_api_429_is_waited_out(pd):
    pd.knobs.rate_limited_reads, pd.knobs.retry_after = 2, "0.2"
    result = run(pd_drill())
    assert result.verdict is Verdict.PASS, result.findings
    assert result.details["delivery"]["api_rate_limited"] == 2


def test_pagerduty_maintenance_window_is_suppressed(pd):
    pd.maintenance["PSVC001"] = {
        "id": "PMW0001",
        "description": "pager migration",
        "services": [{"id": "PSVC001"}],
    }
    result = run(pd_drill())
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_SUPPRESSED"]
    assert "PMW0001" in result.findings[0].message


def test_pagerduty_wrong_escalation_policy_is_unrouted(pd):
    pd.services[ROUTING_KEY] = PdService(
        id="PSVC001", escalation_policy="PNOBODY", policy_name="Business hours only"
    )
    result = run(pd_drill())
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_UNROUTED"]
    assert "PNOBODY" in result.findings[0].message and POLICY in result.findings[0].message
    assert result.details["delivery"]["cleanup"] == "resolved"


def test_pagerduty_low_urgency_incident_does_not_page(pd):
    """Low urgency follows the low-urgency notification rules (often e-mail only): on the right policy, but nobody is paged."""
    pd.services[ROUTING_KEY] = PdService(id="PSVC001", escalation_policy=POLICY, urgency="severity_based")
    result = run(pd_drill(labels={"severity": "warning"}))
    assert result.verdict is Verdict.FAIL, result.findings
    assert result.codes() == ["ALERT_LOW_URGENCY"]
    assert "low" in result.findings[0].message and "warning" in result.findings[0].message
    assert result.details["delivery"]["incident"]["urgency"] == "low"
    assert result.details["delivery"]["cleanup"] == "resolved"
    healthy = run(pd_drill(labels={"severity": "critical"}))  # the same service pages for a critical canary
    assert healthy.verdict is Verdict.PASS, healthy.findings


def test_pagerduty_202_but_never_created_is_not_delivered(pd):
    pd.knobs.drop = True
    result = run(pd_drill())
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_NOT_DELIVERED"]
    assert result.details["delivery"]["http_status"] == 202  # accepted is not delivered


def test_pagerduty_slow_trigger_that_landed_is_resolved(pd):
    pd.knobs.answer_delay = 1.5
    result = run(pd_drill(request_timeout="0.5s"))
    assert result.verdict is Verdict.ERROR
    assert (
        result.codes() == ["ALERT_PATH_UNREACHABLE"] and result.findings[0].detail["error"] == "ReadTimeout"
    )
    assert result.details["delivery"]["cleanup"] == "resolved"
    pd.settle()
    assert pd.incidents[result.details["nonce"]]["status"] == "resolved"


def test_pagerduty_failed_resolve_is_recorded(pd):
    pd.knobs.fail_resolves = 2
    result = run(pd_drill())
    assert result.codes() == ["ALERT_CLEANUP_FAILED"]
    assert result.verdict is Verdict.PASS  # delivered; the leftover incident is a low-severity chore
    assert (
        result.details["delivery"]["cleanup"] == "failed: HTTP 500"
        and result.details["delivery"]["resolve_attempts"] == 2
    )


def test_pagerduty_rest_api_unreachable_could_not_verify(pd, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_PD_API",
        json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{closed_port()}", "password": PD_TOKEN}),
    )
    result = run(pd_drill())
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["ALERT_READBACK_FAILED"]
    assert (
        result.details["delivery"]["cleanup"] == "resolved"
    )  # it was accepted, so it is resolved all the same


def test_missing_api_connection_is_named(pd, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PD_API")
    result = run(pd_drill())
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["CONNECTION_MISSING"] and result.findings[0].detail["connection"] == "pd_api"
    assert not pd.received  # nothing was sent that could not be confirmed


def test_pagerduty_path_must_name_the_policy_and_api():
    with pytest.raises(ValidationError, match=r"missing: \['api_connection', 'escalation_policy'\]"):
        make_drill({"name": "pd", "type": "webhook", "flavour": "pagerduty", "connection": "pd_events"})


# --- Opsgenie ----------------------------------------------------------------------------
@pytest.fixture
def genie(monkeypatch):
    emulator = OpsgenieEmulator()
    emulator.keys[GENIE_KEY] = {"id": TEAM, "name": "SRE"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_GENIE",
        json.dumps({"conn_type": "http", "host": emulator.origin, "password": GENIE_KEY}),
    )
    yield emulator
    emulator.close()


def genie_drill(**kw):
    path = {
        "name": "opsgenie",
        "type": "webhook",
        "flavour": "opsgenie",
        "connection": "genie",
        "team": TEAM,
        **kw,
    }
    return make_drill(path, delivery="2s", give_up="2.5s", poll="0.1s")


def test_opsgenie_passes_once_the_alert_is_open_for_the_team(genie, leak_check):
    genie.knobs.rate_limited = 1
    result = run(genie_drill())
    assert result.verdict is Verdict.PASS, result.findings
    d = result.details["delivery"]
    assert d["latency_seconds"] >= genie.knobs.delay
    assert d["opsgenie_request"] == {"status": "Created alert", "success": True}
    assert d["alert"]["teams"] == [TEAM] and d["cleanup"] == "resolved"
    genie.settle()
    assert genie.alerts[result.details["nonce"]]["status"] == "closed"
    assert genie.received[0]["priority"] == "P3"  # not P5 (informational), which pages nobody
    leak_check.record([result])
    leak_check.assert_clean(GENIE_KEY)


def test_opsgenie_snoozed_alert_is_suppressed(genie):
    genie.snooze = True
    result = run(genie_drill())
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_SUPPRESSED"] and "snoozed" in result.findings[0].message
    genie.settle()
    assert genie.alerts[result.details["nonce"]]["status"] == "closed"


def test_opsgenie_informational_priority_does_not_page(genie):
    """An alert policy that lowers the canary to P5 (informational): open, for the right team, and nobody is notified."""
    genie.priority_policy = "P5"
    result = run(genie_drill())
    assert result.verdict is Verdict.FAIL, result.findings
    assert result.codes() == ["ALERT_LOW_URGENCY"] and "P5" in result.findings[0].message
    assert result.details["delivery"]["alert"]["priority"] == "P5"
    genie.settle()
    assert genie.alerts[result.details["nonce"]]["status"] == "closed"


def test_opsgenie_other_team_is_unrouted(genie):
    genie.keys[GENIE_KEY] = {"id": "team-marketing", "name": "Marketing"}
    result = run(genie_drill())
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_UNROUTED"] and "team-marketing" in result.findings[0].message


def test_opsgenie_request_that_created_nothing_is_not_delivered(genie):
    genie.knobs.drop = True
    result = run(genie_drill())
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_NOT_DELIVERED"]
    assert "no integration rule matched" in result.findings[0].message


def test_opsgenie_slow_create_that_landed_is_closed(genie):
    genie.knobs.answer_delay = 1.5
    result = run(genie_drill(request_timeout="0.5s"))
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["ALERT_PATH_UNREACHABLE"]
    assert result.details["delivery"]["cleanup"] == "resolved"
    genie.settle()
    assert genie.alerts[result.details["nonce"]]["status"] == "closed"
