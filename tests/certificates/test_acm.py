"""AWS Certificate Manager through moto's server on 127.0.0.1 (the ``boto`` fixture)."""

from __future__ import annotations

import time

import pytest

from drillbook.catalogue.certificates import AcmSpec, CertificatesDrill
from drillbook.drills.certificates import check_acm
from drillbook.result import Severity, Verdict
from tests.certificates.pki import DAY, make_leaf, now


def acm_drill(arns: list[str] | None = None) -> CertificatesDrill:
    return CertificatesDrill(name="certs_acm", kind="certificates", schedule="@daily",
                             acm=AcmSpec(region="us-east-1", certificate_arns=arns or []))


def _import(acm, pki, **kw) -> str:
    leaf = make_leaf(pki.inter, names=[kw.pop("domain", "www.example.com")], **kw)
    return acm.import_certificate(Certificate=leaf.pem, PrivateKey=leaf.key_pem(), CertificateChain=pki.inter.pem)["CertificateArn"]


def _use(boto, arn: str, name: str) -> None:
    """Attach the certificate to a classic load balancer so ACM reports it in use."""
    boto("elb").create_load_balancer(
        LoadBalancerName=name,
        Listeners=[{"Protocol": "HTTPS", "LoadBalancerPort": 443, "InstanceProtocol": "HTTP", "InstancePort": 80,
                    "SSLCertificateId": arn}],
        AvailabilityZones=["us-east-1a"],
    )


def test_acm_certificates_each_get_a_result(boto, pki, monkeypatch):
    import moto.settings

    acm = boto("acm")
    t = now()
    healthy = _import(acm, pki)
    expiring_in_use = _import(acm, pki, domain="pay.example.com", not_before=t - 362 * DAY, not_after=t + 3 * DAY)
    _use(boto, expiring_in_use, "pay")
    expiring_unused = _import(acm, pki, domain="old.example.com", not_before=t - 362 * DAY, not_after=t + 3 * DAY)
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

    client = boto3.client("acm", region_name="us-east-1", endpoint_url=f"http://{refused_address}",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1))
    [result] = check_acm(acm_drill(), client=client)
    assert result.codes() == ["ACM_UNAVAILABLE"] and result.verdict is Verdict.ERROR


@pytest.mark.parametrize("status", ["ISSUED"])
def test_drill_without_acm_returns_nothing(status):
    drill = CertificatesDrill(name="x", kind="certificates", schedule="@daily", files=["/nonexistent"])
    assert check_acm(drill, client=object()) == []
