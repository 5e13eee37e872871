"""Profile lints: what RFC 5280 and the CA/Browser Forum ask of a certificate beyond what clients enforce.

Rules this module enforces:
- a lint never decides trust: a chain OpenSSL accepts stays trusted, and each
  lint is its own ``low`` or ``medium`` code, so a certificate with only lints
  still PASSes (a false alarm teaches on-call to ignore pages);
- a self-signed certificate is a trust anchor (or pinned on purpose) and is not
  linted: clients check only an anchor's validity and key (``judge.py``);
- ``CERT_NO_AKI`` (low): a certificate issued by another without the Authority
  Key Identifier; ``CERT_NO_SKI`` (low): an issuing CA without the Subject Key
  Identifier (RFC 5280 4.2.1.1 / 4.2.1.2); strict verifiers such as
  cryptography's Web-PKI policy refuse both, OpenSSL, Go and browsers do not;
- leaf rules (a certificate that is not a CA): ``CERT_NO_EKU`` (low) without
  Extended Key Usage; ``CERT_NO_SAN`` (medium) without Subject Alternative Names
  (Chrome, Go and drillbook's own name check ignore the CN);
  ``CERT_VALIDITY_TOO_LONG`` (low) for a leaf issued on or after 2020-09-01
  that is valid for more than 398 days (CA/B Baseline Requirements 6.3.2; Apple
  and Chrome refuse such publicly-trusted leaves, so in practice it is a private
  CA's certificate, and low keeps a private PKI's fleet out of the Slack summary).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drillbook.drills.certificates.x509facts import DAY, CertFacts, short_name

if TYPE_CHECKING:
    from drillbook.drills.base import ResultBuilder

MAX_LEAF_DAYS = 398
LEAF_LIMIT_FROM = datetime(2020, 9, 1, tzinfo=UTC)


def _has(cert: Any, ext_class: Any, facts: CertFacts | None = None) -> bool:
    from cryptography import x509

    if facts is not None and facts.extension_types is not None:
        return ext_class in facts.extension_types
    try:
        cert.extensions.get_extension_for_class(ext_class)
    except x509.ExtensionNotFound:
        return False
    except Exception:  # unreadable extensions: present but malformed, not "missing"
        return True
    return True


def lint_profile(builder: ResultBuilder, cert: Any, facts: CertFacts, *, subject: str) -> None:
    """Report the profile lints of one certificate (``cert``: cryptography's, ``facts``: its facts)."""
    from cryptography import x509

    builder.checked()
    if facts.self_signed:
        return
    name = short_name(facts)
    detail = {"fingerprint_sha256": facts.fingerprint_sha256, "issuer": facts.issuer}
    if not _has(cert, x509.AuthorityKeyIdentifier, facts):
        builder.find(
            "CERT_NO_AKI",
            f"{name} has no Authority Key Identifier extension; OpenSSL and browsers accept it, "
            "strict verifiers (RFC 5280 profile) do not",
            subject=subject,
            detail=detail,
        )
    if facts.is_ca and not _has(cert, x509.SubjectKeyIdentifier, facts):
        builder.find(
            "CERT_NO_SKI",
            f"CA certificate {name} has no Subject Key Identifier extension",
            subject=subject,
            detail=detail,
        )
    if facts.is_ca:
        return
    if not _has(cert, x509.ExtendedKeyUsage, facts):
        builder.find(
            "CERT_NO_EKU",
            f"{name} has no Extended Key Usage extension (expected serverAuth)",
            subject=subject,
            detail=detail,
        )
    if not _has(cert, x509.SubjectAlternativeName, facts):
        builder.find(
            "CERT_NO_SAN",
            f"{name} has no Subject Alternative Names; clients ignore the CN, so it matches no host name",
            subject=subject,
            detail=detail,
        )
    days = facts.lifetime_seconds / DAY
    # the BR count both ends: notAfter - notBefore + 1 second; allow that second
    if facts.not_before >= LEAF_LIMIT_FROM and facts.lifetime_seconds > MAX_LEAF_DAYS * DAY + 1:
        builder.find(
            "CERT_VALIDITY_TOO_LONG",
            f"{name} is valid for {days:.0f} days (issued {facts.not_before:%Y-%m-%d}); "
            f"leaves issued since 2020-09-01 may be valid for at most {MAX_LEAF_DAYS} days",
            subject=subject,
            detail={**detail, "validity_days": round(days, 2), "not_before": facts.not_before.isoformat()},
        )
