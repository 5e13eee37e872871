"""A real Prometheus Alertmanager process on loopback for tests, and a slow proxy in front of it.

Rules: the binary is Debian's ``prometheus-alertmanager`` (or ``alertmanager``
on PATH, or ``DRILLBOOK_ALERTMANAGER_BIN``); when it is missing a test skips
loudly with the install command, and under CI (``CI=true``) it fails instead,
so a CI run can never pass by skipping. Alertmanager listens on 127.0.0.1 only,
without clustering, with its storage in a temporary directory; every wait is
bounded and the process is stopped (then killed) when the fixture ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.support.loopback import LoopbackServer

INSTALL = "apt-get install -y prometheus-alertmanager"


def alertmanager_binary() -> str:
    """The Alertmanager binary, or skip (fail under CI=true) saying how to install it."""
    for candidate in (
        os.environ.get("DRILLBOOK_ALERTMANAGER_BIN"),
        "prometheus-alertmanager",
        "alertmanager",
    ):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    message = f"Alertmanager is not installed (no prometheus-alertmanager or alertmanager on PATH); install it with: {INSTALL}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Alertmanager:
    """One Alertmanager process; ``origin`` is its API base URL."""

    def __init__(self, config: str, workdir: Path) -> None:
        self.binary = alertmanager_binary()
        self.port = free_port()
        self.workdir = workdir
        (workdir / "alertmanager.yml").write_text(config)
        self.log_path = workdir / "alertmanager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Alertmanager:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Alertmanager exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.origin}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Alertmanager did not become ready within {timeout}s: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    # -- API helpers for tests -------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None) -> Any:
        import json

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"{self.origin}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        from urllib.parse import urlencode

        query = urlencode([("filter", f'{k}="{v}"') for k, v in filters.items()])
        return list(self.request("GET", f"/api/v2/alerts?{query}"))


class SlowProxy(LoopbackServer):
    """Forwards every request to ``upstream`` at once, but answers POSTs only after ``delay`` seconds.

    A send through it times out at the client although Alertmanager got it: the
    "timed out but landed" case.
    """

    def __init__(self, upstream: str, delay: float) -> None:
        self.upstream, self.delay, self.forwarded = upstream, delay, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                req = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body,
                    method=method,
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        status, payload = r.status, r.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                proxy.forwarded += 1
                if method == "POST":
                    time.sleep(proxy.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting

            def do_POST(self) -> None:
                self._forward("POST")

            def do_GET(self) -> None:
                self._forward("GET")

        self.serve(Handler)
