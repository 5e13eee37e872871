"""A libcrypto that cannot be used (missing, or without a symbol we bind) makes the chain check ERROR, never a crash or a PASS."""

from __future__ import annotations

import ctypes.util

import pytest

from drillbook.drills.certificates import check_endpoints, openssl_chain
from drillbook.drills.certificates.catalogue import CertificatesDrill, EndpointSpec
from drillbook.result import Verdict
from tests.certificates.pki import make_ca, make_leaf
from tests.certificates.test_trust_decisions import _pem


@pytest.fixture
def broken_libcrypto(monkeypatch, request):
    """``_libcrypto_path`` answers what the parameter says; the cached library is dropped before and after."""
    openssl_chain._lib.cache_clear()
    monkeypatch.setattr(openssl_chain, "_libcrypto_path", lambda: request.param)
    yield request.param
    openssl_chain._lib.cache_clear()


@pytest.mark.parametrize(
    "broken_libcrypto",
    [ctypes.util.find_library("z") or "libz.so.1", None, "/nonexistent/libcrypto.so.3"],
    indirect=True,
    ids=["library-without-the-symbols", "not-found", "unloadable"],
)
def test_an_unusable_libcrypto_is_an_error_naming_openssl(broken_libcrypto, serve, tmp_path):
    root = make_ca("missing-lib root")
    leaf = make_leaf(make_ca("missing-lib inter", issuer=root))
    bundle = tmp_path / "root.pem"
    bundle.write_bytes(_pem(root.cert))
    server = serve(leaf)
    drill = CertificatesDrill(
        name="certs_nolib",
        kind="certificates",
        schedule="@daily",
        timeout=3.0,
        endpoints=[EndpointSpec(address=server.address, sni="localhost", ca_bundle=str(bundle))],
    )
    [result] = check_endpoints(drill)
    assert result.verdict is Verdict.ERROR, result.findings
    assert any("libcrypto" in f.message for f in result.findings), result.findings
    assert "CHAIN_UNTRUSTED" not in result.codes()


@pytest.mark.parametrize("broken_libcrypto", [None], indirect=True, ids=["not-found"])
def test_without_libcrypto_a_handshake_verified_chain_passes_and_a_refused_one_errors(
    broken_libcrypto, serve, tmp_path, monkeypatch
):
    """libssl's own verification in the handshake ran for the healthy chain; the refused one needs ctypes: ERROR."""
    from datetime import UTC, datetime, timedelta

    import drillbook.drills.certificates.endpoints as endpoints_module

    monkeypatch.setattr(endpoints_module, "HANDSHAKE_VERIFY_MIN", 0)
    root = make_ca("missing-lib fast root")
    inter = make_ca("missing-lib fast inter", issuer=root)
    t = datetime.now(UTC)
    healthy = serve(make_leaf(inter))
    expired = serve(make_leaf(inter, not_before=t - timedelta(days=30), not_after=t - timedelta(days=1)))
    bundle = tmp_path / "root.pem"
    bundle.write_bytes(_pem(root.cert))
    drill = CertificatesDrill(
        name="certs_nolib_fast",
        kind="certificates",
        schedule="@daily",
        timeout=3.0,
        endpoints=[
            EndpointSpec(address=s.address, sni="localhost", ca_bundle=str(bundle))
            for s in (healthy, expired)
        ],
    )
    good, bad = check_endpoints(drill)
    assert good.verdict is Verdict.PASS, good.findings
    assert bad.verdict is Verdict.ERROR and "DRILL_CRASHED" in bad.codes(), bad.findings
    assert any("libcrypto" in f.message for f in bad.findings), bad.findings
