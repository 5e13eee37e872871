"""The data-quality drill: one suite against one table or query, and the rung other drills call.

Rules this module enforces:
- the phases are always: load the suite (GX builds every expectation, so a
  misspelt type or bad argument is ``CONFIG_INVALID``, never a skipped
  expectation), inspect the target (a missing table is ``DQ_VALIDATION_ERROR``),
  validate in PostgreSQL, evaluate; a phase that cannot finish ends the drill
  with a finding that makes it ERROR — nothing here can come out PASS without
  an expectation having been evaluated;
- ``validate_into`` adds the same phases, findings and checks to another
  drill's ``ResultBuilder`` (the backup-restore drill's data-quality rung). It
  never raises for a data problem: the restore drill goes on to tear down.
  Its table comes from the suite's ``meta.drillbook.table`` unless given;
- the whole per-expectation result is kept in ``details["data_quality"]`` (a
  list, one entry per suite run), which the ledger records as evidence.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted
from drillbook.result import DrillResult, Phase

KIND = "data_quality"


def _bump(builder: ResultBuilder, key: str, n: int) -> None:
    builder.measurements.counts[key] = builder.measurements.counts.get(key, 0) + n


def _validate(
    builder: ResultBuilder,
    *,
    dsn: str,
    table: str | None,
    query: str | None,
    suite: str,
    suites_dir: str | os.PathLike[str],
    sample: int,
    sensitive: Iterable[str],
    prefix: str,
) -> None:
    """Run the four phases for one suite; raise ``DrillAborted`` when the suite cannot be evaluated."""
    from drillbook.drills.data_quality.suites import SuiteInvalid, load_suite

    with builder.phase(f"{prefix}load suite") as ph:
        try:
            loaded = load_suite(suite, suites_dir=suites_dir, gx_check=True)
        except SuiteInvalid as exc:
            builder.find(
                "CONFIG_INVALID",
                f"data-quality suite {suite!r} ({exc.path}): " + "; ".join(exc.problems),
                subject=suite,
                detail={"suite": suite, "file": exc.path},
            )
            ph.detail = f"suite {suite!r} is invalid"
            raise DrillAborted(ph.name) from None
        table = table if table is not None or query is not None else loaded.table
        if table is None and query is None:
            builder.find(
                "CONFIG_INVALID",
                f"data-quality suite {suite!r} ({loaded.path}) names no table: give one, or set "
                '"meta": {"drillbook": {"table": "schema.table"}} in the suite',
                subject=suite,
            )
            raise DrillAborted(ph.name)
        ph.detail = f"{suite} ({len(loaded.expectations)} expectations)"
    target = table or "query"

    with builder.phase(f"{prefix}inspect target") as ph:
        info = _inspect(builder, dsn=dsn, table=table, query=query, suite=suite, target=target, phase=ph.name)
        ph.detail = f"{target}: {len(info.columns)} columns"

    hidden = set(sensitive) | set(loaded.sensitive_columns)
    with builder.phase(f"{prefix}validate") as ph:
        from drillbook.drills.data_quality.engine import run_suite
        from drillbook.drills.data_quality.results import columns_of

        unsampled = [i for i, e in enumerate(loaded.expectations) if set(columns_of(e)) & hidden]
        try:
            run = run_suite(
                dsn=dsn, suite=loaded, table=table, query=query, sample=sample, unsampled=unsampled
            )
        except Exception as exc:  # GX or the server raised: could not verify, not a crash
            builder.find(
                "DQ_VALIDATION_ERROR",
                f"validating {target} with suite {suite!r} raised {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                subject=f"{suite} on {target}",
                detail={"suite": suite, "target": target, "error": type(exc).__name__},
            )
            raise DrillAborted(ph.name) from None
        builder.environment["great_expectations"] = run.gx_version
        ph.detail = f"GX {run.gx_version} in PostgreSQL"

    with builder.phase(f"{prefix}evaluate") as ph:
        from drillbook.drills.data_quality import results

        missing = _missing_columns(loaded.expectations, info.columns)
        outcomes = [
            results.interpret(
                raw,
                index=i,
                expectation=exp,
                severity=loaded.severity_of(i),
                sample=sample,
                sensitive=hidden,
                missing_columns=missing,
            )
            for i, (raw, exp) in enumerate(zip(run.results, loaded.expectations, strict=True))
        ]
        results.apply(builder, outcomes, suite=suite, target=target)
        failed = sum(1 for o in outcomes if o.evaluated and not o.success)
        errors = sum(1 for o in outcomes if not o.evaluated)
        _bump(builder, "dq_expectations", len(outcomes))
        _bump(builder, "dq_failed", failed)
        _bump(builder, "dq_errors", errors)
        builder.details.setdefault("data_quality", []).append(
            {
                "suite": suite,
                "suite_file": str(loaded.path),
                "target": target,
                "query": query is not None,
                "expectations": [o.to_dict() for o in outcomes],
            }
        )
        ph.detail = f"{len(outcomes) - failed - errors} passed, {failed} failed, {errors} could not run"
        if failed or errors:
            ph.status = "failed"  # shown as FAILED in the CLI and the ledger's phase list


def _inspect(
    builder: ResultBuilder,
    *,
    dsn: str,
    table: str | None,
    query: str | None,
    suite: str,
    target: str,
    phase: str,
) -> Any:
    import psycopg

    from drillbook.drills.data_quality.engine import TargetMissing, inspect_target
    from drillbook.resources.pg import describe

    try:
        return inspect_target(dsn=dsn, table=table, query=query)
    except TargetMissing as exc:
        builder.find(
            "DQ_VALIDATION_ERROR",
            f"suite {suite!r} cannot run: {exc}",
            subject=target,
            detail={"suite": suite, "target": target},
        )
    except psycopg.Error as exc:
        builder.find(
            "DQ_VALIDATION_ERROR",
            f"cannot read {target} on {describe(dsn)}: "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
            subject=target,
            detail={"suite": suite, "target": target, "error": type(exc).__name__},
        )
    raise DrillAborted(phase)


def _missing_columns(expectations: list[dict[str, Any]], columns: list[str]) -> set[str]:
    from drillbook.drills.data_quality.results import columns_of

    present = set(columns)
    wanted = {c for e in expectations for c in columns_of(e)}
    return wanted - present if present else set()


def run_data_quality(
    *,
    drill_name: str,
    dsn: str,
    table: str | None = None,
    query: str | None = None,
    suite: str,
    suites_dir: str | os.PathLike[str],
    sample: int = 0,
    sensitive: Iterable[str] = (),
    controls: Iterable[str] = (),
    on_phase: Callable[[Phase], None] | None = None,
) -> DrillResult:
    """Validate ``table`` (or ``query``) on ``dsn`` with ``suite``; the verdict follows the findings."""
    from drillbook.resources.pg import describe

    if table is not None and query is not None:
        raise ValueError(f"give table or query, not both (table={table!r})")
    where = describe(dsn)
    builder = ResultBuilder(
        kind=KIND,
        drill=drill_name,
        target=f"{where}/{table}" if table else f"{where} (query)",
        controls=list(controls),
        on_phase=on_phase,
    )
    try:
        _validate(
            builder,
            dsn=dsn,
            table=table,
            query=query,
            suite=suite,
            suites_dir=suites_dir,
            sample=sample,
            sensitive=sensitive,
            prefix="",
        )
    except DrillAborted:
        pass  # the reason is already a finding
    return builder.finish()


def validate_into(
    builder: ResultBuilder,
    *,
    dsn: str,
    table: str | None = None,
    query: str | None = None,
    suite: str,
    suites_dir: str | os.PathLike[str],
    sample: int = 0,
    sensitive: Iterable[str] = (),
) -> None:
    """Run ``suite`` against ``dsn`` and add its phases, checks and findings to ``builder``."""
    try:
        _validate(
            builder,
            dsn=dsn,
            table=table,
            query=query,
            suite=suite,
            suites_dir=suites_dir,
            sample=sample,
            sensitive=sensitive,
            prefix=f"dq {suite}: ",
        )
    except DrillAborted:
        pass  # recorded as a finding; the calling drill carries on (e.g. to teardown)
