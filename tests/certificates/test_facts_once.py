"""Facts read once per certificate (issue 14) say what the per-field lookups said.

``inspect_certificate`` reads the extensions once into a map, hashes the DER with
hashlib and caches each key class's kind; these tests compare every such fact with
the direct cryptography lookup it replaced, so a shortcut that drifts turns red.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from drillbook.drills.certificates import lints, x509facts
from drillbook.drills.certificates.judge import name_matches
from tests.certificates.pki import ec_key, make_ca, make_leaf, rsa_key


def _direct_has(cert: x509.Certificate, cls: type) -> bool:
    try:
        cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return False
    return True


@pytest.fixture(scope="module")
def certs(pki) -> dict[str, x509.Certificate]:
    return {
        "leaf": make_leaf(pki.inter).cert,
        "bare_leaf": make_leaf(pki.inter, aki=False, eku=False, san=False).cert,
        "ec_leaf": make_leaf(pki.inter, key=ec_key()).cert,
        "ed25519_leaf": make_leaf(pki.inter, key=ed25519.Ed25519PrivateKey.generate()).cert,
        "small_rsa": make_leaf(pki.inter, key=rsa_key(1024)).cert,
        "intermediate": pki.inter.cert,
        "root": pki.root.cert,
        "ski_less_ca": make_ca("no ski", issuer=pki.root, ski=False).cert,
    }


def test_facts_from_the_extension_map_match_direct_lookups(certs):
    for name, cert in certs.items():
        facts = x509facts.inspect_certificate(cert)
        assert facts.fingerprint_sha256 == x509facts.fingerprint(cert), name
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            direct = [
                *sans.get_values_for_type(x509.DNSName),
                *map(str, sans.get_values_for_type(x509.IPAddress)),
            ]
        except x509.ExtensionNotFound:
            direct = []
        assert facts.sans == direct, name
        try:
            ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        assert facts.is_ca is ca, name
        for cls in (
            x509.AuthorityKeyIdentifier,
            x509.SubjectKeyIdentifier,
            x509.ExtendedKeyUsage,
            x509.SubjectAlternativeName,
        ):
            assert lints._has(cert, cls, facts) is _direct_has(cert, cls), (name, cls.__name__)
        assert "extension_types" not in facts.to_detail()  # evidence stays the scalar facts


def test_key_kinds_and_sizes_are_read_per_key_not_per_class_cache(certs):
    got = {n: x509facts._key_facts(c) for n, c in certs.items()}
    assert got["leaf"] == ("RSA", 2048) and got["small_rsa"] == ("RSA", 1024)
    assert got["ec_leaf"] == ("EC", 256) and got["ed25519_leaf"] == ("Ed25519", 256)
    # the class cache is filled; asking again (now from the cache) gives the same answers
    assert {n: x509facts._key_facts(c) for n, c in certs.items()} == got


def test_unreadable_extensions_mean_no_sans_and_not_a_ca(certs, monkeypatch):
    """As before the map: a certificate whose extensions cannot be read has no SANs and is no CA."""
    monkeypatch.setattr(x509facts, "_extensions", lambda cert: None)
    facts = x509facts.inspect_certificate(certs["leaf"])
    assert facts.sans == [] and facts.is_ca is False and facts.extension_types is None


@pytest.mark.parametrize(
    ("name", "sans", "ok"),
    [
        ("127.0.0.1", ["localhost", "127.0.0.1"], True),
        ("127.0.0.2", ["localhost", "127.0.0.1"], False),
        ("::1", ["0:0:0:0:0:0:0:1"], True),
        ("localhost", ["127.0.0.1"], False),
        ("127.0.0.1", ["127.0.0.1.example"], False),
    ],
)
def test_ip_names_match_by_address_twice_in_a_row(name, sans, ok):
    # the second call answers from the parse cache
    assert name_matches(name, sans) is ok
    assert name_matches(name, sans) is ok
