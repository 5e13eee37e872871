"""Certificate files, directories and bundles; and the pure rules (thresholds, name matching)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from drillbook.drills.certificates import check_files
from drillbook.drills.certificates.catalogue import CertificatesDrill, Thresholds
from drillbook.drills.certificates.judge import effective_thresholds, name_matches
from drillbook.result import Severity, Verdict
from tests.certificates.pki import DAY, ec_key, make_leaf, now, rsa_key

D = 86400.0


def files_drill(paths: list[str]) -> CertificatesDrill:
    return CertificatesDrill(name="certs_files", kind="certificates", schedule="@daily", files=paths)


def test_files_directory_bundle_and_problems(pki, tmp_path):
    t = now()
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "..data").mkdir()  # Kubernetes' hidden link directory is not walked
    make_leaf(pki.inter).write(secret, "tls")  # tls.pem (leaf + intermediate) and tls.key
    make_leaf(pki.inter, not_before=t - 100 * DAY, not_after=t - DAY).write(secret, "old", with_chain=False)
    make_leaf(pki.inter, hash_alg="sha1").write(secret, "sha1", with_chain=False)
    make_leaf(pki.inter, key=rsa_key(1024)).write(secret, "small", with_chain=False)
    make_leaf(pki.inter, key=ec_key()).write(secret, "ec", with_chain=False)
    (secret / "README.txt").write_text("not a certificate")
    (secret / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    single = tmp_path / "expiring.crt"
    single.write_bytes(make_leaf(pki.inter, not_before=t - 360 * DAY, not_after=t + 5 * DAY).pem)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()

    results = check_files(
        files_drill([str(secret), str(single), str(tmp_path / "missing.pem"), str(empty_dir)])
    )
    got = {r.target.replace(str(tmp_path) + "/", ""): sorted(r.codes()) for r in results}
    assert got == {
        "secret/tls.pem#0": [],
        "secret/tls.pem#1": [],  # the intermediate of the bundle, judged on its own
        "secret/old.pem": ["CERT_EXPIRED"],
        "secret/sha1.pem": ["WEAK_SIGNATURE"],
        "secret/small.pem": ["WEAK_KEY"],
        "secret/ec.pem": [],
        "secret/broken.pem": ["CERT_UNREADABLE"],
        "expiring.crt": ["CERT_EXPIRING"],
        "missing.pem": ["CERT_UNREADABLE"],
        "empty": ["CERT_UNREADABLE"],
    }
    by = {r.target.replace(str(tmp_path) + "/", ""): r for r in results}
    assert by["secret/tls.pem#0"].verdict is Verdict.PASS
    assert by["missing.pem"].verdict is Verdict.ERROR
    assert by["expiring.crt"].findings[0].severity is Severity.CRITICAL
    assert by["secret/ec.pem"].details["certificates"][0]["key_type"] == "EC"


def test_der_file_is_read(pki, tmp_path):
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / "leaf.der"
    path.write_bytes(make_leaf(pki.inter).cert.public_bytes(serialization.Encoding.DER))
    [result] = check_files(files_drill([str(path)]))
    assert result.codes() == [] and result.verdict is Verdict.PASS


def test_relative_paths_resolve_from_the_catalogue(pki, tmp_path):
    make_leaf(pki.inter).write(tmp_path, "rel", with_chain=False)
    [result] = check_files(files_drill(["rel.pem"]), base_dir=tmp_path)
    assert result.verdict is Verdict.PASS


@pytest.mark.parametrize(
    ("lifetime_days", "expected_warn", "expected_critical"),
    [
        (90, 30, 7),  # a Let's Encrypt certificate: the catalogue thresholds as they are
        (398, 30, 7),  # a long certificate: never warned about for months
        (47, 47 / 3, 7 * (47 / 3) / 30),  # the 2029 public lifetime: scaled to a third
        (6, 2, 7 * 2 / 30),  # a short-lived 6-day certificate: not permanently red
    ],
)
def test_effective_thresholds_scale_with_the_lifetime(lifetime_days, expected_warn, expected_critical):
    warn, critical = effective_thresholds(lifetime_days * D, Thresholds())
    assert warn / D == pytest.approx(expected_warn)
    assert critical / D == pytest.approx(expected_critical)


def test_a_six_day_certificate_is_judged_sensibly(pki, tmp_path):
    t = now()
    fresh = make_leaf(pki.inter, not_before=t - DAY, not_after=t + 5 * DAY)  # 6-day lifetime, 5 days left
    late = make_leaf(pki.inter, not_before=t - 5.6 * DAY, not_after=t + 0.4 * DAY)  # 9.6 hours left
    fresh.write(tmp_path, "fresh", with_chain=False)
    late.write(tmp_path, "late", with_chain=False)
    a, b = check_files(files_drill([str(tmp_path / "fresh.pem"), str(tmp_path / "late.pem")]))
    assert a.codes() == []
    assert b.codes() == ["CERT_EXPIRING"] and b.findings[0].severity is Severity.CRITICAL


def test_lifetime_fraction_is_configurable():
    th = SimpleNamespace(warn=30 * D, critical=7 * D, lifetime_fraction=0.5)
    assert effective_thresholds(30 * D, th) == (15 * D, 3.5 * D)


@pytest.mark.parametrize(
    ("name", "sans", "ok"),
    [
        ("api.example.com", ["api.example.com"], True),
        ("API.Example.com.", ["api.example.com"], True),
        ("a.example.com", ["*.example.com"], True),
        ("a.b.example.com", ["*.example.com"], False),
        ("example.com", ["*.example.com"], False),
        ("other.example", ["api.example.com"], False),
        ("127.0.0.1", ["localhost", "127.0.0.1"], True),
        ("127.0.0.2", ["127.0.0.1"], False),
        ("::1", ["0:0:0:0:0:0:0:1"], True),
        ("localhost", [], False),
    ],
)
def test_name_matching(name, sans, ok):
    assert name_matches(name, sans) is ok


def test_summary_names_crashed_groups_and_the_soonest_expiry(pki, tmp_path):
    from drillbook.drills.certificates import summarize
    from drillbook.drills.certificates.dag import collect

    t = now()
    make_leaf(pki.inter, not_before=t - 340 * DAY, not_after=t + 25 * DAY).write(
        tmp_path, "a", with_chain=False
    )
    make_leaf(pki.inter).write(tmp_path, "b", with_chain=False)
    drill = files_drill([str(tmp_path)])
    results = check_files(drill)
    from drillbook.drills.certificates import compact

    rows, missing = collect(
        {
            "files": [compact(r) for r in results],
            "acm": None,
            "endpoints": [
                [
                    {
                        "target": "x:1",
                        "verdict": "PASS",
                        "source": "endpoint",
                        "days_left": 90.0,
                        "not_after": "2027-01-01",
                        "findings": [],
                    }
                ],
                None,
            ],
        },
        expected_endpoints=2,
    )
    assert missing == ["acm", "endpoints (1 of 2 without a result)"]
    summary = summarize(rows, drill=drill, missing_groups=missing)
    assert summary.verdict is Verdict.ERROR and summary.codes().count("DRILL_CRASHED") == 2
    assert "CERT_EXPIRING" in summary.codes()
    assert "soonest" in summary.target and "a.pem" in summary.target
    assert [p.name for p in summary.phases] == ["endpoints", "files"]
    assert summary.details["soonest"][0]["days_left"] < 26
    clean = summarize([r for r in results if not r.findings], drill=drill)
    assert clean.verdict is Verdict.PASS and clean.codes() == []


def test_catalogue_rejects_what_cannot_work(tmp_path):
    from drillbook.catalogue import load_catalogue
    from drillbook.errors import CatalogueError

    path = tmp_path / "drills.yaml"
    path.write_text(
        "version: 1\ndrills:\n"
        "  - name: bad\n    kind: certificates\n    schedule: '@daily'\n    timeout: 0s\n"
        "    endpoints:\n      - address: no-port\n      - {address: 'a:443', starttls: ftp, sni_name: x}\n"
        "  - name: empty\n    kind: certificates\n    schedule: '@daily'\n"
    )
    with pytest.raises(CatalogueError) as exc:
        load_catalogue(path)
    text = "\n".join(exc.value.problems)
    assert "expected 'host:port'" in text and "no-port" in text
    assert "starttls" in text and "sni_name" in text and "unknown key" in text
    assert "at least one of endpoints, files or acm" in text


def test_zero_timeout_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="timeout must be longer than 0s"):
        CertificatesDrill(name="t", kind="certificates", schedule="@daily", files=["x"], timeout="0s")
