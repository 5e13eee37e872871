"""A hostile or broken read-back far end: bounded in time and memory, and never a PASS by mistake.

The read-back server here answers like real things that are not a receiver:
a search page that echoes the nonce it was asked for, a page that never
ends, a page of 10 GB, a redirect to another host, an error page quoting the
URL. None of them shows that the canary arrived, so none may PASS.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from drillbook.drills.alert_path import run_alert_path
from drillbook.drills.alert_path.clients import EnvPathClients
from drillbook.result import Verdict
from tests.alert_path.conftest import make_drill


class HostileFarEnd:
    """POST /hook accepts anything; the GET paths misbehave as their names say."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        far = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(202, b'{"status": "accepted"}', {"Content-Type": "application/json"})

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                nonce = (parse_qs(url.query).get("nonce") or [""])[0]
                if url.path == "/echo":  # a search page: 200 and the query echoed, no results
                    return self._send(
                        200,
                        json.dumps({"query": nonce, "results": []}).encode(),
                        {"Content-Type": "application/json"},
                    )
                if url.path == "/error-echo":  # an error page quoting the URL it could not serve
                    return self._send(404, f"<h1>no page for nonce={nonce}</h1>".encode())
                if url.path == "/redirect":  # the nonce is only on another host
                    return self._send(
                        302,
                        b"",
                        {"Location": f"http://localhost:{self.server.server_address[1]}/echo?nonce={nonce}"},
                    )
                kind = url.path.split("/")[1]
                if kind in (
                    "trickle",
                    "huge",
                ):  # never ends: one byte at a time, or "10 GB" (200 MB) as fast as it goes
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(10 * 1024**3))
                    self.end_headers()
                    chunk, pause = (b"a", 0.05) if kind == "trickle" else (b"a" * 65536, 0.0)
                    try:
                        for _ in range(3200 if kind == "huge" else 10**9):  # 200 MB at most: enough to show
                            if far.stopped.is_set():
                                break
                            self.wfile.write(chunk)
                            self.wfile.flush()
                            if pause:
                                time.sleep(pause)
                    except OSError:
                        return
                    return
                self._send(404, b"not found")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def far_end(monkeypatch):
    server = HostileFarEnd()
    monkeypatch.setenv(
        "AIRFLOW_CONN_HOSTILE", json.dumps({"conn_type": "http", "host": f"{server.origin}/hook"})
    )
    yield server
    server.close()


def run(readback_url: str, *, give_up: str = "2s"):
    drill = make_drill(
        {
            "name": "hostile",
            "type": "webhook",
            "connection": "hostile",
            "readback_url": readback_url,
            "request_timeout": "1s",
        },
        delivery="1s",
        give_up=give_up,
        poll="0.2s",
    )
    started = time.monotonic()
    [result] = run_alert_path(drill=drill, clients=EnvPathClients())
    return result, time.monotonic() - started


def test_a_readback_that_echoes_the_nonce_it_is_asked_for_proves_nothing(far_end):
    result, _ = run("/echo?nonce={nonce}")
    assert result.verdict is Verdict.ERROR, result.findings
    assert result.codes() == ["ALERT_READBACK_FAILED"]
    assert "echoes" in result.findings[0].message
    assert (
        result.details["delivery"]["seen_at"] is None
        and result.details["delivery"]["latency_seconds"] is None
    )


def test_the_nonce_in_an_error_page_or_behind_a_redirect_is_not_seen(far_end):
    for url in ("/error-echo?nonce={nonce}", "/redirect?nonce={nonce}"):
        result, _ = run(url, give_up="1s")
        assert result.verdict is Verdict.ERROR and result.codes() == ["ALERT_READBACK_FAILED"], (
            url,
            result.findings,
        )


@pytest.mark.parametrize("endpoint", ["/trickle", "/huge"])
def test_a_readback_page_that_never_ends_is_bounded_and_could_not_verify(far_end, endpoint):
    result, took = run(endpoint, give_up="2s")
    assert took < 2 + 1 + 3, took  # give_up + one request timeout + slack for a loaded machine
    assert result.verdict is Verdict.ERROR, (
        result.findings
    )  # a page cut short proves neither arrival nor absence
    assert result.codes() == ["ALERT_READBACK_FAILED"]


@pytest.mark.parametrize("kind", ["trickle", "huge"])
def test_a_pager_rest_api_answering_without_end_is_bounded_in_time_and_memory(far_end, monkeypatch, kind):
    """PagerDuty's REST API read-back (and every other answer a path reads) is streamed within a byte and time budget."""
    import tracemalloc

    monkeypatch.setenv(
        "AIRFLOW_CONN_HOSTILE_API",
        json.dumps(
            {
                "conn_type": "http",
                "host": f"{far_end.origin}/{kind}",
                "password": "rest-api-key-0123456789abcdef",
            }
        ),
    )
    drill = make_drill(
        {
            "name": "pd",
            "type": "webhook",
            "flavour": "pagerduty",
            "connection": "hostile",
            "api_connection": "hostile_api",
            "escalation_policy": "PABC123",
            "request_timeout": "1s",
        },
        delivery="1s",
        give_up="2s",
        poll="0.2s",
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_HOSTILE",
        json.dumps(
            {
                "conn_type": "http",
                "host": f"{far_end.origin}/hook",
                "password": "routing-key-0123456789abcdef",
            }
        ),
    )
    tracemalloc.start()
    started = time.monotonic()
    try:
        [result] = run_alert_path(drill=drill, clients=EnvPathClients())
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert took < 2 + 2 + 3, (
        took
    )  # give_up + one read budget (2x the 1 s timeout) + slack for a loaded machine
    assert peak < 32 * 1024 * 1024, peak  # a 200 MB answer is cut at 1 MB, never held whole
    assert result.verdict is Verdict.ERROR and result.codes() == ["ALERT_READBACK_FAILED"], result.findings
