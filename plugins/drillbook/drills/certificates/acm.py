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
- expiry of a certificate that nothing uses is reported at ``low`` severity:
  it cannot cause an outage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        if item.status in {"ISSUED", "EXPIRED", "INACTIVE"}:
            try:
                item.pem = client.get_certificate(CertificateArn=arn).get("Certificate")
            except Exception:  # the description alone still carries the dates
                item.pem = None
        found.append(item)
    return found
