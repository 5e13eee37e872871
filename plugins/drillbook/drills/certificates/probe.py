"""Probe TLS endpoints concurrently and capture exactly the certificate chain each one presents.

Rules this module enforces:
- at most ``concurrency`` connections are open at once: each endpoint is probed
  in one of that many threads (blocking sockets, tls_connection.py), and each
  has its own deadline covering name lookup, connect, STARTTLS and the
  handshake, started only when it gets a thread: a dead endpoint costs its own
  timeout and never delays the others;
- whatever the caller does with an outcome (``then``: judging, building the
  result) runs in the caller's thread as the outcomes arrive, never in the
  probing threads: the handshakes release the GIL and run on every core while
  the caller's Python runs, and nothing the caller shares needs a lock;
- the probe *accepts* any certificate (``CERT_NONE``, every protocol from TLS 1.0,
  ``@SECLEVEL=0``) so that an expired, untrusted, weak or misnamed chain is
  still seen and judged; trust is decided afterwards by ``verify.py``;
- with a *verifying* context for the target (``verifying_context``: the same
  settings, ``CERT_REQUIRED`` against exactly the trust store's anchors, no
  host name check), libssl's own chain verification in the handshake settles
  the common case, a trusted chain, in C: the outcome carries the path it built
  (``verified_chain``) and ``verify.py`` need not verify again. When that
  handshake refuses the chain, a second connection with the accepting context
  fetches it (its own deadline, so an endpoint with a refused chain costs at
  most two timeouts) and it is judged as before; the first refusal's reason is
  kept (``verify_error``). A timeout or any other failure of the first
  connection is the endpoint's outcome, never retried;
- the chain is the one the server sent, in its order: ``get_unverified_chain``
  (public since Python 3.13; on 3.10-3.12 the same method exists on the
  private ``SSLObject._sslobj``). Without either, only the leaf is known and
  ``chain_complete`` says so;
- an endpoint that cannot be reached is ``ENDPOINT_UNREACHABLE``; one that
  accepts TCP but does not finish TLS (or STARTTLS) in time is
  ``TLS_HANDSHAKE_FAILED``. Both block verification (ERROR), never PASS.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drillbook.drills.certificates.tls_connection import _STARTTLS, NameLookupTimeout, _Conn
from drillbook.errors import DrillbookError


@dataclass(frozen=True)
class Target:
    """One endpoint to probe."""

    host: str
    port: int
    sni: str | None = None
    starttls: str | None = None  # "smtp" | "postgres" | None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def name(self) -> str:
        """The name asked for (SNI) and checked against the SANs."""
        return self.sni or self.host

    @classmethod
    def parse(cls, address: str, *, sni: str | None = None, starttls: str | None = None) -> Target:
        host, _, port = address.rpartition(":")
        return cls(host=host.strip("[]"), port=int(port), sni=sni, starttls=starttls)


@dataclass
class ProbeOutcome:
    """What one probe saw: the chain as DER (leaf first), or why there is none."""

    target: Target
    chain: list[bytes] = field(default_factory=list)
    tls_version: str | None = None
    cipher: str | None = None
    error_code: str | None = None  # ENDPOINT_UNREACHABLE | TLS_HANDSHAKE_FAILED
    error: str = ""
    seconds: float = 0.0
    chain_complete: bool = True  # False when only the leaf could be read
    # the path the verifying handshake built and accepted (leaf first, DER); None when it did not run
    # or refused the chain (then ``chain`` comes from a second, accepting handshake)
    verified_chain: list[bytes] | None = None
    verify_error: str = ""  # why the verifying handshake refused the chain

    @property
    def ok(self) -> bool:
        return self.error_code is None


def client_context() -> ssl.SSLContext:
    """A context that completes a handshake with any server certificate (see the module rule)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # offering TLS 1.0 is how we detect servers stuck on it
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    with contextlib.suppress(ssl.SSLError):
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def verifying_context(anchors_der: list[bytes]) -> ssl.SSLContext:
    """``client_context`` that lets libssl verify the chain against exactly ``anchors_der`` (see the module rule).

    The verification is the one ``openssl_chain.py`` runs: purpose ``ssl_server`` (libssl's for a
    server), OpenSSL's default flags (``TRUSTED_FIRST``: no ``X509_STRICT``, no partial chains),
    no key-size or hash "security level" (``@SECLEVEL=0``), and the name is not part of it
    (``HOSTNAME_MISMATCH`` judges the name).
    """
    ctx = client_context()
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags = ssl.VERIFY_X509_TRUSTED_FIRST
    if anchors_der:
        ctx.load_verify_locations(cadata=b"".join(anchors_der))
    return ctx


def verified_chain(ssl_object: Any) -> list[bytes] | None:
    """The path a verifying handshake built, leaf first, as DER; None when it cannot be read."""
    for owner in (ssl_object, getattr(ssl_object, "_sslobj", None)):
        getter = getattr(owner, "get_verified_chain", None)
        if getter is None:
            continue
        chain = getter() or []
        der = [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
        return der or None
    return None


def presented_chain(ssl_object: Any) -> tuple[list[bytes], bool]:
    """The DER certificates the server sent, leaf first, and whether the whole chain was readable."""
    for owner in (ssl_object, getattr(ssl_object, "_sslobj", None)):
        getter = getattr(owner, "get_unverified_chain", None)
        if getter is None:
            continue
        chain = getter() or []
        der = [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]
        if der:
            return der, True
    leaf = ssl_object.getpeercert(binary_form=True)
    return ([leaf] if leaf else []), False


def _probe(
    target: Target, ctx: ssl.SSLContext, state: dict[str, str], *, deadline: float, verifying: bool
) -> ProbeOutcome:
    conn = _Conn(deadline)
    try:
        state["stage"] = "connect"
        conn.connect(target.host, target.port)
        if target.starttls is not None:
            state["stage"] = "starttls"
            _STARTTLS[target.starttls](conn)
        state["stage"] = "handshake"
        tls = conn.handshake(ctx, target.sni or target.host)
        chain, complete = presented_chain(tls)
        cipher = tls.cipher()
        return ProbeOutcome(
            target=target,
            chain=chain,
            chain_complete=complete,
            tls_version=tls.version(),
            cipher=cipher[0] if cipher else None,
            verified_chain=verified_chain(tls) if verifying else None,
        )
    finally:
        conn.close()


def _classify(stage: str, exc: BaseException, timeout: float) -> tuple[str, str]:
    if isinstance(exc, TimeoutError):
        if isinstance(exc, NameLookupTimeout):
            return "ENDPOINT_UNREACHABLE", f"the name did not resolve within {timeout:g}s"
        if stage == "connect":
            return "ENDPOINT_UNREACHABLE", f"no TCP connection within {timeout:g}s"
        return (
            "TLS_HANDSHAKE_FAILED",
            f"connected, but no {'STARTTLS' if stage == 'starttls' else 'TLS'} answer within {timeout:g}s",
        )
    text = f"{type(exc).__name__}: {exc}".strip()
    if stage == "connect":
        return "ENDPOINT_UNREACHABLE", text
    return "TLS_HANDSHAKE_FAILED", f"during {stage}: {text}"


# how long an interrupted run waits for its running probes before leaving them to their deadlines
_STOP_GRACE_S = 1.0


class HandshakeRefused(DrillbookError):
    """The verifying handshake refused the chain (carries OpenSSL's reason)."""


def _attempt(target: Target, ctx: ssl.SSLContext, timeout: float, *, verifying: bool) -> ProbeOutcome:
    """One connection under its own deadline; raises ``HandshakeRefused`` only when a verifying handshake refused the chain."""
    state = {"stage": "connect"}
    try:
        return _probe(target, ctx, state, deadline=time.monotonic() + timeout, verifying=verifying)
    except ssl.SSLCertVerificationError as exc:
        if verifying:
            raise HandshakeRefused(exc.verify_message or str(exc)) from None
        code, text = _classify(state["stage"], exc, timeout)
    except Exception as exc:  # every failure is evidence about this endpoint
        code, text = _classify(state["stage"], exc, timeout)
    return ProbeOutcome(target=target, error_code=code, error=text)


def probe_one(
    target: Target, *, ctx: ssl.SSLContext, timeout: float, verifying: ssl.SSLContext | None = None
) -> ProbeOutcome:
    """Probe one endpoint (blocking, at most two ``timeout``s); never raises: failures are an outcome's error code.

    ``verifying``: a ``verifying_context`` to try first (see the module rule).
    """
    start = time.monotonic()
    try:
        outcome = _attempt(target, verifying or ctx, timeout, verifying=verifying is not None)
    except HandshakeRefused as exc:
        # the chain is judged from a second, accepting handshake, exactly as without the fast path
        refused = str(exc) or "certificate verify failed"
        outcome = _attempt(target, ctx, timeout, verifying=False)
        outcome.verify_error = refused
        if not outcome.ok:
            outcome.error = (
                f"{outcome.error} (on a second connection: the first handshake refused the chain: {refused})"
            )
    outcome.seconds = round(time.monotonic() - start, 4)
    return outcome


def run_probes(
    targets: list[Target],
    *,
    timeout: float = 10.0,
    concurrency: int = 100,
    then: Callable[[ProbeOutcome], Any] | None = None,
    verifying: Callable[[Target], ssl.SSLContext | None] | None = None,
) -> list[Any]:
    """Probe every target, ``concurrency`` at once; results (outcomes, or ``then(outcome)``) come back in target order.

    ``then`` runs in the calling thread as each probe completes (see the module rule), so
    judging overlaps the other probes' handshakes. ``verifying(target)``: the target's
    ``verifying_context``, or None to probe it with the accepting context only.
    Returns when every probe has finished; the probing threads are gone by then (when ``then`` or an
    interrupt stops the run early, running probes are given ``_STOP_GRACE_S`` and then left to end at
    their own deadlines). When the system refuses to start as many threads (a container's pids
    limit), the ones that did start probe everything, and with none the calling thread probes one
    endpoint at a time.
    """
    if not targets:
        return []
    ctx = client_context()
    contexts = [verifying(t) if verifying is not None else None for t in targets]
    results: list[Any] = [None] * len(targets)
    pending = iter(range(len(targets)))
    taking = threading.Lock()
    stop = threading.Event()
    done: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()

    def work(inline: bool = False) -> None:
        while not stop.is_set():
            with taking:
                i = next(pending, None)
            if i is None:
                return
            try:
                done.put((i, probe_one(targets[i], ctx=ctx, timeout=timeout, verifying=contexts[i])))
            except BaseException as exc:  # probe_one turns every Exception into an outcome: this is worse
                if inline:
                    raise  # an interrupt in the caller's own thread stops the run now
                done.put((i, exc))

    threads: list[threading.Thread] = []
    finished = False
    try:
        for n in range(max(1, min(concurrency, len(targets)))):
            thread = threading.Thread(target=work, name=f"drillbook-probe-{n}", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # "can't start new thread": probe with the threads there are
                break
            threads.append(thread)
        if not threads:
            work(inline=True)  # in this thread, one endpoint at a time
        for _ in range(len(targets)):
            i, outcome = done.get()
            if isinstance(outcome, BaseException):
                raise outcome
            results[i] = then(outcome) if then is not None else outcome
        finished = True
    finally:
        stop.set()  # probes not started are dropped
        if finished:
            for thread in threads:  # each has handed over its last outcome: they are ending
                thread.join()
        else:
            # An interrupt (SIGTERM: the drill must record it and exit now) or a crash in ``then``: the
            # running probes get a moment to finish, then are left to end at their own deadlines (daemon
            # threads; nobody reads their outcomes). Their sockets are never closed from here: a descriptor
            # closed under a thread still inside a blocking call could be reused by the next open.
            until = time.monotonic() + _STOP_GRACE_S
            for thread in threads:
                thread.join(max(0.0, until - time.monotonic()))
    return results
