"""A real Alertmanager 0.25 routing to a loopback receiver: PASS only when the receiver saw the canary.

One Alertmanager per module (group_wait 1s). Routes: the default goes to
``pager`` (a webhook to the loopback sink, whose ``/readback`` is the drill's
receiver-side read-back); ``team="nobody"`` goes to ``blackhole`` (no
integrations); ``team="dead"`` goes to ``dead`` (a webhook to a closed port).
An inhibit rule mutes ``drillbook_inhibit="yes"`` while ``DrillbookInhibitor``
fires.
"""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from drillbook.drills.alert_path import run_alert_path
from drillbook.drills.alert_path.clients import EnvPathClients
from drillbook.result import Verdict
from tests.alert_path.conftest import WebhookServer, closed_port, make_drill
from tests.support.alertmanager import Alertmanager, SlowProxy

GROUP_WAIT = 1.0
SINK: list[str] = []  # the module's sink origin, for am_drill


@pytest.fixture(scope="module")
def sink():
    server = WebhookServer()
    server.thread.start()
    SINK[:] = [server.origin]
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(scope="module")
def alertmanager(sink, tmp_path_factory):
    config = textwrap.dedent(f"""
        route:
          receiver: pager
          group_by: [alertname, drillbook_nonce]
          group_wait: {GROUP_WAIT:g}s
          group_interval: 1s
          repeat_interval: 1h
          routes:
            - matchers: ['team="nobody"']
              receiver: blackhole
            - matchers: ['team="dead"']
              receiver: dead
        receivers:
          - name: pager
            webhook_configs: [{{url: "{sink.origin}/hook", send_resolved: true}}]
          - name: blackhole
          - name: dead
            webhook_configs: [{{url: "http://127.0.0.1:{closed_port()}/hook", send_resolved: true}}]
        inhibit_rules:
          - source_matchers: ['alertname="DrillbookInhibitor"']
            target_matchers: ['drillbook_inhibit="yes"']
    """)
    am = Alertmanager(config, tmp_path_factory.mktemp("alertmanager")).start()
    yield am
    am.stop()


@pytest.fixture(autouse=True)
def _no_canary_left_firing(request):
    """After every test that used the module's Alertmanager, passed or failed: no canary is left unresolved there."""
    yield
    if "alertmanager" not in request.fixturenames:
        return
    am = request.getfixturevalue("alertmanager")
    deadline, left = time.monotonic() + 3, None
    while time.monotonic() < deadline:
        left = [
            (a["labels"].get("drillbook_path"), a["status"]["state"])
            for a in am.alerts()
            if "drillbook_nonce" in a["labels"]
        ]
        if not left:
            return
        time.sleep(0.2)
    pytest.fail(f"canaries left in Alertmanager after {request.node.name}: {left}")


@pytest.fixture
def am_conn(alertmanager, monkeypatch):
    def set_conn(origin: str | None = None) -> None:
        # no schema: HttpHook's rule makes it http (it used to default to https here)
        host = (origin or alertmanager.origin).removeprefix("http://")
        monkeypatch.setenv("AIRFLOW_CONN_AM", json.dumps({"conn_type": "http", "host": host}))

    set_conn()
    return set_conn


def am_drill(name: str, *, labels: dict | None = None, receiver: str = "pager", give_up: str = "5s", **kw):
    path = {
        "name": name,
        "type": "webhook",
        "flavour": "alertmanager",
        "connection": "am",
        "receiver": receiver,
        "group_wait": f"{GROUP_WAIT:g}s",
        "readback_url": f"{SINK[0]}/readback",
        "labels": labels or {},
        **kw,
    }
    return make_drill(path, delivery="2s", give_up=give_up, poll="0.1s")


def run(drill, sink):
    [result] = run_alert_path(drill=drill, clients=EnvPathClients())
    return result


def sink_saw(sink, nonce: str) -> list[dict]:
    return [
        a
        for r in sink.posts()
        for a in (r.body or {}).get("alerts", [])
        if a["labels"].get("drillbook_nonce") == nonce
    ]


def test_healthy_path_passes_only_after_the_receiver_saw_it(alertmanager, sink, am_conn):
    drill = am_drill("healthy", labels={"team": "sre"})
    assert (
        drill.delivery_of(drill.paths[0]) == 2.0 + GROUP_WAIT
    )  # the drill objective plus the route's group_wait
    result = run(drill, sink)
    assert result.verdict is Verdict.PASS, result.findings
    d = result.details["delivery"]
    assert d["latency_seconds"] >= GROUP_WAIT, d  # send -> receiver, not Alertmanager's ingestion
    assert d["alertmanager"] == {
        "state": "active",
        "receivers": ["pager"],
        "silenced_by": [],
        "inhibited_by": [],
    }
    assert d["cleanup"].startswith("resolved (Alertmanager no longer lists it active)")
    assert "notification_requests_failed" in d  # the counter's movement is evidence on a PASS too
    nonce = result.details["nonce"]
    firing = [a for a in sink_saw(sink, nonce) if a["status"] == "firing"]
    assert firing, "the receiver never got the firing canary"
    assert firing[0]["labels"]["severity"] == "critical" and firing[0]["labels"]["team"] == "sre"
    assert firing[0]["generatorURL"] == f"urn:drillbook:alert_path:alerts_test:healthy:{nonce}"
    assert not [a for a in alertmanager.alerts(drillbook_nonce=nonce) if a["status"]["state"] == "active"]


def test_silenced_canary_is_suppressed_naming_the_silence(alertmanager, sink, am_conn):
    now = datetime.now(UTC)
    silence = alertmanager.request(
        "POST",
        "/api/v2/silences",
        {
            "matchers": [{"name": "drillbook_path", "value": "silenced", "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "ops",
            "comment": "maintenance of the pager",
        },
    )["silenceID"]
    result = run(am_drill("silenced"), sink)
    assert result.verdict is Verdict.FAIL, [(f.code, f.message) for f in result.findings]
    assert result.codes() == ["ALERT_SUPPRESSED"]
    assert silence in result.findings[0].message and "maintenance of the pager" in result.findings[0].message
    assert result.details["delivery"]["cleanup"].startswith("resolved")
    assert not sink_saw(sink, result.details["nonce"])


def test_inhibited_canary_is_suppressed_naming_the_source_alert(alertmanager, sink, am_conn):
    alertmanager.request(
        "POST", "/api/v2/alerts", [{"labels": {"alertname": "DrillbookInhibitor", "source": "test"}}]
    )
    result = run(am_drill("inhibited", labels={"drillbook_inhibit": "yes"}), sink)
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_SUPPRESSED"]
    message = result.findings[0].message
    assert "DrillbookInhibitor" in message
    assert (
        'inhibit rule #1 (source {alertname="DrillbookInhibitor"} -> target {drillbook_inhibit="yes"})'
        in message
    ), message
    assert result.findings[0].detail["inhibit_rules"].startswith("inhibit rule #1")
    assert result.details["delivery"]["cleanup"].startswith("resolved")


def test_blackhole_route_is_unrouted_naming_the_receiver(alertmanager, sink, am_conn):
    result = run(am_drill("blackholed", labels={"team": "nobody"}), sink)
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_UNROUTED"]
    assert "blackhole" in result.findings[0].message
    assert result.findings[0].detail["receivers"] == "blackhole"


def test_unreachable_receiver_is_not_delivered(alertmanager, sink, am_conn):
    # routed correctly (receiver "dead" is what the catalogue expects) but the receiver cannot be reached
    result = run(am_drill("dead_receiver", labels={"team": "dead"}, receiver="dead", give_up="4s"), sink)
    assert result.verdict is Verdict.FAIL
    assert result.codes() == ["ALERT_NOT_DELIVERED"]
    finding = result.findings[0]
    assert finding.detail["notification_requests_failed_total"] >= 1, finding.detail
    assert "webhook+" in finding.detail["notification_requests_failed"]
    assert "failed notification requests rose" in finding.message
    assert result.details["delivery"]["cleanup"].startswith("resolved")
    assert "connection refused" in alertmanager.log()


def test_slow_send_that_landed_is_resolved(alertmanager, sink, am_conn):
    proxy = SlowProxy(alertmanager.origin, delay=1.5)
    try:
        am_conn(proxy.origin)
        result = run(am_drill("slow_send", request_timeout="0.5s"), sink)
    finally:
        proxy.close()
    assert result.verdict is Verdict.ERROR
    assert result.codes() == ["ALERT_PATH_UNREACHABLE"]
    assert result.findings[0].detail["error"] == "ReadTimeout"
    assert result.details["delivery"]["cleanup"] == "resolved (Alertmanager no longer lists it active)"
    nonce = result.details["nonce"]
    time.sleep(0.2)
    assert not [a for a in alertmanager.alerts(drillbook_nonce=nonce) if a["status"]["state"] == "active"]


def test_missing_binary_skips_loudly_outside_ci_and_fails_in_ci(monkeypatch, tmp_path):
    from tests.support.alertmanager import alertmanager_binary

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.delenv("DRILLBOOK_ALERTMANAGER_BIN", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y prometheus-alertmanager"):
        alertmanager_binary()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y prometheus-alertmanager"):
        alertmanager_binary()


def test_default_objective_includes_group_wait():
    drill = make_drill(
        {
            "name": "am",
            "type": "webhook",
            "flavour": "alertmanager",
            "connection": "am",
            "receiver": "pager",
            "readback_url": "http://127.0.0.1:1/r",
            "group_wait": "30s",
        },
        delivery="60s",
        give_up=None,
    )
    assert drill.delivery_of(drill.paths[0]) == 90.0 and drill.give_up_of(drill.paths[0]) == 180.0


def test_sigterm_mid_wait_resolves_the_canary_and_records_interrupted(alertmanager, sink, tmp_path):
    """A drill stopped while it holds the canary firing (waiting for the receiver) resolves it before exiting."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    catalogue = tmp_path / "drills.yaml"
    catalogue.write_text(
        textwrap.dedent(f"""
        version: 1
        drills:
          - name: killed_alerts
            kind: alert_path
            schedule: "@daily"
            objectives: {{delivery: 60s, give_up: 90s}}
            poll_interval: 0.2s
            paths:
              - name: killed
                type: webhook
                flavour: alertmanager
                connection: am
                receiver: pager
                group_wait: {GROUP_WAIT:g}s
                readback_url: "{alertmanager.origin}/-/healthy"
    """)
    )
    env = {
        **os.environ,
        "AIRFLOW_CONN_AM": json.dumps({"conn_type": "http", "host": alertmanager.origin}),
        "DRILLBOOK_LEDGER_DSN": "",
    }
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("drillbook")),
            "run",
            "alert-path",
            "--drill",
            "killed_alerts",
            "--catalogue",
            str(catalogue),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline, active = time.monotonic() + 60, []
        while (
            time.monotonic() < deadline and not active
        ):  # the canary fires and the drill waits at the read-back
            active = [
                a for a in alertmanager.alerts(drillbook_path="killed") if a["status"]["state"] == "active"
            ]
            time.sleep(0.2)
        assert active, "the drill never sent its canary"
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 128 + signal.SIGTERM, text
    assert "DRILL_INTERRUPTED" in text and "resolved (Alertmanager no longer lists it active)" in text, text
    nonce = active[0]["labels"]["drillbook_nonce"]
    assert not [a for a in alertmanager.alerts(drillbook_nonce=nonce) if a["status"]["state"] == "active"]


def test_alertmanager_restarted_while_the_canary_is_held_still_pages(sink, tmp_path, monkeypatch):
    """Alertmanager keeps alerts in memory only; like Prometheus, the drill re-sends its firing canary, so a restart
    during group_wait delays the page instead of losing it (a lost canary here would be a false ALERT_NOT_DELIVERED)."""
    import threading

    config = textwrap.dedent(f"""
        route:
          receiver: pager
          group_by: [alertname, drillbook_nonce]
          group_wait: 4s
        receivers:
          - name: pager
            webhook_configs: [{{url: "{sink.origin}/hook", send_resolved: true}}]
    """)
    am = Alertmanager(config, tmp_path).start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_AM", json.dumps({"conn_type": "http", "host": am.origin}))
        path = {
            "name": "restarted",
            "type": "webhook",
            "flavour": "alertmanager",
            "connection": "am",
            "receiver": "pager",
            "group_wait": "4s",
            "readback_url": f"{sink.origin}/readback",
        }
        drill = make_drill(path, delivery="10s", give_up="25s", poll="0.2s")
        results: list = []
        runner = threading.Thread(
            target=lambda: results.extend(run_alert_path(drill=drill, clients=EnvPathClients()))
        )
        runner.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not am.alerts(drillbook_path="restarted"):
            time.sleep(0.1)
        assert am.alerts(drillbook_path="restarted"), "the canary never reached Alertmanager"
        am.stop()  # before group_wait ends: the canary is gone with the process
        am.start()
        assert not am.alerts(drillbook_path="restarted")  # it really was lost
        runner.join(timeout=60)
    finally:
        am.stop()
    [result] = results
    assert result.verdict is Verdict.PASS, result.findings
    assert result.details["delivery"]["resends"] >= 1
    assert sink_saw(sink, result.details["nonce"])


def test_sigterm_during_the_resolve_waits_for_the_resolve(alertmanager, sink, am_conn):
    """The worst moment: the first resolve failed (503) and the drill waits to try again; a SIGTERM there must not
    cut the resolve short (the canary would stay firing); it is honoured once the resolve is done."""
    import os
    import signal
    import threading
    import urllib.error
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    failed_resolve = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _forward(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
            if method == "POST" and body and b"endsAt" in body and not failed_resolve.is_set():
                failed_resolve.set()  # the first resolve never reaches Alertmanager
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            req = urllib.request.Request(
                alertmanager.origin + self.path,
                data=body,
                method=method,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    status, payload = r.status, r.read()
            except urllib.error.HTTPError as exc:
                status, payload = exc.code, exc.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self):
            self._forward("POST")

        def do_GET(self):
            self._forward("GET")

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()

    def terminate_after_failed_resolve() -> None:
        if failed_resolve.wait(timeout=30):
            time.sleep(0.2)  # inside the drill's pause before the second resolve attempt
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate_after_failed_resolve, daemon=True)
    try:
        am_conn(f"http://127.0.0.1:{proxy.server_address[1]}")
        killer.start()
        result = run(am_drill("killed_in_resolve", labels={"team": "sre"}), sink)
    finally:
        killer.join(timeout=35)
        proxy.shutdown()
        proxy.server_close()
    assert failed_resolve.is_set()
    assert "DRILL_INTERRUPTED" in result.codes(), result.findings
    assert result.details["delivery"]["cleanup"] == "resolved (Alertmanager no longer lists it active)", (
        result.details["delivery"]
    )
    assert result.details["delivery"]["resolve_attempts"] == 2
    nonce = result.details["nonce"]
    assert not [a for a in alertmanager.alerts(drillbook_nonce=nonce) if a["status"]["state"] == "active"]


def test_two_drills_of_the_same_path_at_once_each_prove_and_resolve_only_their_own(
    alertmanager, sink, am_conn
):
    import threading

    results: list = []
    drills = [am_drill("shared_path", labels={"team": "sre"}) for _ in range(2)]
    runners = [threading.Thread(target=lambda d=d: results.append(run(d, sink))) for d in drills]
    for r in runners:
        r.start()
    for r in runners:
        r.join(timeout=60)
    assert len(results) == 2
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.PASS], [r.findings for r in results]
    nonces = {r.details["nonce"] for r in results}
    assert len(nonces) == 2
    for nonce in nonces:
        assert [a for a in sink_saw(sink, nonce) if a["status"] == "firing"]
