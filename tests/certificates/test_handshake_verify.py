"""The handshake-verified fast path gives exactly the findings of the separate verification (issue 14).

Healthy chains are trusted by libssl's own verification in the probe's handshake
(probe.py, verify.py); every refused chain is fetched again by an accepting
handshake and judged as before. These tests run the same endpoints both ways and
compare every verdict, finding (code, severity, message, detail) and detail, and
check the fast path's guards and its second connection.
"""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import UTC, datetime

import pytest

import drillbook.drills.certificates.endpoints as endpoints_module
import drillbook.drills.certificates.verify as verify
from drillbook.drills.certificates import check_endpoints
from drillbook.drills.certificates.catalogue import CertificatesDrill, EndpointSpec
from drillbook.drills.certificates.verify import handshake_verdict, trust_store
from drillbook.result import DrillResult, Verdict
from tests.certificates.pki import DAY, make_ca, make_leaf, now
from tests.certificates.test_endpoints import lab  # noqa: F401  (the fixture: every endpoint case)
from tests.certificates.test_trust_decisions import chains, served  # noqa: F401  (trust cases)

TIMEOUT = 1.5


def _drill(specs: list[EndpointSpec]) -> CertificatesDrill:
    return CertificatesDrill(
        name="certs_fast", kind="certificates", schedule="@daily", endpoints=specs, timeout=TIMEOUT
    )


def _comparable(result: DrillResult) -> tuple:
    return (
        result.verdict,
        [f.model_dump() for f in result.findings],
        result.details,
        result.measurements.values,
    )


def _both_ways(monkeypatch, specs: list[EndpointSpec]) -> tuple[list[DrillResult], list[DrillResult], list]:
    """(fast path results, separate-verification results, chains verify_chain saw in the fast run)."""
    at = datetime.now(UTC)
    seen: list = []
    real = verify.verify_chain

    def recording(presented, **kw):
        seen.append(presented[0].subject.rfc4514_string())
        return real(presented, **kw)

    monkeypatch.setattr(endpoints_module, "HANDSHAKE_VERIFY_MIN", 0)
    monkeypatch.setattr(verify, "verify_chain", recording)
    fast = check_endpoints(_drill(specs), now=at)
    monkeypatch.setattr(verify, "verify_chain", real)
    monkeypatch.setattr(endpoints_module, "HANDSHAKE_VERIFY_MIN", 10**9)
    slow = check_endpoints(_drill(specs), now=at)
    return fast, slow, seen


def test_every_endpoint_case_is_judged_the_same_both_ways(lab, monkeypatch):  # noqa: F811
    names = list(lab)
    fast, slow, _ = _both_ways(monkeypatch, [lab[n][0] for n in names])
    for name, a, b in zip(names, fast, slow, strict=True):
        assert _comparable(a) == _comparable(b), name
        assert sorted(a.codes()) == sorted(lab[name][1]), name


def test_every_trust_case_is_judged_the_same_both_ways(served, monkeypatch):  # noqa: F811
    names = list(served)
    fast, slow, _ = _both_ways(monkeypatch, [served[n] for n in names])
    for name, a, b in zip(names, fast, slow, strict=True):
        assert _comparable(a) == _comparable(b), name


def test_a_healthy_chain_is_not_verified_a_second_time(pki, serve, monkeypatch):
    healthy = [serve(make_leaf(pki.inter)) for _ in range(2)]
    expired = serve(make_leaf(pki.inter, not_before=now() - 100 * DAY, not_after=now() - DAY))
    specs = [
        EndpointSpec(address=s.address, sni="localhost", ca_bundle=str(pki.bundle))
        for s in (*healthy, expired)
    ]
    fast, slow, seen = _both_ways(monkeypatch, specs)
    assert [r.verdict for r in fast] == [Verdict.PASS, Verdict.PASS, Verdict.FAIL]
    assert [_comparable(r) for r in fast] == [_comparable(r) for r in slow]
    # only the refused chain (the expired leaf) went through the separate verification
    assert len(seen) == 1 and fast[2].codes() == ["CERT_EXPIRED"]


class _CountingServer:
    """A TLS listener that counts connections and stops listening after ``shots`` of them."""

    def __init__(self, context: ssl.SSLContext, shots: int | None = None):
        self.context, self.shots, self.accepted = context, shots, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.shots is not None and self.accepted >= self.shots:
                self.sock.close()  # the next connection is refused
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except OSError:
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _server_context(pki, issued, name: str) -> ssl.SSLContext:
    cert, key = pki.write(issued, name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def test_one_connection_for_a_trusted_chain_two_for_a_refused_one(pki, monkeypatch):
    monkeypatch.setattr(endpoints_module, "HANDSHAKE_VERIFY_MIN", 0)
    good = _CountingServer(_server_context(pki, make_leaf(pki.inter), "count-good"))
    bad = _CountingServer(
        _server_context(
            pki, make_leaf(pki.inter, not_before=now() - 9 * DAY, not_after=now() - DAY), "count-bad"
        )
    )
    try:
        specs = [
            EndpointSpec(address=s.address, sni="localhost", ca_bundle=str(pki.bundle)) for s in (good, bad)
        ]
        a, b = check_endpoints(_drill(specs))
    finally:
        good.close()
        bad.close()
    assert (a.verdict, good.accepted) == (Verdict.PASS, 1)
    assert (b.codes(), bad.accepted) == (["CERT_EXPIRED"], 2)


def test_a_refused_chain_whose_second_connection_fails_is_an_error_never_a_pass(pki, monkeypatch):
    """The refused chain cannot be fetched again: the check could not run, so ERROR naming both facts."""
    monkeypatch.setattr(endpoints_module, "HANDSHAKE_VERIFY_MIN", 0)
    other_root = make_ca("root nobody trusts")
    server = _CountingServer(
        _server_context(pki, make_leaf(make_ca("its intermediate", issuer=other_root)), "one-shot"), shots=1
    )
    try:
        [result] = check_endpoints(
            _drill([EndpointSpec(address=server.address, sni="localhost", ca_bundle=str(pki.bundle))])
        )
    finally:
        server.close()
    assert server.accepted == 1
    assert result.verdict is Verdict.ERROR and result.codes() == ["ENDPOINT_UNREACHABLE"]
    assert "the first handshake refused the chain" in result.findings[0].message
    assert "unable to get local issuer certificate" in result.findings[0].message


def test_handshake_verdict_accepts_only_sent_certificates_under_an_anchor(pki, tmp_path):
    """The guard: a path through a certificate the server did not send, or to a non-anchor, is verified again."""
    from cryptography.hazmat.primitives.serialization import Encoding

    der = lambda c: c.public_bytes(Encoding.DER)  # noqa: E731
    leaf = make_leaf(pki.inter)
    store = trust_store(str(pki.bundle), use_system=False)
    presented = [der(leaf.cert), der(pki.inter.cert)]
    path = [*presented, der(pki.root.cert)]
    verdict = handshake_verdict(presented, path, store)
    assert verdict is not None and verdict.trusted
    assert [der(c) for c in verdict.chain] == path
    # the intermediate came from elsewhere (a bundle, the store), not from the server: not ours to trust as is
    assert handshake_verdict(presented[:1], path, store) is None
    # the top is not one of the anchors (an intermediate the handshake's store held, or another root)
    assert handshake_verdict(presented, presented, store) is None
    assert handshake_verdict(presented, [*presented, der(make_ca("stranger").cert)], store) is None
    # nothing verified, or no anchors at all
    assert handshake_verdict(presented, None, store) is None
    assert handshake_verdict(presented, [], store) is None
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    assert handshake_verdict(presented, path, trust_store(str(empty), use_system=False)) is None


def test_no_verifying_context_without_anchors_and_the_fast_path_needs_enough_endpoints(
    pki, tmp_path, monkeypatch
):
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    assert trust_store(str(empty), use_system=False).handshake_context is None
    ctx = trust_store(str(pki.bundle), use_system=False).handshake_context
    assert ctx.verify_mode is ssl.CERT_REQUIRED and not ctx.check_hostname
    assert ctx.verify_flags == ssl.VERIFY_X509_TRUSTED_FIRST  # no X509_STRICT, no partial chains
    specs = [EndpointSpec(address=f"127.0.0.1:{1000 + i}", ca_bundle=str(pki.bundle)) for i in range(3)]
    drill = _drill(specs)
    monkeypatch.setattr(endpoints_module, "HANDSHAKE_VERIFY_MIN", 4)
    assert endpoints_module._handshake_contexts(drill, specs, None, endpoints_module.RunMemo()) == {}
    monkeypatch.setattr(endpoints_module, "HANDSHAKE_VERIFY_MIN", 3)
    assert set(endpoints_module._handshake_contexts(drill, specs, None, endpoints_module.RunMemo())) == {
        str(pki.bundle)
    }
    missing = [EndpointSpec(address="127.0.0.1:1", ca_bundle=str(tmp_path / "nope.pem"))] * 3
    assert (
        endpoints_module._handshake_contexts(_drill(missing), missing, None, endpoints_module.RunMemo()) == {}
    )


@pytest.mark.parametrize("weak", ["rsa_1024", "sha1"])
def test_weak_but_trusted_chains_pass_the_verifying_handshake(pki, serve, monkeypatch, weak):
    """@SECLEVEL=0: the handshake's verification leaves key size and hash to WEAK_KEY / WEAK_SIGNATURE."""
    from tests.certificates.pki import rsa_key

    leaf = (
        make_leaf(pki.inter, key=rsa_key(1024))
        if weak == "rsa_1024"
        else make_leaf(pki.inter, hash_alg="sha1")
    )
    server = serve(leaf, seclevel0=True)
    spec = EndpointSpec(address=server.address, sni="localhost", ca_bundle=str(pki.bundle))
    fast, slow, seen = _both_ways(monkeypatch, [spec])
    assert seen == [] and _comparable(fast[0]) == _comparable(slow[0])
    assert fast[0].codes() == (["WEAK_KEY"] if weak == "rsa_1024" else ["WEAK_SIGNATURE"])


def test_an_anchor_openssl_cannot_read_is_left_out_of_the_verifying_context(pki):
    """As openssl_chain.py leaves it out of its store: the readable anchors still verify in the handshake."""

    class Unreadable:
        def public_bytes(self, encoding):
            return b"\x30\x03\x02\x01\x01"  # DER, but not a certificate

    good = trust_store(str(pki.bundle), use_system=False)
    store = verify.TrustStore(
        anchors=(*good.anchors, Unreadable()),
        intermediates=(),
        anchor_fingerprints=good.anchor_fingerprints,
        sources=good.sources,
    )
    ctx = store.handshake_context
    assert ctx is not None and ctx.cert_store_stats()["x509_ca"] == len(good.anchors) == 1
