"""AWS Certificate Manager through moto's server on 127.0.0.1 (the ``boto`` fixture)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from drillbook.drills.certificates import check_acm
from drillbook.drills.certificates.catalogue import AcmSpec, CertificatesDrill
from drillbook.result import Severity, Verdict
from tests.certificates.pki import DAY, make_leaf, now


def acm_drill(arns: list[str] | None = None) -> CertificatesDrill:
    return CertificatesDrill(
        name="certs_acm",
        kind="certificates",
        schedule="@daily",
        acm=AcmSpec(region="us-east-1", certificate_arns=arns or []),
    )


def _import(acm, pki, **kw) -> str:
    leaf = make_leaf(pki.inter, names=[kw.pop("domain", "www.example.com")], **kw)
    return acm.import_certificate(
        Certificate=leaf.pem, PrivateKey=leaf.key_pem(), CertificateChain=pki.inter.pem
    )["CertificateArn"]


def _use(boto, arn: str, name: str) -> None:
    """Attach the certificate to a classic load balancer so ACM reports it in use."""
    boto("elb").create_load_balancer(
        LoadBalancerName=name,
        Listeners=[
            {
                "Protocol": "HTTPS",
                "LoadBalancerPort": 443,
                "InstanceProtocol": "HTTP",
                "InstancePort": 80,
                "SSLCertificateId": arn,
            }
        ],
        AvailabilityZones=["us-east-1a"],
    )


def test_acm_certificates_each_get_a_result(boto, pki, monkeypatch):
    import moto.settings

    acm = boto("acm")
    t = now()
    healthy = _import(acm, pki)
    expiring_in_use = _import(
        acm, pki, domain="pay.example.com", not_before=t - 362 * DAY, not_after=t + 3 * DAY
    )
    _use(boto, expiring_in_use, "pay")
    expiring_unused = _import(
        acm, pki, domain="old.example.com", not_before=t - 362 * DAY, not_after=t + 3 * DAY
    )
    # moto "validates" an Amazon-issued certificate once it is older than ACM_VALIDATION_WAIT seconds
    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 1)
    issued = acm.request_certificate(DomainName="app.example.com")["CertificateArn"]
    _use(boto, issued, "app")
    time.sleep(1.5)
    pending = acm.request_certificate(DomainName="pending.example.com")["CertificateArn"]

    client = boto("acm")
    results = {r.details["arn"]: r for r in check_acm(acm_drill(), client=client)}
    assert results[healthy].codes() == [] and results[healthy].verdict is Verdict.PASS
    assert results[healthy].details["certificates"][0]["key_bits"] == 2048
    assert results[expiring_in_use].codes() == ["CERT_EXPIRING"]
    assert results[expiring_in_use].findings[0].severity is Severity.CRITICAL
    assert results[expiring_in_use].verdict is Verdict.FAIL
    assert "re-import" in str(results[expiring_in_use].findings[0].detail["renewal"])
    # nothing uses it: still reported, but it cannot cause an outage
    assert results[expiring_unused].codes() == ["CERT_EXPIRING"]
    assert results[expiring_unused].findings[0].severity is Severity.LOW
    assert results[expiring_unused].verdict is Verdict.PASS
    assert results[issued].codes() == ["ACM_RENEWAL_INELIGIBLE"]
    assert results[issued].details["in_use"] is True
    assert results[pending].verdict is Verdict.SKIPPED


def test_listed_arns_only(boto, pki):
    acm = boto("acm")
    wanted = _import(acm, pki)
    _import(acm, pki, domain="other.example.com")
    results = check_acm(acm_drill([wanted]), client=boto("acm"))
    assert [r.details["arn"] for r in results] == [wanted]


def test_unreachable_acm_is_error(refused_address):
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "acm",
        region_name="us-east-1",
        endpoint_url=f"http://{refused_address}",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    [result] = check_acm(acm_drill(), client=client)
    assert result.codes() == ["ACM_UNAVAILABLE"] and result.verdict is Verdict.ERROR


@pytest.mark.parametrize("status", ["ISSUED"])
def test_drill_without_acm_returns_nothing(status):
    drill = CertificatesDrill(name="x", kind="certificates", schedule="@daily", files=["/nonexistent"])
    assert check_acm(drill, client=object()) == []


# --- ACM's own Status decides before the dates ------------------------------------------------------
# moto cannot revoke, fail or deactivate a certificate, so these answer as the ACM API does: canned
# DescribeCertificate replies (a stand-in for AWS, not for drillbook code). EXPIRED goes through moto.
ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0123456789ab-cdef"


class AcmAnswers:
    """The ACM API answers check_acm reads, for one certificate with a given Status."""

    def __init__(self, status: str, *, in_use: bool = True, **extra) -> None:
        self.status, self.in_use, self.extra = status, in_use, extra

    def list_certificates(self, **_kw):
        return {"CertificateSummaryList": [{"CertificateArn": ARN}]}

    def describe_certificate(self, CertificateArn):
        t = now()
        return {
            "Certificate": {
                "CertificateArn": CertificateArn,
                "DomainName": "api.example.com",
                "Status": self.status,
                "Type": "AMAZON_ISSUED",
                "InUseBy": ["arn:aws:elasticloadbalancing:lb/1"] if self.in_use else [],
                "NotBefore": t - 30 * DAY,
                "NotAfter": t + 300 * DAY,  # dates that alone would pass
                "KeyAlgorithm": "RSA_2048",
                "SignatureAlgorithm": "SHA256WITHRSA",
                **self.extra,
            }
        }

    def get_certificate(self, **_kw):
        raise AssertionError("the PEM is fetched only for ISSUED certificates")


def test_revoked_in_use_certificate_fails_with_its_reason():
    t = now()
    [result] = check_acm(
        acm_drill(), client=AcmAnswers("REVOKED", RevocationReason="KEY_COMPROMISE", RevokedAt=t - DAY)
    )
    assert result.codes() == ["CERT_REVOKED"]
    assert result.verdict is Verdict.FAIL
    f = result.findings[0]
    assert f.severity is Severity.CRITICAL
    assert f.detail["revocation_reason"] == "KEY_COMPROMISE" and f.detail["revoked_at"]
    assert "KEY_COMPROMISE" in f.message


def test_revoked_unused_certificate_is_reported_low():
    [result] = check_acm(
        acm_drill(), client=AcmAnswers("REVOKED", in_use=False, RevocationReason="SUPERSEDED")
    )
    assert result.codes() == ["CERT_REVOKED"]
    assert result.findings[0].severity is Severity.LOW
    assert result.verdict is Verdict.PASS  # nothing uses it: it cannot cause an outage


def test_status_expired_is_expired_whatever_the_dates_say():
    [result] = check_acm(acm_drill(), client=AcmAnswers("EXPIRED"))
    assert result.codes() == ["CERT_EXPIRED"]
    assert result.verdict is Verdict.FAIL


@pytest.mark.parametrize(
    ("status", "in_use", "severity", "verdict"),
    [
        ("INACTIVE", True, Severity.HIGH, Verdict.FAIL),
        ("INACTIVE", False, Severity.LOW, Verdict.PASS),
        ("FAILED", False, Severity.LOW, Verdict.PASS),
        ("VALIDATION_TIMED_OUT", False, Severity.LOW, Verdict.PASS),
        ("PENDING_VALIDATION", True, Severity.HIGH, Verdict.FAIL),
        ("SOME_FUTURE_STATUS", True, Severity.HIGH, Verdict.FAIL),  # unknown: never passes unjudged
    ],
)
def test_not_usable_statuses(status, in_use, severity, verdict):
    [result] = check_acm(acm_drill(), client=AcmAnswers(status, in_use=in_use, FailureReason="CAA_ERROR"))
    assert result.codes() == ["ACM_NOT_USABLE"]
    assert result.findings[0].severity is severity
    assert result.findings[0].detail["status"] == status
    assert result.findings[0].detail["failure_reason"] == "CAA_ERROR"
    assert result.verdict is verdict


def test_pending_validation_nothing_uses_is_skipped():
    [result] = check_acm(acm_drill(), client=AcmAnswers("PENDING_VALIDATION", in_use=False))
    assert result.codes() == [] and result.verdict is Verdict.SKIPPED


def test_expired_certificate_in_moto_is_one_cert_expired(boto, pki):
    acm = boto("acm")
    t = now()
    # moto refuses to import an expired certificate: import one that expires in a moment, use it, let it expire
    arn = _import(
        acm, pki, domain="gone.example.com", not_before=t - 100 * DAY, not_after=now() + timedelta(seconds=2)
    )
    _use(boto, arn, "gone")
    time.sleep(2.5)
    assert acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"] == "EXPIRED"
    [result] = check_acm(acm_drill([arn]), client=boto("acm"))
    assert result.codes() == ["CERT_EXPIRED"]
    assert result.findings[0].severity is Severity.CRITICAL and result.verdict is Verdict.FAIL
    assert result.findings[0].detail["status"] == "EXPIRED"
