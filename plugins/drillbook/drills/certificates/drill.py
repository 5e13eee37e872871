"""Run a certificates drill: one DrillResult per endpoint, per file certificate and per ACM certificate.

Rules this module enforces:
- one result per certificate source item, so the ledger has one row per
  endpoint (an auditor can ask "when was api.example.com:443 last checked?");
- every item is judged by the same rules (``judge.py``); an endpoint that cannot
  be probed, a file that cannot be read and an ACM API that cannot be queried are
  ERROR results with a blocking finding, never silently missing and never PASS;
- the Slack side gets one summary for the whole drill (``summarize``): the
  soonest expiries and every failure, built from compact per-item dicts so the
  Airflow layer can pass them through XCom.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillbook.drills.base import ResultBuilder
from drillbook.drills.certificates import judge, lints
from drillbook.errors import DrillAborted
from drillbook.result import DrillResult, Phase, Severity, Verdict

if TYPE_CHECKING:
    from drillbook.drills.certificates.catalogue import AcmSpec, CertificatesDrill, EndpointSpec
    from drillbook.drills.certificates.probe import ProbeOutcome
    from drillbook.drills.certificates.x509facts import CertFacts

KIND = "certificates"
# endpoints sharing a trust store from which their chains are verified in the probe's handshake
# (verify.py, probe.py): its OpenSSL store costs 30-45 ms to build (every anchor parsed, ~150 system
# roots), and each chain it verifies saves 0.6-0.9 ms of separate verification: it pays from ~50 on
HANDSHAKE_VERIFY_MIN = 48
SOONEST = 10  # expiries listed in the summary
MAX_PLACES = 50  # places named in a file certificate's details (the count is always there)


def _builder(drill: CertificatesDrill, target: str) -> ResultBuilder:
    return ResultBuilder(kind=KIND, drill=drill.name, target=target, controls=list(drill.controls))


def _record_facts(builder: ResultBuilder, facts: list[CertFacts]) -> None:
    builder.details["certificates"] = [f.to_detail() for f in facts]
    builder.measurements.counts["certificates"] = len(facts)
    if facts:
        leaf = facts[0]
        builder.measurements.values.update(
            {
                "days_left": round(leaf.days_left, 2),
                "not_after": leaf.not_after.isoformat(),
                "chain_days_left": round(min(f.days_left for f in facts), 2),
                "chain_not_after": min(f.not_after for f in facts).isoformat(),
            }
        )


def _label(facts: CertFacts, role: str, target: str) -> str:
    from drillbook.drills.certificates.x509facts import short_name

    return f"{target} {role} {short_name(facts)}"


# --- endpoints -------------------------------------------------------------------------------------
def _targets(endpoints: list[EndpointSpec]) -> list[Any]:
    from drillbook.drills.certificates.probe import Target

    return [Target.parse(e.address, sni=e.sni, starttls=e.starttls) for e in endpoints]


class RunMemo:
    """What one run works out once and every endpoint shares: a trust store per CA bundle, a verdict per chain.

    A fleet shares its CA bundle, and often its whole chain (a load balancer pool,
    a wildcard certificate): resolving the bundle path, checking its modification
    time and verifying an identical chain again per endpoint is repeated work,
    not a second check. Lives for one run only, so a bundle changed between runs
    is read afresh.
    """

    def __init__(self) -> None:
        self.stores: dict[str | None, Any] = {}  # bundle as configured -> TrustStore, or the ValueError text
        self.verdicts: dict[tuple[Any, ...], Any] = {}  # (bundle, name, chain DER...) -> ChainVerdict


def _store_for(bundle: str | None, base_dir: Path | None, memo: RunMemo | None) -> Any:
    from drillbook.catalogue.common import resolve_relative
    from drillbook.drills.certificates.verify import trust_store

    stores = memo.stores if memo is not None else {}
    if bundle not in stores:
        try:
            stores[bundle] = trust_store(str(resolve_relative(bundle, base_dir)) if bundle else None)
        except ValueError as exc:
            stores[bundle] = str(exc)
    found = stores[bundle]
    if isinstance(found, str):
        raise ValueError(found)
    return found


def endpoint_result(
    drill: CertificatesDrill,
    spec: EndpointSpec,
    outcome: ProbeOutcome,
    *,
    now: datetime,
    base_dir: Path | None = None,
    memo: RunMemo | None = None,
) -> DrillResult:
    """Judge one probed endpoint (pure: no I/O beyond reading CA bundle files); ``memo`` shares per-run work."""
    target = outcome.target
    label = target.address if not spec.sni else f"{target.address} (sni {spec.sni})"
    builder = _builder(drill, label)
    builder.details.update(
        {
            "source": "endpoint",
            "address": spec.address,
            "sni": spec.sni,
            "starttls": spec.starttls,
            "name_checked": target.name,
        }
    )
    status = "ok" if outcome.ok else "failed"
    detail = outcome.tls_version or outcome.error
    builder.phases.append(Phase(name="probe", status=status, seconds=outcome.seconds, detail=detail or ""))
    builder.measurements.phase_seconds["probe"] = outcome.seconds
    if not outcome.ok:
        builder.find(
            outcome.error_code or "TLS_HANDSHAKE_FAILED",
            f"{target.address}: {outcome.error}",
            subject=target.address,
            detail={"error": outcome.error, "starttls": spec.starttls},
        )
        return builder.finish()
    if not outcome.chain:
        builder.find(
            "TLS_HANDSHAKE_FAILED",
            f"{target.address}: the server presented no certificate",
            subject=target.address,
        )
        return builder.finish()
    thresholds = spec.thresholds or drill.thresholds
    bundle = spec.ca_bundle or drill.ca_bundle
    try:
        store = _store_for(bundle, base_dir, memo)
    except ValueError as exc:  # a missing or garbled bundle is this endpoint's configuration problem
        builder.find("CONFIG_INVALID", f"{target.address}: {exc}", subject=target.address)
        return builder.finish()
    verdicts = memo.verdicts if memo is not None else None
    try:
        _judge_endpoint(
            builder,
            outcome,
            certs_der=outcome.chain,
            store=store,
            thresholds=thresholds,
            now=now,
            verdicts=verdicts,
            bundle=bundle,
        )
    except DrillAborted:
        pass  # the crash is already a DRILL_CRASHED finding on this endpoint's result
    return builder.finish()


def _judge_endpoint(
    builder: ResultBuilder,
    outcome: ProbeOutcome,
    *,
    certs_der: list[bytes],
    store: Any,
    thresholds: Any,
    now: datetime,
    verdicts: dict[tuple[Any, ...], Any] | None = None,
    bundle: str | None = None,
) -> None:
    from drillbook.drills.certificates.verify import handshake_verdict, verify_chain
    from drillbook.drills.certificates.x509facts import facts_of_der, load_der

    target = outcome.target
    with builder.phase("judge") as ph:
        certs = [load_der(der) for der in certs_der]
        facts = [facts_of_der(der, now) for der in certs_der]
        _record_facts(builder, facts)
        builder.details.update(
            {
                "tls_version": outcome.tls_version,
                "cipher": outcome.cipher,
                "chain_complete": outcome.chain_complete,
            }
        )
        for i, f in enumerate(facts):
            role = "leaf" if i == 0 else ("root" if f.self_signed else "intermediate")
            subject = _label(f, role, target.address)
            judge.judge_validity(builder, f, subject=subject, thresholds=thresholds)
            judge.judge_strength(builder, f, subject=subject, is_root=(i > 0 and f.self_signed))
            lints.lint_profile(builder, certs[i], f, subject=subject)
        judge.judge_hostname(builder, facts[0], name=target.name, subject=target.address)
        judge.judge_tls_version(builder, outcome.tls_version, subject=target.address)
        verdict = None
        if outcome.verified_chain is not None:
            verdict = handshake_verdict(certs_der, outcome.verified_chain, store)
        key = (bundle, target.name, *certs_der)
        if verdict is None and verdicts is not None:
            verdict = verdicts.get(key)
        if verdict is None:
            verdict = verify_chain(
                certs, store=store, name=target.name, now=now, leaf_self_issued=facts[0].self_issued
            )
            if verdicts is not None:
                verdicts[key] = verdict
        builder.details.update({"trusted": verdict.trusted, "trust_sources": list(store.sources)})
        judge.judge_chain(builder, verdict, facts, subject=target.address)
        ph.detail = f"{len(facts)} certificate(s), {outcome.tls_version}"


def check_endpoints(
    drill: CertificatesDrill,
    *,
    endpoints: list[EndpointSpec] | None = None,
    base_dir: Path | None = None,
    now: datetime | None = None,
) -> list[DrillResult]:
    """Probe ``endpoints`` (default: all of the drill's) concurrently and judge each (CA bundles resolve like files)."""
    from drillbook.drills.certificates.probe import run_probes

    specs = list(drill.endpoints if endpoints is None else endpoints)
    targets = _targets(specs)
    spec_of = {id(t): s for t, s in zip(targets, specs, strict=True)}
    now = now or datetime.now(UTC)
    memo = RunMemo()
    verifying = _handshake_contexts(drill, specs, base_dir, memo)

    def judge_one(outcome: ProbeOutcome) -> DrillResult:
        # runs as each probe completes, so judging overlaps the other probes' network waits
        spec = spec_of[id(outcome.target)]
        try:
            return endpoint_result(drill, spec, outcome, now=now, base_dir=base_dir, memo=memo)
        except Exception as exc:  # one endpoint's crash is its own ERROR, never the whole drill's
            builder = _builder(drill, spec.address)
            builder.find(
                "DRILL_CRASHED", f"{spec.address}: {type(exc).__name__}: {exc}", subject=spec.address
            )
            return builder.finish()

    with _gc_frozen():
        return run_probes(
            targets,
            timeout=drill.timeout,
            concurrency=drill.concurrency,
            then=judge_one,
            verifying=lambda t: verifying.get(spec_of[id(t)].ca_bundle or drill.ca_bundle),
        )


def _handshake_contexts(
    drill: CertificatesDrill, specs: list[EndpointSpec], base_dir: Path | None, memo: RunMemo
) -> dict[str | None, Any]:
    """The verifying probe context of each CA bundle shared by at least ``HANDSHAKE_VERIFY_MIN`` endpoints.

    A bundle that cannot be read gets none: its endpoints are probed as before and judged
    ``CONFIG_INVALID`` by ``endpoint_result``.
    """
    counts: dict[str | None, int] = {}
    for spec in specs:
        bundle = spec.ca_bundle or drill.ca_bundle
        counts[bundle] = counts.get(bundle, 0) + 1
    contexts: dict[str | None, Any] = {}
    for bundle, count in counts.items():
        if count < max(1, HANDSHAKE_VERIFY_MIN):
            continue
        try:
            contexts[bundle] = _store_for(bundle, base_dir, memo).handshake_context
        except ValueError:
            continue
    return contexts


@contextlib.contextmanager
def _gc_frozen() -> Iterator[None]:
    """Keep the cyclic GC off the objects the process already holds while the probes run.

    Probing and judging allocate many short-lived objects, which trigger collections;
    a full one would also walk every object the process held before the drill (an
    Airflow task process holds hundreds of thousands: tens of milliseconds per pass,
    measured ~45 ms at the bench's 300 endpoints, ~8% of the drill). Freezing moves
    them out of the GC's reach for the run only; garbage made by the drill is still
    collected. Skipped when something else has frozen objects (Airflow may before a
    fork), so its freeze is never undone here.
    """
    import gc

    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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


# --- the whole drill -------------------------------------------------------------------------------
def run_certificates(
    drill: CertificatesDrill,
    *,
    base_dir: Path | None = None,
    acm_client: Any = None,
    acm_client_factory: Callable[[AcmSpec], Any] | None = None,
    now: datetime | None = None,
) -> list[DrillResult]:
    """Every endpoint, file certificate and ACM certificate of ``drill``, one DrillResult each."""
    now = now or datetime.now(UTC)
    results = check_endpoints(drill, base_dir=base_dir, now=now) if drill.endpoints else []
    if drill.files:
        results += check_files(drill, base_dir=base_dir, now=now)
    if drill.acm is not None:
        results += check_acm(drill, client=acm_client, client_factory=acm_client_factory, now=now)
    return results


def task_suffix(target: str) -> str:
    """A ledger-key-safe suffix naming one certificate source (distinct per endpoint / file / ACM cert)."""
    return re.sub(r"[^A-Za-z0-9_.:#-]+", "_", target).strip("_")[:200]


# --- the one summary -------------------------------------------------------------------------------
def compact(result: DrillResult) -> dict[str, Any]:
    """The few facts of one item the summary needs (small enough for XCom)."""
    values = result.measurements.values
    return {
        "target": result.target,
        "verdict": result.verdict.value,
        "source": result.details.get("source"),
        "days_left": values.get("chain_days_left", values.get("days_left")),
        "not_after": values.get("chain_not_after", values.get("not_after")),
        "seconds": round(result.duration_seconds, 3),
        "findings": [
            f.model_dump(mode="json") for f in result.findings if f.severity.at_least(Severity.MEDIUM)
        ],
    }


def summarize(
    items: Sequence[DrillResult | dict[str, Any]],
    *,
    drill: CertificatesDrill,
    soonest: int = SOONEST,
    missing_groups: list[str] | None = None,
) -> DrillResult:
    """One DrillResult for the whole drill: worst verdict, every failure, the soonest expiries."""
    from drillbook.result import Finding

    rows = [compact(i) if isinstance(i, DrillResult) else i for i in items]
    dated = sorted((r for r in rows if r.get("days_left") is not None), key=lambda r: r["days_left"])
    target = f"{len(rows)} certificate source(s)"
    if dated:  # the Slack report shows the target: make it say what expires first
        target += f"; soonest {dated[0]['target']} in {dated[0]['days_left']:.1f} d"
    builder = _builder(drill, target)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        for f in row["findings"]:
            builder.add(Finding.model_validate(f))
    checked = sum(1 for r in rows if r["verdict"] in ("PASS", "FAIL"))
    builder.checked(checked)
    for group in missing_groups or []:
        builder.find(
            "DRILL_CRASHED",
            f"the {group} check produced no results (its task failed); see its log",
            subject=group,
        )
    _group_phases(builder, rows)
    builder.details.update(
        {
            "summary": True,
            "verdicts": counts,
            "soonest": [
                {"target": r["target"], "days_left": r["days_left"], "not_after": r["not_after"]}
                for r in dated[:soonest]
            ],
            "failures": [
                {"target": r["target"], "verdict": r["verdict"], "codes": [f["code"] for f in r["findings"]]}
                for r in rows
                if r["verdict"] in ("FAIL", "ERROR")
            ],
        }
    )
    builder.measurements.counts.update({f"verdict_{k.lower()}": v for k, v in counts.items()})
    builder.measurements.counts["items"] = len(rows)
    if dated:
        builder.measurements.values["soonest_days_left"] = dated[0]["days_left"]
    return builder.finish()


def _group_phases(builder: ResultBuilder, rows: list[dict[str, Any]]) -> None:
    """One phase line per source group: how many were checked, the verdicts, and what expires first."""
    for source in ("endpoint", "file", "acm"):
        group = [r for r in rows if r.get("source") == source]
        if not group:
            continue
        verdicts: dict[str, int] = {}
        for r in group:
            verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
        soon = sorted((r for r in group if r.get("days_left") is not None), key=lambda r: r["days_left"])[:3]
        detail = f"{len(group)} checked: " + ", ".join(f"{v} {k}" for k, v in sorted(verdicts.items()))
        if soon:
            detail += "; soonest " + ", ".join(f"{r['target']} {r['days_left']:.1f} d" for r in soon)
        bad = any(r["verdict"] in ("FAIL", "ERROR") for r in group)
        seconds = max((float(r.get("seconds") or 0.0) for r in group), default=0.0)
        builder.phases.append(
            Phase(name=f"{source}s", status="failed" if bad else "ok", seconds=seconds, detail=detail)
        )


def summary_lines(summary: DrillResult) -> list[str]:
    """Plain text lines of a summary (for the CLI and a notifier that wants text)."""
    d = summary.details
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(d.get("verdicts", {}).items()))
    lines = [f"certificates drill {summary.drill!r}: {summary.verdict.value} ({verdicts})"]
    if d.get("soonest"):
        lines.append("soonest expiries:")
        lines += [f"  {s['days_left']:>8.1f} d  {s['target']}  ({s['not_after']})" for s in d["soonest"]]
    if d.get("failures"):
        lines.append("failures:")
        lines += [
            f"  {f['verdict']:<5} {f['target']}: {', '.join(f['codes']) or 'no finding'}"
            for f in d["failures"]
        ]
    return lines
