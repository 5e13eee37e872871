"""A CA directory like /etc/ssl/certs, profile lints on files, and one result per certificate (issue 10 item 4)."""

from __future__ import annotations

from pathlib import Path

from drillbook.drills.certificates import check_files
from drillbook.drills.certificates.catalogue import CertificatesDrill
from drillbook.result import Severity, Verdict
from tests.certificates.pki import DAY, make_ca, make_leaf, now, sha1_root


def files_drill(*paths: Path | str) -> CertificatesDrill:
    return CertificatesDrill(
        name="certs_files", kind="certificates", schedule="@daily", files=[str(p) for p in paths]
    )


def openssl_root(directory: Path, name: str, *, bits: int = 2048) -> Path:
    """An in-date self-signed root signed with SHA-1, written as ``name.pem``."""
    path = directory / f"{name}.pem"
    path.write_bytes(sha1_root(name, bits=bits).pem)
    return path


def test_a_ca_directory_judges_anchors_by_validity_and_key_once_each(tmp_path):
    t = now()
    certs = tmp_path / "certs"
    certs.mkdir()
    sha1_root = openssl_root(certs, "legacy sha1 root")
    weak_root = openssl_root(certs, "weak sha1 root", bits=1024)
    expired = make_ca("expired root", not_before=t - 800 * DAY, not_after=t - 10 * DAY)
    good = make_ca("good root")
    (certs / "expired_root.pem").write_bytes(expired.pem)
    (certs / "good_root.pem").write_bytes(good.pem)
    (certs / "0a1b2c3d.0").symlink_to("good_root.pem")  # c_rehash's link: not a certificate name, skipped
    (certs / "alias.pem").symlink_to("good_root.pem")  # a second path to the same file
    # the distribution bundle holds every root again, and one of them twice
    (certs / "ca-certificates.crt").write_bytes(
        sha1_root.read_bytes() + weak_root.read_bytes() + expired.pem + good.pem + good.pem
    )

    results = check_files(files_drill(certs, certs / "good_root.pem"))
    by_name = {r.details["certificates"][0]["subject"].split("CN=")[1].split(",")[0]: r for r in results}
    assert sorted(by_name) == ["expired root", "good root", "legacy sha1 root", "weak sha1 root"]
    assert len(results) == 4
    got = {n: (r.verdict, r.codes()) for n, r in by_name.items()}
    assert got == {
        "legacy sha1 root": (Verdict.PASS, []),  # no WEAK_SIGNATURE: nobody checks an anchor's self-signature
        "weak sha1 root": (Verdict.FAIL, ["WEAK_KEY"]),  # its key is what clients do check
        "expired root": (Verdict.FAIL, ["CERT_EXPIRED"]),
        "good root": (Verdict.PASS, []),
    }
    good_places = by_name["good root"].details["found_at"]
    assert sorted(good_places) == sorted(
        [
            str(certs / "alias.pem"),
            str(certs / "good_root.pem"),
            f"{certs / 'ca-certificates.crt'}#3",
            f"{certs / 'ca-certificates.crt'}#4",
            str(certs / "good_root.pem"),
        ]
    )
    assert by_name["good root"].details["found_at_count"] == 5
    # a certificate's own file names it, not its index in the bundle
    assert not by_name["expired root"].target.endswith(".crt#2")
    assert "also at 1 other place(s)" in by_name["expired root"].findings[0].subject
    assert by_name["legacy sha1 root"].details["certificates"][0]["self_signed"] is True


def test_a_sha1_signed_certificate_that_is_not_an_anchor_is_still_weak(pki, tmp_path):
    (tmp_path / "leaf.pem").write_bytes(make_leaf(pki.inter, hash_alg="sha1").pem)
    [result] = check_files(files_drill(tmp_path / "leaf.pem"))
    assert result.codes() == ["WEAK_SIGNATURE"]


def test_profile_lints_are_low_or_medium_and_never_fail(pki, tmp_path):
    t = now()
    bare_inter = make_ca("intermediate without SKI", issuer=pki.root, ski=False)
    cases = {
        "healthy": (make_leaf(pki.inter), []),
        "no_aki": (make_leaf(pki.inter, aki=False), ["CERT_NO_AKI"]),
        "no_eku": (make_leaf(pki.inter, eku=False), ["CERT_NO_EKU"]),
        "no_san": (make_leaf(pki.inter, san=False), ["CERT_NO_SAN"]),
        "too_long": (
            make_leaf(pki.inter, not_before=t - DAY, not_after=t + 500 * DAY),
            ["CERT_VALIDITY_TOO_LONG"],
        ),  # 501 d
        "exactly_398_days": (make_leaf(pki.inter, not_before=t - DAY, not_after=t + 397 * DAY), []),
        "ca_no_ski": (bare_inter, ["CERT_NO_SKI"]),
        "root_no_ski": (make_ca("root without SKI", ski=False), []),  # an anchor is not linted
        "self_signed_leaf": (make_leaf(None, eku=False), []),
    }
    for name, (issued, _) in cases.items():
        (tmp_path / f"{name}.pem").write_bytes(issued.pem)
    results = {Path(r.target).stem: r for r in check_files(files_drill(tmp_path))}
    assert {n: r.codes() for n, r in results.items()} == {n: codes for n, (_, codes) in cases.items()}
    for name, result in results.items():
        assert result.verdict is Verdict.PASS, name
        for finding in result.findings:
            assert finding.severity in (Severity.LOW, Severity.MEDIUM)
    assert results["no_san"].findings[0].severity is Severity.MEDIUM
    assert results["no_aki"].findings[0].severity is Severity.LOW
    assert results["too_long"].findings[0].severity is Severity.LOW
    assert "501 days" in results["too_long"].findings[0].message
