"""Turn certificate facts and probe outcomes into findings: the certificate drill's rules, in one place.

Rules this module enforces:
- expiry: ``CERT_EXPIRED`` once ``not_after`` has passed; ``CERT_EXPIRING`` when
  less than the *effective* warn threshold remains, ``critical`` severity below
  the effective critical threshold. The effective thresholds are the catalogue's
  (default 30 d / 7 d) capped at a fraction (default 1/3) of the certificate's
  own lifetime, scaled together — so a 90-day certificate warns at 30 days left,
  a 6-day certificate at 2 days (critical at ~11 h), and a short-lived
  certificate is not permanently red;
- ``WEAK_KEY``: RSA or DSA below 2048 bits, EC below 256; ``WEAK_SIGNATURE``:
  SHA-1, MD5 or MD2 on any certificate that is not a self-signed root (a root's
  self-signature is never checked by clients);
- ``TLS_OUTDATED`` when the best version the server agreed to is TLS 1.1 or older
  (the probe offers everything from TLS 1.0 up, so this is the server's maximum);
- each check that ran is counted with ``builder.checked()``, so a certificate
  with no finding is a PASS that was earned, never a default.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import TYPE_CHECKING, Any, Protocol

from drillbook.drills.certificates.x509facts import DAY, CertFacts, short_name
from drillbook.result import Severity

if TYPE_CHECKING:
    from drillbook.drills.base import ResultBuilder
    from drillbook.drills.certificates.verify import ChainVerdict

MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
WEAK_HASHES = {"sha1", "md5", "md2"}
OUTDATED_TLS = {"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"}


class ThresholdsLike(Protocol):
    warn: float
    critical: float
    lifetime_fraction: float


def effective_thresholds(lifetime_seconds: float, thresholds: ThresholdsLike) -> tuple[float, float]:
    """(warn, critical) in seconds for a certificate of this lifetime; see the module rule."""
    cap = lifetime_seconds * thresholds.lifetime_fraction
    if cap >= thresholds.warn or thresholds.warn <= 0:
        return thresholds.warn, thresholds.critical
    scale = cap / thresholds.warn
    return cap, thresholds.critical * scale


def _days(seconds: float) -> str:
    days = seconds / DAY
    if abs(days) >= 2:
        return f"{days:.0f} days"
    return f"{seconds / 3600:.1f} hours"


def judge_validity(
    builder: ResultBuilder,
    facts: CertFacts,
    *,
    subject: str,
    thresholds: ThresholdsLike,
    extra: dict[str, Any] | None = None,
    downgrade: str | None = None,
) -> None:
    """Expiry and not-yet-valid; ``downgrade`` (a reason) lowers the severity to low (e.g. an unused ACM cert)."""
    detail = {
        "not_before": facts.not_before.isoformat(),
        "not_after": facts.not_after.isoformat(),
        "days_left": round(facts.days_left, 2),
        "fingerprint_sha256": facts.fingerprint_sha256,
        **(extra or {}),
    }
    note = f" ({downgrade})" if downgrade else ""
    low = Severity.LOW if downgrade else None
    builder.checked()
    if facts.seconds_left <= 0:
        builder.find(
            "CERT_EXPIRED",
            f"{short_name(facts)} expired {_days(-facts.seconds_left)} ago, on "
            f"{facts.not_after:%Y-%m-%d %H:%M} UTC{note}",
            subject=subject,
            detail=detail,
            severity=low,
        )
        return
    age = facts.lifetime_seconds - facts.seconds_left
    if age < 0:
        builder.find(
            "CERT_NOT_YET_VALID",
            f"{short_name(facts)} is valid only from {facts.not_before:%Y-%m-%d %H:%M} UTC "
            f"(in {_days(-age)}){note}",
            subject=subject,
            detail=detail,
            severity=low,
        )
        return
    warn, critical = effective_thresholds(facts.lifetime_seconds, thresholds)
    if facts.seconds_left < warn:
        severity = Severity.CRITICAL if facts.seconds_left < critical else Severity.MEDIUM
        builder.find(
            "CERT_EXPIRING",
            f"{short_name(facts)} expires in {_days(facts.seconds_left)}, on {facts.not_after:%Y-%m-%d %H:%M} UTC "
            f"(warn below {_days(warn)}, critical below {_days(critical)}){note}",
            subject=subject,
            severity=low or severity,
            detail={**detail, "warn_days": round(warn / DAY, 2), "critical_days": round(critical / DAY, 2)},
        )


def judge_strength(builder: ResultBuilder, facts: CertFacts, *, subject: str, is_root: bool = False) -> None:
    """Key size and signature hash."""
    builder.checked()
    too_short = (facts.key_type in {"RSA", "DSA"} and facts.key_bits < MIN_RSA_BITS) or (
        facts.key_type == "EC" and facts.key_bits < MIN_EC_BITS
    )
    if too_short:
        minimum = MIN_EC_BITS if facts.key_type == "EC" else MIN_RSA_BITS
        builder.find(
            "WEAK_KEY",
            f"{short_name(facts)} has a {facts.key_type} {facts.key_bits}-bit key (minimum {minimum})",
            subject=subject,
            detail={"key_type": facts.key_type, "key_bits": facts.key_bits},
        )
    builder.checked()
    if facts.signature_hash in WEAK_HASHES and not is_root:
        builder.find(
            "WEAK_SIGNATURE",
            f"{short_name(facts)} is signed with {facts.signature_algorithm}; current clients reject it",
            subject=subject,
            detail={"signature_algorithm": facts.signature_algorithm, "signature_hash": facts.signature_hash},
        )


@functools.lru_cache(maxsize=1024)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address, or None (a fleet asks the same few names: parsed once each)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def name_matches(name: str, sans: list[str]) -> bool:
    """RFC 6125 matching of ``name`` against SAN DNS names and IP addresses (no CN fallback)."""
    name = name.strip().rstrip(".").lower()
    ip = _ip(name)
    for san in sans:
        if ip is not None:
            if _ip(san) == ip:
                return True
            continue
        pattern = san.rstrip(".").lower()
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name:
            head, _, rest = name.partition(".")
            if head and rest == pattern[2:] and rest.count(".") >= 1:
                return True
    return False


def judge_hostname(builder: ResultBuilder, leaf: CertFacts, *, name: str, subject: str) -> None:
    builder.checked()
    if not name_matches(name, leaf.sans):
        shown = ", ".join(leaf.sans[:8]) or "none"
        builder.find(
            "HOSTNAME_MISMATCH",
            f"{short_name(leaf)} does not cover {name!r}; its SANs: {shown}",
            subject=subject,
            detail={"asked_for": name, "sans": shown},
        )


def judge_tls_version(builder: ResultBuilder, version: str | None, *, subject: str) -> None:
    builder.checked()
    if version in OUTDATED_TLS:
        builder.find(
            "TLS_OUTDATED",
            f"the best protocol the server agreed to is {version}",
            subject=subject,
            detail={"tls_version": version},
        )


def _der(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.DER)


def judge_chain(
    builder: ResultBuilder, verdict: ChainVerdict, facts: list[CertFacts], *, subject: str
) -> None:
    """Trust, completeness and the order of expiry along the chain (``facts``: presented, leaf first)."""
    from drillbook.drills.certificates.x509facts import inspect_certificate

    leaf = facts[0]
    builder.checked()
    if verdict.self_signed_untrusted:
        builder.find(
            "CERT_SELF_SIGNED",
            f"{short_name(leaf)} is self-signed and not in the trust store",
            subject=subject,
            detail={"fingerprint_sha256": leaf.fingerprint_sha256},
        )
    elif verdict.incomplete:
        builder.find(
            "CHAIN_INCOMPLETE",
            f"the server sent {len(facts)} certificate(s); the chain verifies only with "
            f"{'; '.join(verdict.missing)} from the trust store/bundle, which it did not send",
            subject=subject,
            detail={"missing": "; ".join(verdict.missing), "sent": len(facts)},
        )
    elif not verdict.trusted:
        # weak keys and hashes are WEAK_KEY / WEAK_SIGNATURE: the verifier leaves them out (openssl_chain.py)
        builder.find(
            "CHAIN_UNTRUSTED",
            f"the chain of {short_name(leaf)} does not verify: {verdict.error}",
            subject=subject,
            detail={"error": verdict.error, "issuer": leaf.issuer},
        )
    builder.checked()
    known = {f.der: f for f in facts}
    if verdict.chain:
        path = [
            known.get(der) or inspect_certificate(c) for c, der in ((c, _der(c)) for c in verdict.chain[1:-1])
        ]
    else:
        path = [f for f in facts[1:] if not f.self_signed]
    for inter in path:
        # one already expired is CERT_EXPIRED (and an untrusted chain), not a warning about the future
        if inter.not_after < leaf.not_after and inter.seconds_left > 0:
            builder.find(
                "CHAIN_EXPIRES_FIRST",
                f"intermediate {short_name(inter)} expires on {inter.not_after:%Y-%m-%d}, "
                f"before the leaf ({leaf.not_after:%Y-%m-%d}): clients will reject the leaf from then on",
                subject=subject,
                detail={
                    "intermediate": inter.subject,
                    "intermediate_not_after": inter.not_after.isoformat(),
                    "leaf_not_after": leaf.not_after.isoformat(),
                },
            )
