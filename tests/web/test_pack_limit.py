"""Concurrent pack downloads against the evidence app served by a real uvicorn on loopback.

The ledger is real and read by the SELECT-only role. To hold builds in flight without touching
drillbook's code, the test takes an ACCESS EXCLUSIVE lock on ``drillbook_evidence`` as the
superuser: every build then waits in PostgreSQL, inside its slot, until the lock is released.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import HTTPException, Request

from drillbook.evidence.pack_verify import verify_pack
from drillbook.ledger.checkpoint import CheckpointSettings, generate_key_hex
from drillbook.web.app import create_app
from drillbook.web.ledger_route import csrf_token, verify_with
from drillbook.web.pack_gate import PackGate
from tests.evidence.conftest import backup_drill, catalogue

USERS = {"tok-alice": "alice", "tok-bob": "bob", "tok-carol": "carol"}
PACK = "/pack?control=SOC2%3AA1.2"


def user(request: Request) -> str:
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    if token not in USERS:
        raise HTTPException(status_code=401, detail="Not authenticated")
    return USERS[token]


@dataclass
class Served:
    base: str
    app: object
    public_key: str

    @property
    def gate(self) -> PackGate:
        return self.app.state.pack_gate  # type: ignore[attr-defined]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(seeded, tmp_path) -> Iterator[Served]:
    import uvicorn

    private, public = generate_key_hex()
    cat = catalogue(backup_drill("orders_nightly"))
    app = create_app(
        dsn_provider=lambda: seeded.reader_dsn,
        user_dependency=user,
        catalogue=lambda: cat,
        pack_settings=lambda: CheckpointSettings(private_key=private),
        verify=verify_with(lambda: seeded.reader_dsn),
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", app, public)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        app.state.pool.close()


def fetch(url: str, token: str) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@contextmanager
def ledger_locked(dsn: str) -> Iterator[None]:
    """Every read of the evidence table waits until the block ends (the superuser's lock)."""
    with psycopg.connect(dsn) as admin:
        admin.execute("LOCK TABLE drillbook_evidence IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            admin.rollback()


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def assert_pack(answer: tuple[int, Any, bytes], where: Path, public_key: str) -> None:
    status, headers, body = answer
    assert status == 200, body[-500:]
    assert headers["Content-Type"] == "application/zip"
    where.write_bytes(body)
    report = verify_pack(where, public_key=public_key)
    assert report.ok and report.signed and report.trusted_key, report.problems


def test_one_build_per_user_two_in_all_the_rest_429_with_retry_after(served, seeded, tmp_path):
    url = served.base + PACK
    with ThreadPoolExecutor(max_workers=2) as pool:
        with ledger_locked(seeded.dsn):
            first: Future = pool.submit(fetch, url, "tok-alice")
            wait_for(lambda: served.gate.running() == 1, "alice's build to take its slot")

            status, headers, body = fetch(url, "tok-alice")  # the same user again, while hers runs
            assert status == 429 and headers["Retry-After"] == "10", (status, body[-300:])
            assert b"already have 1 evidence pack build" in body and b"PK" not in body[:2]

            other: Future = pool.submit(fetch, url, "tok-bob")  # another user: still under the total
            wait_for(lambda: served.gate.running() == 2, "bob's build to take the second slot")

            status, headers, body = fetch(url, "tok-carol")  # a third user: over the total of 2
            assert status == 429 and int(headers["Retry-After"]) > 0
            assert b"2 evidence pack builds are running" in body
            # a bad parameter is refused before any slot is asked for: 400, not 429
            assert fetch(served.base + "/pack?control=", "tok-carol")[0] == 400
            assert not first.done() and not other.done()  # both really were held in the ledger
        assert_pack(first.result(timeout=120), tmp_path / "alice.zip", served.public_key)
        assert_pack(other.result(timeout=120), tmp_path / "bob.zip", served.public_key)
    wait_for(lambda: served.gate.running() == 0, "both slots to be given back")
    assert_pack(fetch(url, "tok-carol"), tmp_path / "carol.zip", served.public_key)  # free again


def test_a_failed_build_gives_its_slot_back(served, seeded, tmp_path):
    unknown = served.base + "/pack?control=SOC2%3ACC9.9"  # well formed, in no drill
    for _ in range(3):  # were the slot kept, the second try would be a 429
        status, _headers, body = fetch(unknown, "tok-alice")
        assert status == 400 and b"SOC2:CC9.9" in body, body[-300:]
    assert served.gate.running() == 0
    assert_pack(fetch(served.base + PACK, "tok-alice"), tmp_path / "after.zip", served.public_key)


def test_a_client_that_hangs_up_mid_build_gives_its_slot_back(served, seeded, tmp_path):
    port = int(served.base.rsplit(":", 1)[1])
    with ledger_locked(seeded.dsn):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(
            b"GET /pack?control=SOC2%3AA1.2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer tok-alice\r\n\r\n"
        )
        wait_for(lambda: served.gate.running() == 1, "the build to take its slot")
        sock.close()  # gone before a byte of the zip was sent
    wait_for(lambda: served.gate.running() == 0, "the abandoned build's slot to be given back", timeout=60)
    assert_pack(fetch(served.base + PACK, "tok-alice"), tmp_path / "next.zip", served.public_key)


def press_verify(base: str, token: str) -> tuple[int, Any, bytes]:
    data = urllib.parse.urlencode({"csrf": csrf_token(token)}).encode()
    req = urllib.request.Request(
        base + "/ledger/verify", data=data, method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def test_one_verify_at_a_time_a_second_press_is_429_then_the_button_works_again(served, seeded):
    gate = served.app.state.verify_gate  # type: ignore[attr-defined]
    with ThreadPoolExecutor(max_workers=1) as pool:
        with ledger_locked(seeded.dsn):
            first: Future = pool.submit(press_verify, served.base, "tok-alice")
            wait_for(lambda: gate.running() == 1, "alice's verify to take the slot")

            status, headers, body = press_verify(served.base, "tok-alice")  # the same user again
            assert status == 429 and headers["Retry-After"] == "30", (status, body[-300:])
            assert b"already have 1 ledger verify" in body

            status, headers, body = press_verify(served.base, "tok-bob")  # anyone else: one in all
            assert status == 429 and b"1 ledger verifies are running" in body
        status, _, body = first.result(timeout=120)
        assert status == 200 and b"Busy" not in body, body[-300:]  # no writer: shown once, not recorded
    assert gate.running() == 0
    status, _, body = press_verify(served.base, "tok-bob")  # the slot came back
    assert status == 200 and b"Busy" not in body
