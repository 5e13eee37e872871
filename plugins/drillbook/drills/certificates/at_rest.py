"""Judge certificates at rest: those in the drill's files and in AWS ACM, one result per certificate.

Rules this module enforces:
- a certificate reached several ways (as its own file and as a bundle member, by two
  paths to one file, twice in one bundle) is judged once, by its SHA-256 fingerprint,
  and its result names every place it was found; an unreadable path is one ERROR;
- an ACM certificate's own Status is judged before its dates; an ACM API that
  cannot be queried (credentials, network, permissions) is one ERROR for the region.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillbook.drills.certificates import judge, lints
from drillbook.drills.certificates.results import _builder, _label, _record_facts
from drillbook.result import DrillResult, Verdict

if TYPE_CHECKING:
    from drillbook.drills.certificates.catalogue import AcmSpec, CertificatesDrill
    from drillbook.drills.certificates.x509facts import CertFacts

MAX_PLACES = 50  # places named in a file certificate's details (the count is always there)


# --- files -----------------------------------------------------------------------------------------
def check_files(
    drill: CertificatesDrill, *, base_dir: Path | None = None, now: datetime | None = None
) -> list[DrillResult]:
    """One result per distinct certificate found under the drill's files, and one ERROR per unreadable path.

    A certificate reached several ways (as its own file and as a bundle member, by two
    paths to one file, twice in one bundle) is judged once, by its SHA-256 fingerprint;
    its result names every place it was found (``found_at``).
    """
    from drillbook.drills.certificates.files import load_paths
    from drillbook.drills.certificates.x509facts import fingerprint, inspect_certificate

    now = now or datetime.now(UTC)
    found, problems = load_paths(list(drill.files), base_dir=base_dir)
    by_fingerprint: dict[str, list[Any]] = {}
    for item in found:
        by_fingerprint.setdefault(fingerprint(item.cert), []).append(item)
    results: list[DrillResult] = []
    for items in by_fingerprint.values():
        # a certificate's own file names it better than its index in a bundle
        places = sorted(items, key=lambda i: i.count > 1)
        item = places[0]
        builder = _builder(drill, item.target)
        builder.details.update(
            {
                "source": "file",
                "path": item.path,
                "index": item.index,
                "found_at": [i.target for i in places][:MAX_PLACES],
                "found_at_count": len(places),
            }
        )
        with builder.phase("judge"):
            facts = inspect_certificate(item.cert, now=now)
            _record_facts(builder, [facts])
            subject = _label(facts, "certificate", item.target)
            if len(places) > 1:
                subject += (
                    f" (also at {len(places) - 1} other place(s): {', '.join(i.target for i in places[1:4])}"
                    f"{', ...' if len(places) > 4 else ''})"
                )
            judge.judge_validity(builder, facts, subject=subject, thresholds=drill.thresholds)
            judge.judge_strength(builder, facts, subject=subject, is_root=facts.self_signed)
            lints.lint_profile(builder, item.cert, facts, subject=subject)
        results.append(builder.finish())
    seen_problems: set[str] = set()
    for problem in problems:
        if problem.path in seen_problems:
            continue
        seen_problems.add(problem.path)
        builder = _builder(drill, problem.path)
        builder.details.update({"source": "file", "path": problem.path})
        builder.find("CERT_UNREADABLE", f"{problem.path}: {problem.error}", subject=problem.path)
        results.append(builder.finish())
    return results


# --- ACM -------------------------------------------------------------------------------------------
def default_acm_client(spec: AcmSpec) -> Any:
    """A boto3 ACM client from the environment (the CLI's default; Airflow passes its own)."""
    import boto3

    return boto3.client("acm", region_name=spec.region)


def check_acm(
    drill: CertificatesDrill,
    *,
    client: Any = None,
    client_factory: Callable[[AcmSpec], Any] | None = None,
    now: datetime | None = None,
) -> list[DrillResult]:
    """One result per ACM certificate of the region (or of the listed ARNs)."""
    from drillbook.drills.certificates.acm import judge_status, read_certificates
    from drillbook.drills.certificates.files import parse_certificates
    from drillbook.drills.certificates.x509facts import inspect_certificate

    spec = drill.acm
    if spec is None:
        return []
    now = now or datetime.now(UTC)
    where = f"acm:{spec.region}"
    try:
        client = client if client is not None else (client_factory or default_acm_client)(spec)
        items = read_certificates(client, arns=list(spec.certificate_arns))
    except Exception as exc:  # credentials, network, permissions: all mean "could not verify"
        from drillbook.errors import ConnectionNotConfigured

        builder = _builder(drill, where)
        builder.details.update({"source": "acm", "region": spec.region})
        code = "CONNECTION_MISSING" if isinstance(exc, ConnectionNotConfigured) else "ACM_UNAVAILABLE"
        builder.find(code, f"{where}: {type(exc).__name__}: {exc}", subject=where)
        return [builder.finish()]
    results: list[DrillResult] = []
    for item in items:
        builder = _builder(drill, item.target)
        builder.details.update({"source": "acm", "region": spec.region, **item.summary()})
        outcome = judge_status(
            builder, item
        )  # ACM's Status first: a revoked certificate's good dates are no comfort
        if outcome != "issued":
            results.append(builder.finish(verdict=Verdict.SKIPPED if outcome == "skipped" else None))
            continue
        with builder.phase("judge"):
            downgrade = None if item.in_use else "not in use by any AWS resource"
            if item.pem:
                cert = parse_certificates(item.pem.encode())[0]
                facts = inspect_certificate(cert, now=now)
                _record_facts(builder, [facts])
                subject = _label(facts, "certificate", item.target)
                judge.judge_strength(builder, facts, subject=subject)
                if (
                    item.cert_type == "IMPORTED"
                ):  # Amazon issues to the CA/B profile; imports are whatever someone made
                    lints.lint_profile(builder, cert, facts, subject=subject)
            else:
                facts = _facts_from_description(item.description, now=now)
                subject = item.target
            extra = {"arn": item.arn, "type": item.cert_type, "in_use": item.in_use}
            if item.cert_type == "IMPORTED":
                extra["renewal"] = "imported: ACM never renews it; re-import a renewed certificate"
            judge.judge_validity(
                builder, facts, subject=subject, thresholds=drill.thresholds, extra=extra, downgrade=downgrade
            )
            builder.checked()
            if item.renewal_ineligible:
                builder.find(
                    "ACM_RENEWAL_INELIGIBLE",
                    f"{item.domain}: ACM will not renew this in-use certificate "
                    f"(RenewalEligibility INELIGIBLE; used by {len(item.description.get('InUseBy') or [])} resource(s))",
                    subject=item.target,
                    detail=extra,
                )
        results.append(builder.finish())
    return results


def _facts_from_description(d: dict[str, Any], *, now: datetime) -> CertFacts:
    """Facts from ACM's description alone (when the PEM is not available)."""
    from drillbook.drills.certificates.x509facts import CertFacts

    not_before, not_after = d["NotBefore"], d["NotAfter"]
    key = str(d.get("KeyAlgorithm") or "unknown_0").split("_")
    return CertFacts(
        subject=str(d.get("Subject") or ""),
        issuer=str(d.get("Issuer") or ""),
        sans=list(d.get("SubjectAlternativeNames") or []),
        serial=str(d.get("Serial") or ""),
        not_before=not_before,
        not_after=not_after,
        seconds_left=(not_after - now).total_seconds(),
        lifetime_seconds=max((not_after - not_before).total_seconds(), 1.0),
        key_type=key[0],
        key_bits=int(key[-1]) if key[-1].isdigit() else 0,
        signature_algorithm=str(d.get("SignatureAlgorithm") or "unknown"),
        signature_hash="unknown",
        fingerprint_sha256="",
        self_issued=False,
        self_signed=False,
        is_ca=False,
    )
