"""The OpenSSL binding under stress and odd shapes, each verdict checked against `openssl verify` itself.

A 12-deep chain (in order and shuffled), a cross-signed root whose old root
has expired (sent by the server, with an AKI-less leaf), a bundle of 1,000
roots, a private key inside the CA bundle, and eight threads verifying
against one shared store.
"""

from __future__ import annotations

import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from drillbook.drills.certificates.verify import trust_store, verify_chain
from tests.certificates.pki import DAY, Issued, make_ca, make_leaf, now
from tests.certificates.test_trust_decisions import _pem, openssl_verify


def _filler_roots(n: int) -> list[x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    roots = []
    for i in range(n):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"filler root {i}")])
        roots.append(
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(i + 1)
            .not_valid_before(now() - DAY)
            .not_valid_after(now() + 300 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
    return roots


def _cross_signed(new: Issued, old: Issued) -> x509.Certificate:
    """``new``'s name and key, signed by ``old`` (expired, like a retired root's cross-signature)."""
    return (
        x509.CertificateBuilder()
        .subject_name(new.cert.subject)
        .issuer_name(old.cert.subject)
        .public_key(new.key.public_key())
        .serial_number(77)
        .not_valid_before(now() - 3000 * DAY)
        .not_valid_after(now() - 11 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(old.key, hashes.SHA256())
    )  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stress")
    root = make_ca("stress root")
    chain, cur = [], root
    for i in range(12):
        cur = make_ca(f"stress inter {i}", issuer=cur)
        chain.append(cur.cert)
    deep_leaf = make_leaf(cur)
    old = make_ca("retired root", not_before=now() - 4000 * DAY, not_after=now() - 10 * DAY)
    new = make_ca("current root")
    new_inter = make_ca("current inter", issuer=new)
    cross = _cross_signed(new, old)
    other = make_ca("stranger root")
    other_inter = make_ca("stranger inter", issuer=other)
    inter = make_ca("bundle inter", issuer=root)

    def bundle(name: str, *certs, prefix: bytes = b"") -> str:
        path = tmp / f"{name}.pem"
        path.write_bytes(prefix + _pem(*certs))
        return str(path)

    key_pem = root.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    big = [*_filler_roots(1000), root.cert]
    akiless_cross_leaf = make_leaf(new_inter, aki=False)
    return {  # case: (leaf, sent, anchor bundle, anchors, trusted?)
        "deep_12": (deep_leaf, list(reversed(chain)), bundle("root", root.cert), [root.cert], True),
        "deep_12_shuffled": (deep_leaf, chain, bundle("root", root.cert), [root.cert], True),
        "cross_signed_expired_sent_aki_less": (
            akiless_cross_leaf,
            [new_inter.cert, cross],
            bundle("new", new.cert),
            [new.cert],
            True,
        ),
        "only_the_retired_root_trusted": (
            akiless_cross_leaf,
            [new_inter.cert, cross],
            bundle("old", old.cert),
            [old.cert],
            False,
        ),
        "bundle_of_1000_roots": (make_leaf(inter, aki=False), [inter.cert], bundle("big", *big), big, True),
        "bundle_of_1000_roots_untrusted": (
            make_leaf(other_inter),
            [other_inter.cert],
            bundle("big", *big),
            big,
            False,
        ),
        "private_key_in_the_bundle": (
            make_leaf(inter),
            [inter.cert],
            bundle("withkey", root.cert, prefix=key_pem),
            [root.cert],
            True,
        ),
    }


def test_verdicts_agree_with_openssl_verify(cases, tmp_path):
    for case, (leaf, sent, bundle, anchors, trusted) in cases.items():
        ours = verify_chain([leaf.cert, *sent], store=trust_store(bundle, use_system=False), name="localhost")
        theirs = openssl_verify(tmp_path, leaf, sent, anchors)
        assert (case, ours.trusted, theirs) == (case, trusted, trusted), ours.error


def test_eight_threads_share_one_store_and_agree(cases):
    leaf, sent, bundle, _, _ = cases["bundle_of_1000_roots"]
    bad_leaf, bad_sent, _, _, _ = cases["bundle_of_1000_roots_untrusted"]
    store = trust_store(bundle, use_system=False)
    wrong: list[str] = []

    def work() -> None:
        for _ in range(150):
            if not verify_chain([leaf.cert, *sent], store=store, name="localhost").trusted:
                wrong.append("trusted chain refused")
            if verify_chain([bad_leaf.cert, *bad_sent], store=store, name="localhost").trusted:
                wrong.append("untrusted chain accepted")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not wrong, wrong[:3]
