"""Decide whether a presented chain is trusted, and if not, why: untrusted, incomplete or self-signed.

Rules this module enforces:
- trust is decided as a real client decides it: by OpenSSL's own chain
  verification with the ``ssl_server`` purpose (``openssl_chain.py``), over
  exactly the certificates the server sent; nothing is fetched from the network.
  A chain OpenSSL (Python's ``ssl``, curl) accepts is never ``CHAIN_UNTRUSTED``
  because a stricter profile would object: profile rules (AKI/SKI, EKU, SAN,
  lifetime) are separate lints (``lints.py``);
- trust anchors are the self-signed certificates of the system store plus the
  configured CA bundle; a non-self-signed certificate in a bundle is an
  *intermediate we know*, never an anchor. It is used only to tell
  ``CHAIN_INCOMPLETE`` (the chain verifies once an intermediate the server did
  not send is added) from ``CHAIN_UNTRUSTED`` (it does not verify at all);
- the leaf's own dates and name are judged elsewhere (``judge.py``): the chain is
  verified at an instant inside the *leaf's* validity, so an expired or misnamed
  leaf yields ``CERT_EXPIRED`` / ``HOSTNAME_MISMATCH`` and not a second, vaguer
  ``CHAIN_UNTRUSTED``; an intermediate or root that is not valid at that instant
  does make the chain untrusted, as it does for every client;
- a chain libssl already verified in the probe's handshake against exactly these
  anchors (``TrustStore.handshake_context``) is trusted without a second
  verification, but only when the path it built is one this module would accept
  as is: every certificate below the top was sent by the server and the top is
  one of the anchors (``handshake_verdict``); anything else (a path through a
  bundle's intermediate, an anchor we do not count as one) is verified here.
"""

from __future__ import annotations

import functools
import hashlib
import os
import ssl
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillbook.errors import DrillbookError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # a CA bundle larger than this is not a CA bundle


@dataclass(frozen=True)
class TrustStore:
    """Anchors (self-signed roots) and known intermediates, from the system store and bundles."""

    anchors: tuple[Any, ...]
    intermediates: tuple[Any, ...]
    anchor_fingerprints: frozenset[bytes]
    sources: tuple[str, ...]

    @functools.cached_property
    def store(self) -> Any:
        """The anchors as an OpenSSL X509_STORE, built once per trust store."""
        from cryptography.hazmat.primitives import serialization

        from drillbook.drills.certificates.openssl_chain import AnchorStore

        return AnchorStore(
            [(c.subject.public_bytes(), c.public_bytes(serialization.Encoding.DER)) for c in self.anchors]
        )

    @functools.cached_property
    def handshake_context(self) -> Any:
        """A probe context whose handshake verifies chains against exactly these anchors; None without anchors.

        Built once per trust store (OpenSSL parses every anchor: ~0.2 ms each, ~30 ms with a
        system store of ~150 roots). An anchor OpenSSL cannot read is left out, as the store
        of ``openssl_chain.py`` leaves it out.
        """
        import ssl

        from cryptography.hazmat.primitives import serialization

        from drillbook.drills.certificates.probe import verifying_context

        ders = [c.public_bytes(serialization.Encoding.DER) for c in self.anchors]
        if not ders:
            return None
        try:
            return verifying_context(ders)
        except (ssl.SSLError, ValueError):  # one anchor OpenSSL cannot read: load the others one by one
            ctx = verifying_context([])
            for der in ders:
                try:
                    ctx.load_verify_locations(cadata=der)
                except (ssl.SSLError, ValueError):
                    continue
            return ctx


@dataclass
class ChainVerdict:
    """What verification concluded about one presented chain."""

    trusted: bool
    incomplete: bool = False  # verifies only with intermediates the server did not send
    missing: list[str] = field(default_factory=list)  # subjects of those intermediates
    self_signed_untrusted: bool = False
    error: str = ""  # the verifier's reason when not trusted
    chain: list[Any] = field(
        default_factory=list
    )  # the verified path, leaf first (when trusted or incomplete)


def _read_pem_file(path: Path) -> list[Certificate]:
    from cryptography import x509

    size = path.stat().st_size
    if size > MAX_BUNDLE_BYTES:
        raise ValueError(
            f"CA bundle {str(path)!r} is {size} bytes; expected a PEM bundle under {MAX_BUNDLE_BYTES}"
        )
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return []
    with warnings.catch_warnings():
        # some distribution bundles carry a root with a non-positive serial; it is still a root
        warnings.simplefilter("ignore")
        return list(x509.load_pem_x509_certificates(data))


def _system_certificates() -> list[Certificate]:
    paths = ssl.get_default_verify_paths()
    cafile = os.environ.get(paths.openssl_cafile_env) or paths.cafile
    if cafile and Path(cafile).is_file():
        return _read_pem_file(Path(cafile))
    capath = os.environ.get(paths.openssl_capath_env) or paths.capath
    certs: list[Certificate] = []
    if capath and Path(capath).is_dir():
        for entry in sorted(Path(capath).iterdir()):
            if entry.is_file() and entry.suffix in {".pem", ".crt", ".0"}:
                try:
                    certs += _read_pem_file(entry)
                except ValueError:
                    continue
    return certs


@functools.lru_cache(maxsize=64)
def _bundle(path: str, mtime: float) -> tuple[Any, ...]:  # mtime keys the cache
    return tuple(_read_pem_file(Path(path)))


@functools.lru_cache(maxsize=1)
def _system() -> tuple[Any, ...]:
    return tuple(_system_certificates())


def _self_signed(cert: Certificate) -> bool:
    from drillbook.drills.certificates.x509facts import is_self_signed

    return is_self_signed(cert)


@functools.lru_cache(maxsize=64)
def _store_of(bundles: tuple[tuple[str, float], ...], use_system: bool) -> TrustStore:
    from cryptography.hazmat.primitives import hashes

    certs: list[Any] = list(_system()) if use_system else []
    sources = ["system"] if use_system else []
    for path, mtime in bundles:
        certs += _bundle(path, mtime)
        sources.append(path)
    anchors: dict[bytes, Any] = {}
    intermediates: dict[bytes, Any] = {}
    for cert in certs:
        fp = cert.fingerprint(hashes.SHA256())
        # self-issued (issuer == subject) is enough to classify: an anchor's own signature is never
        # checked by clients, and verifying ~150 system roots' signatures costs a quarter of a second
        (anchors if cert.issuer == cert.subject else intermediates)[fp] = cert
    return TrustStore(
        anchors=tuple(anchors.values()),
        intermediates=tuple(intermediates.values()),
        anchor_fingerprints=frozenset(anchors),
        sources=tuple(sources),
    )


def trust_store(*bundles: str | None, use_system: bool = True) -> TrustStore:
    """The trust store of the system roots plus ``bundles`` (cached per file and modification time)."""
    keyed: list[tuple[str, float]] = []
    for bundle in bundles:
        if not bundle:
            continue
        path = Path(bundle).expanduser().resolve()
        try:
            keyed.append((str(path), path.stat().st_mtime))
        except OSError as exc:
            raise ValueError(f"CA bundle {bundle!r} cannot be read: {exc.strerror or exc}") from None
    return _store_of(tuple(keyed), use_system)


def verification_time(certs: list[Certificate], now: datetime) -> datetime:
    """``now`` moved inside the leaf's validity window (see module rule)."""
    start, end = certs[0].not_valid_before_utc, certs[0].not_valid_after_utc
    one = timedelta(seconds=1)
    if now < start:
        return start + one if start + one <= end else start
    if now > end:
        return end - one if end - one >= start else end
    return now


class Untrusted(DrillbookError):
    """OpenSSL refused the chain; ``str()`` is its reason in one readable line."""


def explain(outcome: Any) -> str:
    """OpenSSL's refusal in one line, naming the certificate it is about."""
    from drillbook.drills.certificates.x509facts import load_der

    where = ""
    if outcome.at_der:
        try:
            where = f" (at certificate {load_der(outcome.at_der).subject.rfc4514_string()!r})"
        except ValueError:
            where = f" (at depth {outcome.depth})"
    return f"{outcome.message}{where} [OpenSSL X509_V_ERR {outcome.code}]"


def _diagnose(presented: list[Certificate], store: TrustStore) -> str:
    """Name the missing issuer when the presented chain stops short of every known certificate."""
    top = presented[0]
    by_subject = {c.subject: c for c in presented[1:]}
    for _ in range(len(presented)):
        nxt = by_subject.get(top.issuer)
        if nxt is None or nxt is top:
            break
        top = nxt
    from cryptography.hazmat.primitives import hashes

    if _self_signed(top):
        if top.fingerprint(hashes.SHA256()) in store.anchor_fingerprints:
            return ""
        return (
            f"the chain ends at the root {top.subject.rfc4514_string()!r}, which is not in the trust store "
            f"({', '.join(store.sources)})"
        )
    known = {c.subject for c in (*store.anchors, *store.intermediates)}
    if top.issuer in known:
        return ""
    return (
        f"no path to a trusted root: the issuer {top.issuer.rfc4514_string()!r} of "
        f"{top.subject.rfc4514_string()!r} is neither sent by the server nor in the trust store "
        f"({', '.join(store.sources)})"
    )


def _verify(
    store: TrustStore, leaf: Certificate, intermediates: list[Certificate], *, at: datetime
) -> list[Any]:
    """The path OpenSSL builds (leaf first, as cryptography certificates); raises ``Untrusted``."""
    from cryptography.hazmat.primitives import serialization

    from drillbook.drills.certificates.x509facts import load_der

    der = serialization.Encoding.DER
    issuers = [c.issuer.public_bytes() for c in (leaf, *intermediates)]
    outcome = store.store.verify(
        leaf.public_bytes(der), [c.public_bytes(der) for c in intermediates], at=at, issuers=issuers
    )
    if not outcome.trusted:
        raise Untrusted(explain(outcome))
    return [load_der(d) for d in outcome.chain]


def verify_chain(
    presented: list[Certificate],
    *,
    store: TrustStore,
    name: str,
    now: datetime | None = None,
    leaf_self_issued: bool | None = None,
) -> ChainVerdict:
    """Verify ``presented`` (leaf first, as sent) against ``store``; see the module rules.

    ``leaf_self_issued``: whether the leaf's issuer name equals its subject, when the
    caller has already read it (reading a certificate's names again is not free).
    ``name`` does not take part in the trust decision (``HOSTNAME_MISMATCH`` judges it);
    it stays in the signature for callers and the run's verdict memo.
    """
    from cryptography.hazmat.primitives import hashes

    now = now or datetime.now(UTC)
    leaf, sent = presented[0], presented[1:]
    if not store.anchors:
        return ChainVerdict(trusted=False, error="the trust store is empty: no system roots and no CA bundle")
    if (leaf_self_issued is None or leaf_self_issued) and _self_signed(leaf):
        if leaf.fingerprint(hashes.SHA256()) in store.anchor_fingerprints:
            return ChainVerdict(trusted=True, chain=[leaf])  # pinned on purpose in the bundle
        return ChainVerdict(
            trusted=False, self_signed_untrusted=True, error="self-signed certificate not in the trust store"
        )
    at = verification_time(presented, now)
    try:
        return ChainVerdict(trusted=True, chain=_verify(store, leaf, sent, at=at))
    except Untrusted as exc:
        first_error = _diagnose(presented, store) or str(exc)
    if store.intermediates:
        sent_fps = {c.fingerprint(hashes.SHA256()) for c in presented}
        extra = [c for c in store.intermediates if c.fingerprint(hashes.SHA256()) not in sent_fps]
        try:
            chain = _verify(store, leaf, sent + extra, at=at)
        except Untrusted:
            chain = []
        if chain:
            missing = [
                c.subject.rfc4514_string()
                for c in chain[1:-1]
                if c.fingerprint(hashes.SHA256()) not in sent_fps
            ]
            if missing:
                return ChainVerdict(
                    trusted=False, incomplete=True, missing=missing, chain=chain, error=first_error
                )
    return ChainVerdict(trusted=False, error=first_error)


def handshake_verdict(
    presented: list[bytes], path: list[bytes] | None, store: TrustStore
) -> ChainVerdict | None:
    """The verdict on a chain the probe's handshake verified (``path``: the path libssl built, DER, leaf first).

    None unless that path is one ``verify_chain`` would accept as is (see the module rule):
    then the caller verifies the presented chain itself.
    """
    from drillbook.drills.certificates.x509facts import load_der

    if not path or not store.anchors:
        return None
    sent = set(presented)
    if any(der not in sent for der in path[:-1]):
        return None
    if hashlib.sha256(path[-1]).digest() not in store.anchor_fingerprints:
        return None
    return ChainVerdict(trusted=True, chain=[load_der(der) for der in path])
