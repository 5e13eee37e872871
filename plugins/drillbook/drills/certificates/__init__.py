"""The certificates drill: TLS endpoints, certificate files and AWS ACM, one result per certificate source.

Modules, one concern each: ``probe`` (concurrent TLS/STARTTLS probing that
captures the presented chain), ``x509facts`` (x509 facts; not named ``inspect``: Airflow imports every
file under plugins/ by its bare name and would shadow the stdlib module), ``verify`` (trust,
completeness, self-signed), ``openssl_chain`` (OpenSSL's own chain verification, offline),
``judge`` (facts -> findings), ``lints`` (profile lints, never trust), ``files`` (PEM/DER
files and directories), ``acm`` (AWS Certificate Manager), ``drill`` (one
DrillResult per endpoint / file certificate / ACM certificate, and the one
summary). Nothing here imports Airflow; cryptography and boto3 are imported
inside functions.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "check_acm",
    "check_endpoints",
    "check_files",
    "compact",
    "run_certificates",
    "summarize",
    "summary_lines",
]


def __getattr__(name: str) -> Any:
    # Lazy: the kind's catalogue model (``certificates.catalogue``) is imported by every catalogue load
    # and must not pull the drill's phases in with it.
    if name in __all__:
        from drillbook.drills.certificates import drill

        return getattr(drill, name)
    raise AttributeError(name)
