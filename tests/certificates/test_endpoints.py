"""Every endpoint case against real TLS servers on 127.0.0.1: exactly the expected codes, the valid one none."""

from __future__ import annotations

import ssl
import time

import pytest

from drillbook.drills.certificates import check_endpoints, summarize
from drillbook.drills.certificates.catalogue import CertificatesDrill, EndpointSpec
from drillbook.result import Severity, Verdict
from tests.certificates.pki import DAY, make_ca, make_leaf, now, rsa_key

TIMEOUT = 1.5


def drill_of(endpoints: list[EndpointSpec], **kw) -> CertificatesDrill:
    return CertificatesDrill(
        name="certs_test",
        kind="certificates",
        schedule="@daily",
        endpoints=endpoints,
        timeout=kw.pop("timeout", TIMEOUT),
        **kw,
    )


@pytest.fixture
def lab(pki, serve, refused_address):
    """Start one server per case; returns {case: (EndpointSpec, expected codes)}."""
    t = now()
    other_root = make_ca("another private root")
    other_inter = make_ca("another private intermediate", issuer=other_root)
    short_inter = make_ca(
        "short-lived intermediate", issuer=pki.root, not_before=t - 10 * DAY, not_after=t + 100 * DAY
    )
    full_bundle = pki.bundle_of("root-and-intermediate", pki.root, pki.inter)
    other_bundle = pki.bundle_of("other", other_root)
    root = str(pki.bundle)

    def ep(server, expected, *, bundle=root, sni="localhost", starttls=None):
        return EndpointSpec(
            address=server if isinstance(server, str) else server.address,
            sni=sni,
            ca_bundle=str(bundle) if bundle else None,
            starttls=starttls,
        ), expected

    inter = pki.inter
    cases = {
        "valid": ep(serve(make_leaf(inter)), []),
        "expired": ep(serve(make_leaf(inter, not_before=t - 100 * DAY, not_after=t - DAY)), ["CERT_EXPIRED"]),
        "not_yet_valid": ep(
            serve(make_leaf(inter, not_before=t + 10 * DAY, not_after=t + 400 * DAY)), ["CERT_NOT_YET_VALID"]
        ),
        "expiring_3d": ep(
            serve(make_leaf(inter, not_before=t - 362 * DAY, not_after=t + 3 * DAY)), ["CERT_EXPIRING"]
        ),
        "expiring_20d": ep(
            serve(make_leaf(inter, not_before=t - 345 * DAY, not_after=t + 20 * DAY)), ["CERT_EXPIRING"]
        ),
        "expiring_200d": ep(serve(make_leaf(inter, not_before=t - 165 * DAY, not_after=t + 200 * DAY)), []),
        "self_signed": ep(serve(make_leaf(None)), ["CERT_SELF_SIGNED"]),
        "wrong_hostname": ep(serve(make_leaf(inter, names=["other.example"])), ["HOSTNAME_MISMATCH"]),
        "missing_intermediate": ep(
            serve(make_leaf(inter), with_chain=False), ["CHAIN_INCOMPLETE"], bundle=full_bundle
        ),
        "missing_intermediate_unknown": ep(serve(make_leaf(inter), with_chain=False), ["CHAIN_UNTRUSTED"]),
        "intermediate_expires_first": ep(
            serve(make_leaf(short_inter, not_after=t + 200 * DAY)), ["CHAIN_EXPIRES_FIRST"]
        ),
        "rsa_1024": ep(serve(make_leaf(inter, key=rsa_key(1024)), seclevel0=True), ["WEAK_KEY"]),
        "sha1": ep(serve(make_leaf(inter, hash_alg="sha1"), seclevel0=True), ["WEAK_SIGNATURE"]),
        "private_ca_without_bundle": ep(serve(make_leaf(other_inter)), ["CHAIN_UNTRUSTED"], bundle=None),
        "private_root_sent_untrusted": ep(
            serve(make_leaf(other_inter), with_root=True), ["CHAIN_UNTRUSTED"], bundle=None
        ),
        "private_ca_with_bundle": ep(serve(make_leaf(other_inter)), [], bundle=other_bundle),
        "tls_1_1_only": ep(serve(make_leaf(inter), max_tls=ssl.TLSVersion.TLSv1_1), ["TLS_OUTDATED"]),
        "refused": ep(refused_address, ["ENDPOINT_UNREACHABLE"]),
        "silent": ep(serve(None, mode="silent"), ["TLS_HANDSHAKE_FAILED"]),
        "smtp_starttls": ep(serve(make_leaf(inter), mode="smtp"), [], starttls="smtp"),
        "postgres_sslrequest": ep(serve(make_leaf(inter), mode="postgres"), [], starttls="postgres"),
        "ip_address_san": ep(serve(make_leaf(inter)), [], sni=None),
        "resolved_hostname": ep(
            "localhost:" + serve(make_leaf(inter)).address.rsplit(":", 1)[1], [], sni=None
        ),
        "plain_smtp_probed_as_tls": ep(serve(make_leaf(inter), mode="smtp"), ["TLS_HANDSHAKE_FAILED"]),
    }
    return cases


def test_every_case_yields_exactly_its_codes(lab):
    names = list(lab)
    drill = drill_of([lab[n][0] for n in names])
    started = time.monotonic()
    results = check_endpoints(drill)
    elapsed = time.monotonic() - started
    got = {n: sorted(r.codes()) for n, r in zip(names, results, strict=True)}
    want = {n: sorted(lab[n][1]) for n in names}
    assert got == want
    # the silent endpoint costs its own timeout and does not hold the others back
    assert elapsed < TIMEOUT + 2.0, elapsed
    by_name = dict(zip(names, results, strict=True))
    assert by_name["valid"].verdict is Verdict.PASS
    assert by_name["valid"].measurements.counts["checks_run"] > 5
    assert by_name["refused"].verdict is Verdict.ERROR
    assert by_name["silent"].verdict is Verdict.ERROR
    assert by_name["silent"].phases[0].seconds >= TIMEOUT - 0.1
    assert by_name["valid"].phases[0].seconds < 1.0
    expiring = {n: by_name[n].findings[0].severity for n in ("expiring_3d", "expiring_20d")}
    assert expiring == {"expiring_3d": Severity.CRITICAL, "expiring_20d": Severity.MEDIUM}
    assert by_name["expiring_3d"].verdict is Verdict.FAIL
    assert by_name["expiring_20d"].verdict is Verdict.PASS  # a warning, not yet a failure
    assert "which is not in the trust store" in by_name["private_root_sent_untrusted"].findings[0].message
    assert (
        "neither sent by the server nor in the trust store"
        in by_name["private_ca_without_bundle"].findings[0].message
    )
    assert (
        "neither sent by the server nor in the trust store"
        in by_name["missing_intermediate_unknown"].findings[0].message
    )
    assert "drillbook test intermediate" in by_name["missing_intermediate"].findings[0].message
    # summary: one for the whole drill, listing every failure and the soonest expiries
    summary = summarize(results, drill=drill)
    assert summary.verdict is Verdict.ERROR
    failing = {f["target"].split(" ")[0] for f in summary.details["failures"]}
    assert by_name["refused"].target.split(" ")[0] in failing
    soonest = summary.details["soonest"]
    assert soonest[0]["days_left"] < 0  # the expired one first


def test_result_records_the_certificate_facts(pki, serve):
    server = serve(make_leaf(pki.inter))
    [result] = check_endpoints(
        drill_of([EndpointSpec(address=server.address, sni="localhost", ca_bundle=str(pki.bundle))])
    )
    leaf = result.details["certificates"][0]
    for key in (
        "subject",
        "issuer",
        "sans",
        "serial",
        "not_before",
        "not_after",
        "days_left",
        "key_type",
        "key_bits",
        "signature_algorithm",
        "fingerprint_sha256",
    ):
        assert leaf[key] not in (None, ""), key
    assert leaf["key_type"] == "RSA" and leaf["key_bits"] == 2048
    assert leaf["sans"] == ["localhost", "127.0.0.1"]
    assert result.details["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert len(result.details["certificates"]) == 2  # leaf + intermediate, as sent
    assert result.details["trusted"] is True


def test_per_endpoint_thresholds_override_the_drill(pki, serve):
    from drillbook.drills.certificates.catalogue import Thresholds

    t = now()
    server = serve(make_leaf(pki.inter, not_before=t - 300 * DAY, not_after=t + 45 * DAY))
    strict = EndpointSpec(
        address=server.address,
        sni="localhost",
        ca_bundle=str(pki.bundle),
        thresholds=Thresholds(warn="60d", critical="50d"),
    )
    lenient = EndpointSpec(address=server.address, sni="localhost", ca_bundle=str(pki.bundle))
    a, b = check_endpoints(drill_of([strict, lenient]))
    assert [f.severity for f in a.findings] == [Severity.CRITICAL] and a.codes() == ["CERT_EXPIRING"]
    assert b.codes() == []


def test_concurrency_bound_of_one_still_finishes(pki, serve):
    servers = [serve(make_leaf(pki.inter)) for _ in range(3)]
    specs = [EndpointSpec(address=s.address, sni="localhost", ca_bundle=str(pki.bundle)) for s in servers]
    results = check_endpoints(drill_of(specs, concurrency=1))
    assert [r.verdict for r in results] == [Verdict.PASS] * 3


def test_missing_ca_bundle_file_is_config_invalid(pki, serve, tmp_path):
    server = serve(make_leaf(pki.inter))
    spec = EndpointSpec(address=server.address, sni="localhost", ca_bundle=str(tmp_path / "nope.pem"))
    [result] = check_endpoints(drill_of([spec]))
    assert result.codes() == ["CONFIG_INVALID"] and result.verdict is Verdict.ERROR
