"""Probe a drill's TLS endpoints concurrently and judge each one's presented chain as its probe completes.

Rules this module enforces:
- one endpoint's crash is its own ERROR result (``DRILL_CRASHED``), never the whole drill's;
- what one run works out once (a trust store per CA bundle, a verdict per
  chain) is shared by every endpoint of that run only (``RunMemo``), so a bundle
  changed between runs is read afresh;
- a CA bundle shared by at least ``HANDSHAKE_VERIFY_MIN`` endpoints verifies their
  chains in the probe's own handshake; fewer are verified one chain at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillbook.drills.base import ResultBuilder
from drillbook.drills.certificates import judge, lints
from drillbook.drills.certificates.results import _builder, _label, _record_facts
from drillbook.errors import DrillAborted
from drillbook.result import DrillResult, Phase

if TYPE_CHECKING:
    from drillbook.drills.certificates.catalogue import CertificatesDrill, EndpointSpec
    from drillbook.drills.certificates.probe import ProbeOutcome

# endpoints sharing a trust store from which their chains are verified in the probe's handshake
# (verify.py, probe.py): its OpenSSL store costs 30-45 ms to build (every anchor parsed, ~150 system
# roots), and each chain it verifies saves 0.6-0.9 ms of separate verification: it pays from ~50 on
HANDSHAKE_VERIFY_MIN = 48


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
