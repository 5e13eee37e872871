"""A loopback alert receiver for the demo: accepts alerts and lets the drill read them back.

POST to any path stores the body (what an alerting endpoint would receive);
GET ``/received`` returns every stored body as a JSON list, so the alert-path
drill's ``readback_url`` can prove the canary arrived. It binds 127.0.0.1 only
and requires the bearer token it was started with on POST.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    def __init__(self, *, port: int = 0, token: str | None = None):
        self.port = port
        self.token = token
        self.received: list[Any] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                if receiver.token and self.headers.get("Authorization", "") != f"Bearer {receiver.token}":
                    return self._reply(401, {"error": "unauthorized"})
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(min(length, 1 << 20)).decode("utf-8", "replace")
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                with receiver._lock:
                    receiver.received.append(body)
                return self._reply(202, {"status": "accepted"})

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0].rstrip("/") != "/received":
                    return self._reply(404, {"error": "not found"})
                with receiver._lock:
                    return self._reply(200, list(receiver.received))

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
