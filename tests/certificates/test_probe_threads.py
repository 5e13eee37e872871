"""The probe's threads against real servers on 127.0.0.1: the connection bound, one deadline per
endpoint however the far end dribbles, a name lookup that hangs, outcomes in order and judged in
the caller's thread, and no probing thread left behind."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from drillbook.drills.certificates import check_endpoints
from drillbook.drills.certificates.catalogue import EndpointSpec
from drillbook.drills.certificates.probe import Target, run_probes
from drillbook.result import Verdict
from tests.certificates.pki import make_leaf
from tests.certificates.test_endpoints import drill_of

TIMEOUT = 0.6  # for endpoints that never finish: each costs this
ROOMY = 10.0  # for healthy endpoints, which must finish whatever else the machine runs


class Dribbler:
    """Accepts, sends ``first``, then one byte of ``drip`` every 50 ms until the client goes away."""

    def __init__(self, first: bytes, drip: bytes):
        self.first, self.drip = first, drip
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.bytes_sent = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.sendall(self.first)
            for _ in range(400):  # 20 s at most
                if self.stop.wait(0.05):
                    break
                conn.sendall(self.drip)
                self.bytes_sent += 1
        except OSError:
            pass  # the client closed: what the test wants
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def dribbler():
    servers: list[Dribbler] = []

    def start(first: bytes, drip: bytes) -> Dribbler:
        servers.append(Dribbler(first, drip))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_the_concurrency_bound_holds_connections_to_that_many(serve):
    # six endpoints that never answer, two at a time: three waves of one timeout each; unbounded it would be one
    silent = [serve(None, mode="silent") for _ in range(6)]
    drill = drill_of(
        [EndpointSpec(address=s.address, sni="localhost") for s in silent], concurrency=2, timeout=TIMEOUT
    )
    started = time.monotonic()
    results = check_endpoints(drill)
    elapsed = time.monotonic() - started
    assert [r.codes() for r in results] == [["TLS_HANDSHAKE_FAILED"]] * 6
    assert 3 * TIMEOUT - 0.05 <= elapsed < 3 * TIMEOUT + 1.5, elapsed


def test_a_handshake_answered_a_byte_at_a_time_costs_one_timeout(dribbler):
    # a TLS record header promising 16 KB, then a byte every 50 ms: each read succeeds, the deadline must still end it
    slow = dribbler(b"\x16\x03\x03\x40\x00", b"\x00")
    started = time.monotonic()
    [result] = check_endpoints(
        drill_of([EndpointSpec(address=slow.address, sni="localhost")], timeout=TIMEOUT)
    )
    elapsed = time.monotonic() - started
    assert result.codes() == ["TLS_HANDSHAKE_FAILED"] and result.verdict is Verdict.ERROR
    assert f"no TLS answer within {TIMEOUT:g}s" in result.findings[0].message
    assert TIMEOUT - 0.05 <= elapsed < TIMEOUT + 1.0, elapsed
    assert slow.bytes_sent >= 3  # it did dribble: the reads were not what timed out


def test_a_starttls_greeting_answered_a_byte_at_a_time_costs_one_timeout(dribbler):
    slow = dribbler(b"220-", b"x")
    started = time.monotonic()
    [result] = check_endpoints(
        drill_of([EndpointSpec(address=slow.address, sni="localhost", starttls="smtp")], timeout=TIMEOUT)
    )
    elapsed = time.monotonic() - started
    assert result.codes() == ["TLS_HANDSHAKE_FAILED"]
    assert f"no STARTTLS answer within {TIMEOUT:g}s" in result.findings[0].message
    assert TIMEOUT - 0.05 <= elapsed < TIMEOUT + 1.0, elapsed


def test_a_name_lookup_that_hangs_costs_one_timeout_and_holds_nobody_back(pki, serve, monkeypatch):
    real = socket.getaddrinfo

    def resolver(host, *args, **kw):
        if host == "hangs.invalid":
            time.sleep(5)  # a resolver that does not answer; left behind in its daemon thread
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    healthy = serve(make_leaf(pki.inter))
    specs = [
        EndpointSpec(address="hangs.invalid:443"),
        EndpointSpec(address=healthy.address, sni="localhost", ca_bundle=str(pki.bundle)),
    ]
    started = time.monotonic()
    hung, ok = check_endpoints(drill_of(specs, timeout=2.0))
    elapsed = time.monotonic() - started
    assert hung.codes() == ["ENDPOINT_UNREACHABLE"] and hung.verdict is Verdict.ERROR
    assert "the name did not resolve within 2s" in hung.findings[0].message
    assert ok.verdict is Verdict.PASS
    assert elapsed < 2.0 + 1.5, elapsed


def test_a_name_that_does_not_resolve_is_unreachable(monkeypatch):
    def resolver(host, *args, **kw):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    [result] = check_endpoints(drill_of([EndpointSpec(address="nowhere.invalid:443")], timeout=TIMEOUT))
    assert result.codes() == ["ENDPOINT_UNREACHABLE"]
    assert "Name or service not known" in result.findings[0].message


def test_outcomes_come_back_in_target_order_judged_in_the_callers_thread(pki, serve, refused_address):
    silent = serve(None, mode="silent")
    healthy = serve(make_leaf(pki.inter))
    targets = [Target.parse(a, sni="localhost") for a in (silent.address, healthy.address, refused_address)]
    judged_in: set[str] = set()

    def then(outcome):
        judged_in.add(threading.current_thread().name)
        return outcome

    outcomes = run_probes(targets, timeout=2.0, concurrency=3, then=then)
    assert [o.target for o in outcomes] == targets
    assert [o.error_code for o in outcomes] == ["TLS_HANDSHAKE_FAILED", None, "ENDPOINT_UNREACHABLE"]
    assert outcomes[1].chain and outcomes[1].tls_version
    assert judged_in == {threading.current_thread().name}


def test_no_probing_thread_outlives_the_run(pki, serve, refused_address):
    healthy = serve(make_leaf(pki.inter))
    silent = serve(None, mode="silent")
    specs = [
        EndpointSpec(address=a, sni="localhost", ca_bundle=str(pki.bundle))
        for a in (healthy.address, silent.address, refused_address)
    ]
    check_endpoints(drill_of(specs, timeout=TIMEOUT))
    assert not [t.name for t in threading.enumerate() if t.name.startswith("drillbook-probe")]


def test_a_crash_while_judging_stops_the_run_and_leaves_no_thread(pki, serve):
    servers = [serve(make_leaf(pki.inter)) for _ in range(4)]
    targets = [Target.parse(s.address, sni="localhost") for s in servers]

    def then(outcome):
        raise RuntimeError("judging crashed")

    with pytest.raises(RuntimeError, match="judging crashed"):
        run_probes(targets, timeout=ROOMY, concurrency=1, then=then)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("drillbook-probe")]


@pytest.mark.parametrize("allowed", [0, 2])
def test_when_the_system_refuses_threads_the_ones_started_probe_everything(pki, serve, monkeypatch, allowed):
    # a container's pids limit: starting a thread raises RuntimeError("can't start new thread")
    servers = [serve(make_leaf(pki.inter)) for _ in range(5)]
    targets = [Target.parse(s.address, sni="localhost") for s in servers]
    real_start = threading.Thread.start
    started: list[str] = []

    def start(thread):
        if thread.name.startswith("drillbook-probe") and len(started) >= allowed:
            raise RuntimeError("can't start new thread")
        started.append(thread.name)
        return real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    outcomes = run_probes(targets, timeout=ROOMY, concurrency=5)
    assert [o.target for o in outcomes] == targets
    assert all(o.ok and o.chain for o in outcomes), [o.error for o in outcomes]
    assert len([n for n in started if n.startswith("drillbook-probe")]) == allowed


@pytest.mark.parametrize("threads", [True, False])
def test_an_interrupt_inside_a_probe_stops_the_run(pki, serve, monkeypatch, threads):
    # fault injection: an interrupt (KeyboardInterrupt, or Airflow's SIGTERM handler) while one endpoint is probed
    import drillbook.drills.certificates.probe as probe_module

    servers = [serve(make_leaf(pki.inter)) for _ in range(4)]
    targets = [Target.parse(s.address, sni="localhost") for s in servers]
    real_attempt = probe_module._attempt
    probed: list[Target] = []

    def attempt(target, *args, **kw):
        probed.append(target)
        if target == targets[1]:
            raise KeyboardInterrupt
        return real_attempt(target, *args, **kw)

    monkeypatch.setattr(probe_module, "_attempt", attempt)
    if not threads:  # every thread start refused: the caller's thread probes, and the interrupt is its own
        real_start = threading.Thread.start

        def start(thread):
            if thread.name.startswith("drillbook-probe"):
                raise RuntimeError("can't start new thread")
            return real_start(thread)

        monkeypatch.setattr(threading.Thread, "start", start)
    with pytest.raises(KeyboardInterrupt):
        run_probes(targets, timeout=ROOMY, concurrency=1)
    assert probed[:2] == targets[:2] and len(probed) <= 3
    assert not [t.name for t in threading.enumerate() if t.name.startswith("drillbook-probe")]


def test_a_run_stopped_early_does_not_wait_for_a_silent_endpoints_deadline(pki, serve):
    # SIGTERM must be recorded and the process gone long before a 30 s probe deadline: the stuck probe is left
    # to its deadline in a daemon thread
    healthy = serve(make_leaf(pki.inter))
    silent = serve(None, mode="silent")
    targets = [Target.parse(a, sni="localhost") for a in (silent.address, healthy.address)]

    def then(outcome):
        raise KeyboardInterrupt  # the first outcome to arrive is the healthy one's

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_probes(targets, timeout=30, concurrency=2, then=then)
    assert time.monotonic() - started < 5
    left = [t for t in threading.enumerate() if t.name.startswith("drillbook-probe")]
    assert all(t.daemon for t in left)  # never holds the interpreter's exit
