"""Trust decisions match real clients: OpenSSL's verdict, checked against `openssl verify` itself (issue 10 items 3, 4).

A chain OpenSSL accepts is never CHAIN_UNTRUSTED (profile objections are low/medium lints);
a chain it refuses always is. A trust anchor is judged by its validity and key, not its
self-signature's hash.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from drillbook.drills.certificates import check_endpoints
from drillbook.drills.certificates.catalogue import CertificatesDrill, EndpointSpec
from drillbook.drills.certificates.verify import trust_store, verify_chain
from drillbook.result import Severity, Verdict
from tests.certificates.pki import DAY, Issued, make_ca, make_leaf, now, sha1_root

TIMEOUT = 3.0


def _pem(*certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _issued_under_another_spelling(root: Issued) -> Issued:
    """A leaf whose issuer field spells the root's name differently (UTF8String, other case): same name to OpenSSL."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.name import _ASN1Type
    from cryptography.x509.oid import NameOID

    from tests.certificates.pki import rsa_key

    issuer = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "PRINTABLE ROOT", _type=_ASN1Type.UTF8String)]
    )
    key = rsa_key()
    t = now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - DAY)
        .not_valid_after(t + 90 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(root.key, hashes.SHA256())
    )  # type: ignore[arg-type]
    return Issued(cert=cert, key=key, chain=[root.cert])


def _printable_root() -> Issued:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.name import _ASN1Type
    from cryptography.x509.oid import NameOID

    from tests.certificates.pki import rsa_key

    key = rsa_key()
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "printable root", _type=_ASN1Type.PrintableString)]
    )
    t = now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - DAY)
        .not_valid_after(t + 900 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert=cert, key=key, chain=[])


def openssl_verify(tmp: Path, leaf: Issued, sent: list, anchors: list) -> bool:
    """What the openssl CLI says, with the ssl_server purpose a TLS client uses."""
    (tmp / "leaf.pem").write_bytes(leaf.pem)
    (tmp / "anchors.pem").write_bytes(_pem(*anchors))
    cmd = [
        "openssl",
        "verify",
        "-purpose",
        "sslserver",
        "-no-CApath",
        "-no-CAstore",
        "-CAfile",
        str(tmp / "anchors.pem"),
    ]
    if sent:
        (tmp / "sent.pem").write_bytes(_pem(*sent))
        cmd += ["-untrusted", str(tmp / "sent.pem")]
    done = subprocess.run([*cmd, str(tmp / "leaf.pem")], capture_output=True, text=True, timeout=30)
    return done.returncode == 0


@pytest.fixture(scope="module")
def chains(tmp_path_factory) -> dict[str, tuple[Issued, list, list, bool]]:
    """{case: (leaf, certificates the server sends, trust anchors, trusted?)}; the flag is what clients decide."""
    t = now()
    root = make_ca("trust root")
    inter = make_ca("trust intermediate", issuer=root)
    other_root = make_ca("unknown root")
    other_inter = make_ca("unknown intermediate", issuer=other_root)
    impostor = make_ca("trust intermediate", issuer=root)  # same name, another key
    expired_inter = make_ca(
        "expired intermediate", issuer=root, not_before=t - 400 * DAY, not_after=t - 10 * DAY
    )
    nc_root = make_ca("constrained root", permitted_dns=["example.com"])
    nc_inter = make_ca("constrained intermediate", issuer=nc_root)
    printable_root = _printable_root()
    legacy_root = sha1_root()
    legacy_inter = make_ca("intermediate under a sha1 root", issuer=legacy_root)
    return {
        # a SHA-1 self-signature on the anchor is never checked, so it is neither untrusted nor weak
        "sha1_root_sent": (
            make_leaf(legacy_inter),
            [legacy_inter.cert, legacy_root.cert],
            [legacy_root.cert],
            True,
        ),
        # the anchor is found by OpenSSL's name comparison, not by the bytes of the issuer field
        "issuer_spelt_differently": (
            _issued_under_another_spelling(printable_root),
            [],
            [printable_root.cert],
            True,
        ),
        "aki_less_leaf": (make_leaf(inter, aki=False), [inter.cert], [root.cert], True),
        "aki_less_ski_less_intermediate": (
            make_leaf(make_ca("bare inter", issuer=root, ski=False), aki=False),
            None,
            [root.cert],
            True,
        ),
        "eku_less_leaf": (make_leaf(inter, eku=False), [inter.cert], [root.cert], True),
        "healthy": (make_leaf(inter), [inter.cert], [root.cert], True),
        "unknown_root": (make_leaf(other_inter), [other_inter.cert], [root.cert], False),
        "unknown_root_sent": (
            make_leaf(other_inter),
            [other_inter.cert, other_root.cert],
            [root.cert],
            False,
        ),
        "wrong_intermediate": (make_leaf(inter), [impostor.cert], [root.cert], False),
        "expired_intermediate": (
            make_leaf(expired_inter, not_before=t - 5 * DAY),
            [expired_inter.cert],
            [root.cert],
            False,
        ),
        "name_constraint_violated": (make_leaf(nc_inter), [nc_inter.cert], [nc_root.cert], False),
    }


def _sent(leaf: Issued, sent: list | None) -> list:
    return [c for c in leaf.chain if c.issuer != c.subject] if sent is None else sent


def test_verdicts_agree_with_openssl_verify(chains, tmp_path):
    for case, (leaf, sent, anchors, trusted) in chains.items():
        sent = _sent(leaf, sent)
        bundle = tmp_path / f"{case}-anchors.pem"
        bundle.write_bytes(_pem(*anchors))
        ours = verify_chain(
            [leaf.cert, *sent], store=trust_store(str(bundle), use_system=False), name="localhost"
        )
        theirs = openssl_verify(tmp_path, leaf, sent, anchors)
        assert (case, ours.trusted, theirs) == (case, trusted, trusted), ours.error


def test_the_strict_web_pki_profile_would_have_refused_the_aki_less_leaf(chains):
    """The case is the issue's: cryptography's default policy calls it untrusted, OpenSSL does not."""
    from cryptography.x509.verification import DNSName, PolicyBuilder, Store, VerificationError

    leaf, sent, anchors, _ = chains["aki_less_leaf"]
    verifier = PolicyBuilder().store(Store(anchors)).build_server_verifier(DNSName("localhost"))
    with pytest.raises(VerificationError, match=r"2\.5\.29\.35"):
        verifier.verify(leaf.cert, sent)


@pytest.fixture
def served(chains, serve, pki, tmp_path):
    """Every case served on loopback with its anchors as the endpoint's CA bundle: {case: EndpointSpec}."""
    specs = {}
    for case, (leaf, sent, anchors, _) in chains.items():
        sent = _sent(leaf, sent)
        bundle = tmp_path / f"{case}-bundle.pem"
        bundle.write_bytes(_pem(*anchors))
        served_leaf = Issued(cert=leaf.cert, key=leaf.key, chain=sent)
        server = serve(served_leaf)
        specs[case] = EndpointSpec(address=server.address, sni="localhost", ca_bundle=str(bundle))
    return specs


def test_endpoints_fail_only_when_clients_would_refuse(served, chains):
    names = list(served)
    drill = CertificatesDrill(
        name="certs_trust",
        kind="certificates",
        schedule="@daily",
        endpoints=[served[n] for n in names],
        timeout=TIMEOUT,
    )
    results = dict(zip(names, check_endpoints(drill), strict=True))
    got = {n: (r.verdict, sorted(r.codes())) for n, r in results.items()}
    assert got["aki_less_leaf"] == (Verdict.PASS, ["CERT_NO_AKI"])
    assert results["aki_less_leaf"].findings[0].severity is Severity.LOW
    assert got["aki_less_ski_less_intermediate"] == (Verdict.PASS, ["CERT_NO_AKI", "CERT_NO_SKI"])
    assert got["eku_less_leaf"] == (Verdict.PASS, ["CERT_NO_EKU"])
    assert got["healthy"] == (Verdict.PASS, [])
    assert got["sha1_root_sent"] == (Verdict.PASS, [])
    assert got["issuer_spelt_differently"] == (Verdict.PASS, ["CERT_NO_AKI", "CERT_NO_EKU"])
    for case in ("unknown_root", "unknown_root_sent", "wrong_intermediate", "name_constraint_violated"):
        assert got[case] == (Verdict.FAIL, ["CHAIN_UNTRUSTED"]), case
    # the expired intermediate is named twice on purpose: its own expiry, and the chain clients now refuse
    assert got["expired_intermediate"] == (Verdict.FAIL, ["CERT_EXPIRED", "CHAIN_UNTRUSTED"])
    untrusted = {
        n: next(f.message for f in results[n].findings if f.code == "CHAIN_UNTRUSTED")
        for n in ("expired_intermediate", "name_constraint_violated", "wrong_intermediate")
    }
    assert "certificate has expired" in untrusted["expired_intermediate"]
    assert "expired intermediate" in untrusted["expired_intermediate"]
    assert "permitted subtree violation" in untrusted["name_constraint_violated"]
    assert "X509_V_ERR" in untrusted["wrong_intermediate"]
