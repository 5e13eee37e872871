"""Read the facts of one X.509 certificate: names, dates, key, signature, fingerprint.

Rule this module enforces: facts are read, never judged here (``judge.py``
judges), and every fact is a short scalar or a short list of strings, so it can
go into a finding's detail, a ledger row and a Slack line as is. A field
cryptography cannot decode (an unknown key type, an MD5 signature it refuses)
is reported as ``"unknown"`` rather than failing the whole certificate.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

DAY = 86400.0


@dataclass(frozen=True)
class CertFacts:
    """What a certificate says about itself, at the time it was inspected."""

    subject: str
    issuer: str
    sans: list[str]
    serial: str
    not_before: datetime
    not_after: datetime
    seconds_left: float
    lifetime_seconds: float
    key_type: str  # RSA, EC, Ed25519, Ed448, DSA, unknown
    key_bits: int
    signature_algorithm: str  # e.g. sha256WithRSAEncryption
    signature_hash: str  # sha256, sha1, md5, none (EdDSA), unknown
    fingerprint_sha256: str
    self_issued: bool  # issuer name == subject name
    self_signed: bool  # self-issued and its own key signed it (``is_self_signed``)
    is_ca: bool
    der: bytes = field(repr=False, compare=False, default=b"")
    # the classes of the extensions it carries (read once for every lookup); None when they cannot be read
    extension_types: frozenset[type] | None = field(repr=False, compare=False, default=None)

    @property
    def days_left(self) -> float:
        return self.seconds_left / DAY

    def to_detail(self) -> dict[str, Any]:
        """The JSON-safe facts for a result's details (no DER, dates as ISO strings)."""
        # not dataclasses.asdict: it deep-copies every field, the DER bytes included (measurably slow at 300 endpoints)
        out = {name: getattr(self, name) for name in _DETAIL_FIELDS}
        out["sans"] = list(self.sans)
        out["not_before"] = self.not_before.isoformat()
        out["not_after"] = self.not_after.isoformat()
        out["days_left"] = round(self.days_left, 2)
        out["seconds_left"] = round(self.seconds_left, 1)
        out["lifetime_days"] = round(self.lifetime_seconds / DAY, 2)
        out.pop("lifetime_seconds", None)
        return out


_DETAIL_FIELDS = tuple(
    f.name for f in fields(CertFacts) if f.name not in ("der", "extension_types")
)  # fields() per call is not free


_KEY_KIND: dict[
    type, str
] = {}  # concrete key class -> its kind (the ABC checks are slow; a run sees a few classes)


def _key_kind(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    kind = _KEY_KIND.get(type(key))
    if kind is None:
        kind = "unknown"
        for name, cls in (
            ("RSA", rsa.RSAPublicKey),
            ("EC", ec.EllipticCurvePublicKey),
            ("Ed25519", ed25519.Ed25519PublicKey),
            ("Ed448", ed448.Ed448PublicKey),
            ("DSA", dsa.DSAPublicKey),
        ):
            if isinstance(key, cls):
                kind = name
                break
        _KEY_KIND[type(key)] = kind
    return kind


def _key_facts(cert: Certificate) -> tuple[str, int]:
    try:
        key = cert.public_key()
    except Exception:  # an exotic key must not hide the rest of the facts
        return "unknown", 0
    kind = _key_kind(key)
    if kind in ("RSA", "DSA"):
        return kind, key.key_size  # type: ignore[union-attr]
    if kind == "EC":
        return kind, key.curve.key_size  # type: ignore[union-attr]
    return kind, {"Ed25519": 256, "Ed448": 456}.get(kind, 0)


def _signature_facts(cert: Certificate) -> tuple[str, str]:
    oid = cert.signature_algorithm_oid
    name = getattr(oid, "_name", None) or oid.dotted_string
    try:
        alg = cert.signature_hash_algorithm
        digest = alg.name if alg is not None else "none"
    except Exception:  # cryptography refuses some legacy hashes; read them from the OID name
        lowered = name.lower()
        digest = next((h for h in ("md5", "md2", "sha1") if h in lowered), "unknown")
    return name, digest


def _extensions(cert: Certificate) -> dict[type, Any] | None:
    """Each extension's value by its class, read once; None when the extensions cannot be read."""
    try:
        return {type(ext.value): ext.value for ext in cert.extensions}
    except Exception:  # a malformed extension: cryptography refuses to read any of them
        return None


def _sans(cert: Certificate, extensions: dict[type, Any] | None = None) -> list[str]:
    from cryptography import x509

    if extensions is None:
        extensions = _extensions(cert)
    ext = extensions.get(x509.SubjectAlternativeName) if extensions is not None else None
    if ext is None:  # none, or a malformed extension: reported as no SANs
        return []
    # one pass over the SANs (get_values_for_type walks them once per type); DNS names first, then IPs
    dns: list[str] = []
    ips: list[str] = []
    for general_name in ext:
        if isinstance(general_name, x509.DNSName):
            dns.append(general_name.value)
        elif isinstance(general_name, x509.IPAddress):
            ips.append(str(general_name.value))
    return dns + ips


def _is_ca(cert: Certificate, extensions: dict[type, Any] | None = None) -> bool:
    from cryptography import x509

    if extensions is None:
        extensions = _extensions(cert)
    constraints = extensions.get(x509.BasicConstraints) if extensions is not None else None
    return bool(constraints is not None and constraints.ca)  # no (or malformed) basicConstraints: not a CA


def signed_by(cert: Certificate, issuer: Certificate) -> bool:
    """True when ``issuer``'s name and key match ``cert``'s issuer and signature."""
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # any failure means "not signed by this issuer"
        return False
    return True


def _key_ids_agree(cert: Certificate) -> bool:
    """OpenSSL's test for "issued by itself" without the signature: AKI key id absent or equal to the SKI."""
    from cryptography import x509

    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return True
    except Exception:  # a malformed AKI: nothing to agree with
        return False
    if aki is None:
        return True
    try:
        return aki == cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except Exception:  # an AKI but no (readable) SKI: they cannot be shown to agree
        return False


def is_self_signed(cert: Certificate, *, self_issued: bool | None = None) -> bool:
    """True for a self-issued certificate whose own key signed it: a root (or a pinned self-signed leaf).

    cryptography will not check SHA-1, MD5 or MD2 signatures at all; for those the
    signature cannot decide, and the key identifiers do (as OpenSSL decides whether
    a certificate is a trust anchor: clients never check an anchor's self-signature).
    """
    if not (cert.issuer == cert.subject if self_issued is None else self_issued):
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except ValueError:  # "Unsupported signature algorithm": a legacy hash cryptography refuses to check
        return _key_ids_agree(cert)
    except Exception:  # a bad signature or a mismatched key: not its own issuer
        return False
    return True


def fingerprint(cert: Certificate) -> str:
    from cryptography.hazmat.primitives import hashes

    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def inspect_certificate(
    cert: Certificate, *, now: datetime | None = None, der: bytes | None = None
) -> CertFacts:
    """Read the facts of ``cert`` as of ``now`` (UTC); ``der``: its encoding, when the caller already has it."""
    from cryptography.hazmat.primitives import serialization

    now = now or datetime.now(UTC)
    if der is None:
        der = cert.public_bytes(serialization.Encoding.DER)
    extensions = _extensions(cert)
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    key_type, key_bits = _key_facts(cert)
    sig_name, sig_hash = _signature_facts(cert)
    # each .subject / .issuer access builds a new Name in Python: read each once
    subject, issuer = cert.subject, cert.issuer
    self_issued = issuer == subject
    return CertFacts(
        subject=subject.rfc4514_string(),
        issuer=issuer.rfc4514_string(),
        sans=_sans(cert, extensions),
        serial=format(cert.serial_number, "X"),
        not_before=not_before,
        not_after=not_after,
        seconds_left=(not_after - now).total_seconds(),
        lifetime_seconds=max((not_after - not_before).total_seconds(), 1.0),
        key_type=key_type,
        key_bits=key_bits,
        signature_algorithm=sig_name,
        signature_hash=sig_hash,
        # the SHA-256 of the DER, as ``fingerprint`` computes it (hashlib: a tenth of the cost)
        fingerprint_sha256=hashlib.sha256(der).digest().hex(":").upper(),
        self_issued=self_issued,
        self_signed=is_self_signed(cert, self_issued=self_issued),
        is_ca=_is_ca(cert, extensions),
        der=der,
        extension_types=frozenset(extensions) if extensions is not None else None,
    )


@functools.lru_cache(maxsize=2048)
def load_der(der: bytes) -> Certificate:
    """Parse a DER certificate; cached because a fleet shares its intermediates (and often its leaves)."""
    from cryptography import x509

    return x509.load_der_x509_certificate(der)


@functools.lru_cache(maxsize=2048)
def facts_of_der(der: bytes, now: datetime) -> CertFacts:
    """``inspect_certificate`` of a DER certificate, cached per (certificate, instant) within a run."""
    return inspect_certificate(load_der(der), now=now, der=der)


def short_name(facts: CertFacts) -> str:
    """A label for humans: the CN when there is one, else the whole subject."""
    for part in facts.subject.split(","):
        if part.startswith("CN="):
            return part[3:]
    return facts.subject or facts.fingerprint_sha256[:23]
