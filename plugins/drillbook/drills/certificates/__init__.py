"""The certificates drill: TLS endpoints, certificate files and AWS ACM, one result per certificate source.

Modules, one concern each: ``probe`` (concurrent TLS/STARTTLS probing that
captures the presented chain), ``tls_connection`` (the socket, STARTTLS and handshake of
one probe), ``x509facts`` (x509 facts; not named ``inspect``: Airflow imports every
file under plugins/ by its bare name and would shadow the stdlib module), ``verify`` (trust,
completeness, self-signed), ``openssl_chain`` (OpenSSL's own chain verification, offline),
``judge`` (facts -> findings), ``lints`` (profile lints, never trust), ``files`` (PEM/DER
files and directories), ``acm`` (AWS Certificate Manager), ``drill`` (one
DrillResult per endpoint / file certificate / ACM certificate, and the one
summary), ``endpoints`` (probe and judge the endpoints), ``at_rest`` (judge file and ACM
certificates), ``results`` (the result every item's check builds). Nothing here imports Airflow; cryptography and boto3 are imported
inside functions.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "check_acm": "at_rest",
    "check_endpoints": "endpoints",
    "check_files": "at_rest",
    "compact": "drill",
    "run_certificates": "drill",
    "summarize": "drill",
    "summary_lines": "drill",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    # Lazy: the kind's catalogue model (``certificates.catalogue``) is imported by every catalogue load
    # and must not pull the drill's phases in with it.
    if name in _HOMES:
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(name)
