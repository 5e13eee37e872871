"""Codes of the certificates drill.

The rules every code obeys are in ``drillbook.finding_codes``; ``drillbook.findings`` registers the rows.
"""

from __future__ import annotations

from drillbook.finding_codes import FindingSpec
from drillbook.result import Severity

_S = Severity
SPECS: list[FindingSpec] = [
    FindingSpec(
        "CERT_EXPIRED",
        _S.CRITICAL,
        "A certificate has expired",
        "Renew and deploy the certificate now.",
        "certificates",
    ),
    FindingSpec(
        "CERT_EXPIRING",
        _S.MEDIUM,
        "A certificate expires soon",
        "Renew the certificate before the date shown; check that automatic renewal works.",
        "certificates",
    ),
    FindingSpec(
        "CERT_NOT_YET_VALID",
        _S.HIGH,
        "A certificate is not valid yet",
        "Check the issuing clock and the deployment; clients will reject it until the date shown.",
        "certificates",
    ),
    FindingSpec(
        "CHAIN_UNTRUSTED",
        _S.HIGH,
        "The certificate chain does not verify against the trusted roots",
        "Serve the full chain from a trusted CA, or configure the private CA bundle for this endpoint.",
        "certificates",
    ),
    FindingSpec(
        "CERT_SELF_SIGNED",
        _S.HIGH,
        "The certificate is self-signed",
        "Issue the certificate from a trusted or private CA.",
        "certificates",
    ),
    FindingSpec(
        "HOSTNAME_MISMATCH",
        _S.HIGH,
        "The certificate does not cover the name that was asked for",
        "Re-issue with the name in the SANs, or fix the SNI name in the catalogue.",
        "certificates",
    ),
    FindingSpec(
        "CHAIN_INCOMPLETE",
        _S.HIGH,
        "The server does not send the intermediate certificate",
        "Configure the server to send the full chain (leaf + intermediates).",
        "certificates",
    ),
    FindingSpec(
        "CHAIN_EXPIRES_FIRST",
        _S.MEDIUM,
        "An intermediate certificate expires before the leaf",
        "Replace the intermediate with its current version from the CA.",
        "certificates",
    ),
    FindingSpec(
        "WEAK_KEY",
        _S.HIGH,
        "The certificate's key is too short",
        "Re-issue with RSA >= 2048 bits or EC >= 256 bits.",
        "certificates",
    ),
    FindingSpec(
        "WEAK_SIGNATURE",
        _S.HIGH,
        "The certificate is signed with a broken hash (SHA-1 or MD5)",
        "Re-issue with a SHA-256 (or stronger) signature.",
        "certificates",
    ),
    FindingSpec(
        "TLS_OUTDATED",
        _S.HIGH,
        "The endpoint only negotiates TLS 1.0 or 1.1",
        "Enable TLS 1.2 and 1.3 on the server.",
        "certificates",
    ),
    FindingSpec(
        "ENDPOINT_UNREACHABLE",
        _S.CRITICAL,
        "The endpoint could not be reached",
        "Check the host, port, firewall and that the service is running.",
        "certificates",
        True,
    ),
    FindingSpec(
        "TLS_HANDSHAKE_FAILED",
        _S.CRITICAL,
        "The TLS handshake failed",
        "Check that the port speaks TLS (or the STARTTLS setting) and the server's TLS configuration.",
        "certificates",
        True,
    ),
    FindingSpec(
        "ACM_RENEWAL_INELIGIBLE",
        _S.MEDIUM,
        "An ACM certificate is not eligible for managed renewal",
        "Re-validate the domain or re-import the certificate before it expires.",
        "certificates",
    ),
    FindingSpec(
        "CERT_UNREADABLE",
        _S.CRITICAL,
        "A certificate file could not be read or parsed",
        "Check the path and that the file holds PEM certificates.",
        "certificates",
        True,
    ),
    FindingSpec(
        "ACM_UNAVAILABLE",
        _S.CRITICAL,
        "AWS Certificate Manager could not be queried",
        "Check the AWS connection's credentials and region, and the acm:ListCertificates / acm:DescribeCertificate permissions.",
        "certificates",
        True,
    ),
    FindingSpec(
        "CERT_REVOKED",
        _S.CRITICAL,
        "The certificate has been revoked",
        "Replace it now with a newly issued certificate and find out why it was revoked (the RevocationReason is in the detail); clients that check revocation reject it.",
        "certificates",
    ),
    FindingSpec(
        "ACM_NOT_USABLE",
        _S.HIGH,
        "An ACM certificate is not usable: inactive, its request failed or timed out, or an unknown status",
        "Read the status and FailureReason in the detail; request (and validate) a new certificate, and delete the dead request.",
        "certificates",
    ),
    FindingSpec(
        "CERT_NO_AKI",
        _S.LOW,
        "A certificate has no Authority Key Identifier (profile lint; clients still trust it)",
        "Re-issue with the authorityKeyIdentifier extension (RFC 5280 requires it on every certificate but a self-signed root); strict verifiers refuse certificates without it.",
        "certificates",
    ),
    FindingSpec(
        "CERT_NO_SKI",
        _S.LOW,
        "An issuing CA certificate has no Subject Key Identifier (profile lint)",
        "Re-issue the CA certificate with the subjectKeyIdentifier extension (RFC 5280 4.2.1.2).",
        "certificates",
    ),
    FindingSpec(
        "CERT_NO_EKU",
        _S.LOW,
        "A leaf certificate has no Extended Key Usage (profile lint)",
        "Re-issue with extendedKeyUsage serverAuth (and clientAuth only if it is used as a client certificate).",
        "certificates",
    ),
    FindingSpec(
        "CERT_NO_SAN",
        _S.MEDIUM,
        "A leaf certificate has no Subject Alternative Names: its name is only in the CN, which clients ignore",
        "Re-issue with every host name (and IP address) in the subjectAltName extension.",
        "certificates",
    ),
    FindingSpec(
        "CERT_VALIDITY_TOO_LONG",
        _S.LOW,
        "A leaf certificate is valid for longer than the CA/B rules allow (398 days since 2020-09-01)",
        "Re-issue with a validity of at most 398 days (shorter is better; automate renewal); Apple and Chrome refuse longer publicly-trusted leaves, so only a private CA can issue one.",
        "certificates",
    ),
]
