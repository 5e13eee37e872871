"""Fixtures for alert-path tests: a webhook receiver on 127.0.0.1, drills, and a secret-leak check."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from drillbook.drills.alert_path.catalogue import AlertPathDrill
from drillbook.safety.redact import forget_secrets


@pytest.fixture(autouse=True)
def _fresh_secrets():
    """Each test starts with no registered secrets: the code under test must register its own."""
    forget_secrets()
    yield
    forget_secrets()


def make_drill(
    *paths: dict[str, Any],
    delivery: str = "2s",
    give_up: str | None = "4s",
    name: str = "alerts_test",
    poll: str = "0.1s",
) -> AlertPathDrill:
    objectives: dict[str, Any] = {"delivery": delivery}
    if give_up:
        objectives["give_up"] = give_up
    return AlertPathDrill.model_validate(
        {
            "name": name,
            "kind": "alert_path",
            "schedule": "@daily",
            "controls": ["SOC2:CC7.3"],
            "objectives": objectives,
            "poll_interval": poll,
            "paths": list(paths),
        }
    )


def closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- webhook receiver ----------------------------------------------------------------
@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class WebhookState:
    statuses: list[int] = field(default_factory=list)  # popped per POST; empty -> default_status
    default_status: int = 202
    readback_delay: float | None = 0.0  # None: posted alerts never show in the read-back
    readback_status: int = 200
    required_auth: str | None = None  # expected Authorization header on every request
    received: list[Received] = field(default_factory=list)


class WebhookServer:
    """Accepts POSTs on any path; ``GET /readback`` lists the bodies visible so far."""

    def __init__(self) -> None:
        self.state = WebhookState()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                want = server.state.required_auth
                return want is None or self.headers.get("Authorization") == want

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                with server.lock:
                    server.state.received.append(
                        Received(
                            "POST",
                            self.path,
                            dict(self.headers),
                            json.loads(raw) if raw else None,
                            time.monotonic(),
                        )
                    )
                    status = (
                        server.state.statuses.pop(0) if server.state.statuses else server.state.default_status
                    )
                if not self._authorised():
                    status = 401
                self._reply(status, {"status": "success" if status < 300 else "error"})

            def do_GET(self) -> None:
                if not self.path.startswith("/readback"):
                    return self._reply(404, {"error": "not found"})
                if not self._authorised():
                    return self._reply(401, {"error": "unauthorised"})
                if server.state.readback_status != 200:
                    return self._reply(server.state.readback_status, {"error": "boom"})
                delay = server.state.readback_delay
                now = time.monotonic()
                with server.lock:
                    visible = [
                        r.body for r in server.state.received if delay is not None and r.at + delay <= now
                    ]
                self._reply(200, {"alerts": visible})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def posts(self) -> list[Received]:
        with self.lock:
            return list(self.state.received)


@pytest.fixture
def webhook():
    server = WebhookServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


# --- secret-leak check ------------------------------------------------------------------
@pytest.fixture
def leak_check(ledger_dsn, caplog, capsys, pg):
    """Record results in a real ledger, then assert that no secret is in logs, output or rows."""
    from drillbook.ledger.store import Ledger
    from drillbook.run.context import RunContext

    caplog.set_level(logging.DEBUG)
    ledger = Ledger(ledger_dsn)

    class Check:
        def record(self, results, *, run_id: str = "test-run") -> list[Any]:
            return [
                ledger.record(
                    r,
                    RunContext(
                        dag_id=f"dr_alert_path__{r.drill}", run_id=run_id, task_id="prove_path", map_index=i
                    ),
                )
                for i, r in enumerate(results)
            ]

        def assert_clean(self, *secrets: str) -> None:
            import psycopg

            out, err = capsys.readouterr()
            with psycopg.connect(ledger_dsn) as conn:
                rows = [
                    r[0]
                    for r in conn.execute("select row_to_json(e)::text from drillbook_evidence e").fetchall()
                ]
            assert rows, "nothing was recorded in the ledger"
            haystacks = {"log": caplog.text, "stdout": out, "stderr": err, "ledger": "\n".join(rows)}
            for secret in secrets:
                for where, text in haystacks.items():
                    assert secret not in text, f"secret {secret[:6]}… leaked into {where}"

    yield Check()
    ledger.close()
