"""Read AWS Certificate Manager certificates: dates, in-use flag, renewal eligibility, and the PEM itself.

Rules this module enforces:
- the client is a plain boto3 ``acm`` client passed in (the Airflow layer builds
  it from the AWS connection; the CLI from the environment); this module never
  creates credentials;
- every key type is listed (ACM lists only RSA-2048 unless asked), and paging is
  followed to the end with a bounded page count;
- ``ACM_RENEWAL_INELIGIBLE`` means *ACM will not renew a certificate that is
  serving traffic*: an Amazon-issued, issued, in-use certificate whose
  ``RenewalEligibility`` is ``INELIGIBLE``. Imported certificates are never
  renewed by ACM by design (their expiry findings say so), and unused
  certificates are ineligible by design, so neither is flagged;
- ACM's own ``Status`` is judged before any date: a certificate is judged on
  its dates and key only when it is ``ISSUED``. ``REVOKED`` is ``CERT_REVOKED``
  (with the RevocationReason), ``EXPIRED`` is ``CERT_EXPIRED`` whatever the
  dates say, ``INACTIVE`` / ``FAILED`` / ``VALIDATION_TIMED_OUT`` (and any
  status this module does not know) are ``ACM_NOT_USABLE``;
  ``PENDING_VALIDATION`` is SKIPPED (nothing issued yet) unless something uses
  it, which makes it ``ACM_NOT_USABLE`` too;
- expiry, revocation or unusability of a certificate that nothing uses is
  reported at ``low`` severity: it cannot cause an outage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from drillbook.result import Severity

if TYPE_CHECKING:
    from drillbook.drills.base import ResultBuilder

MAX_PAGES = 200
KEY_TYPES = ["RSA_1024", "RSA_2048", "RSA_3072", "RSA_4096", "EC_prime256v1", "EC_secp384r1", "EC_secp521r1"]


@dataclass
class AcmCertificate:
    """One ACM certificate: its description, and its PEM body when ACM will hand it out."""

    arn: str
    description: dict[str, Any]
    pem: str | None = None

    @property
    def domain(self) -> str:
        return str(self.description.get("DomainName") or "")

    @property
    def in_use(self) -> bool:
        return bool(self.description.get("InUseBy"))

    @property
    def status(self) -> str:
        return str(self.description.get("Status") or "UNKNOWN")

    @property
    def cert_type(self) -> str:
        return str(self.description.get("Type") or "UNKNOWN")

    @property
    def renewal_ineligible(self) -> bool:
        return (
            self.cert_type == "AMAZON_ISSUED"
            and self.status == "ISSUED"
            and self.in_use
            and self.description.get("RenewalEligibility") == "INELIGIBLE"
        )

    @property
    def target(self) -> str:
        return f"acm:{self.domain or '?'} ({self.arn.rsplit('/', 1)[-1][:13]})"

    def summary(self) -> dict[str, Any]:
        """JSON-safe facts for the result's details."""
        d = self.description
        out: dict[str, Any] = {
            "arn": self.arn,
            "domain": self.domain,
            "status": self.status,
            "type": self.cert_type,
            "in_use": self.in_use,
            "in_use_by": list(d.get("InUseBy") or [])[:10],
            "renewal_eligibility": d.get("RenewalEligibility"),
            "key_algorithm": d.get("KeyAlgorithm"),
            "signature_algorithm": d.get("SignatureAlgorithm"),
            "sans": list(d.get("SubjectAlternativeNames") or [])[:20],
        }
        for key in ("NotBefore", "NotAfter"):
            if d.get(key) is not None:
                out[key.lower().replace("notb", "not_b").replace("nota", "not_a")] = d[key].isoformat()
        return out


def list_arns(client: Any) -> list[str]:
    """Every certificate ARN in the client's region, all key types."""
    arns: list[str] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        kwargs: dict[str, Any] = {"Includes": {"keyTypes": KEY_TYPES}, "MaxItems": 1000}
        if token:
            kwargs["NextToken"] = token
        page = client.list_certificates(**kwargs)
        arns += [item["CertificateArn"] for item in page.get("CertificateSummaryList", [])]
        token = page.get("NextToken")
        if not token:
            break
    return arns


def read_certificates(client: Any, *, arns: list[str] | None = None) -> list[AcmCertificate]:
    """Describe each certificate (all of the region when ``arns`` is empty) and fetch its PEM when issued."""
    found: list[AcmCertificate] = []
    for arn in arns or list_arns(client):
        description = client.describe_certificate(CertificateArn=arn)["Certificate"]
        item = AcmCertificate(arn=arn, description=description)
        if item.status == "ISSUED":  # only an issued certificate is judged on its PEM (see judge_status)
            try:
                item.pem = client.get_certificate(CertificateArn=arn).get("Certificate")
            except Exception:  # the description alone still carries the dates
                item.pem = None
        found.append(item)
    return found


#: What each ACM Status other than ISSUED means (docs/certificates.md, "ACM status"); others: ACM_NOT_USABLE.
NOT_USABLE = {
    "INACTIVE": "ACM marks it inactive: it cannot be used",
    "FAILED": "its request failed and will never be issued",
    "VALIDATION_TIMED_OUT": "its domain validation timed out (72 h): it will never be issued",
    "PENDING_VALIDATION": "it is still waiting for domain validation: nothing has been issued",
}


def judge_status(builder: ResultBuilder, item: AcmCertificate) -> Literal["issued", "judged", "skipped"]:
    """Judge ACM's own Status first; ``issued`` means the dates and key are judged next.

    ``judged``: the status decided and its finding is on ``builder``; ``skipped``:
    a pending request nothing uses, with nothing to check yet.
    """
    status = item.status
    if status == "ISSUED":
        return "issued"
    d = item.description
    in_use_by = len(d.get("InUseBy") or [])
    unused = None if item.in_use else "not in use by any AWS resource"
    note = f" ({unused})" if unused else f" (used by {in_use_by} resource(s))"
    low = Severity.LOW if unused else None
    detail: dict[str, Any] = {
        "arn": item.arn,
        "status": status,
        "type": item.cert_type,
        "in_use": item.in_use,
    }
    not_after = d.get("NotAfter")
    if isinstance(not_after, datetime):
        detail["not_after"] = not_after.isoformat()
    if status == "PENDING_VALIDATION" and not item.in_use:
        with builder.phase("judge") as ph:
            ph.skip(f"status {status}: {NOT_USABLE[status]}")
        return "skipped"
    with builder.phase("judge") as ph:
        builder.checked()  # the status itself was read and judged
        if status == "REVOKED":
            reason = str(d.get("RevocationReason") or "UNSPECIFIED")
            revoked_at = d.get("RevokedAt")
            detail.update(
                revocation_reason=reason,
                revoked_at=revoked_at.isoformat() if isinstance(revoked_at, datetime) else None,
            )
            builder.find(
                "CERT_REVOKED",
                f"{item.domain}: ACM certificate is REVOKED ({reason}){note}",
                subject=item.target,
                detail=detail,
                severity=low,
            )
        elif status == "EXPIRED":
            when = f" on {not_after:%Y-%m-%d %H:%M} UTC" if isinstance(not_after, datetime) else ""
            builder.find(
                "CERT_EXPIRED",
                f"{item.domain}: ACM reports the certificate EXPIRED{when}{note}",
                subject=item.target,
                detail=detail,
                severity=low,
            )
        else:
            why = NOT_USABLE.get(
                status, "drillbook does not know this status and cannot judge the certificate"
            )
            failure = d.get("FailureReason")
            if failure:
                detail["failure_reason"] = str(failure)
            builder.find(
                "ACM_NOT_USABLE",
                f"{item.domain}: ACM status {status}: {why}{f' ({failure})' if failure else ''}{note}",
                subject=item.target,
                detail=detail,
                severity=low,
            )
        ph.detail = f"status {status}"
    return "judged"
