"""Rung 5, data quality: the Great Expectations suites the catalogue names, run on the restored data.

Rules this module enforces:
- the suites are ``verify.suites``, resolved in ``<catalogue dir>/expectations``
  exactly as a ``data_quality`` drill resolves them; each suite names its table
  in ``meta.drillbook.table``;
- the work is delegated to ``drillbook.drills.data_quality.validate_into``
  (imported lazily: GX costs seconds to import, and only this rung needs it),
  which adds its own phases (``dq <suite>: ...``), checks and findings
  (``DQ_EXPECTATION_FAILED``, ``DQ_VALIDATION_ERROR``, ``CONFIG_INVALID``) to
  the same result;
- no unexpected values are sampled (``sample=0``): the restored data is a copy
  of production and evidence must not carry its rows;
- with no suites the rung is ``not configured`` and counts no check;
- suites that are configured but cannot run because the data-quality engine
  cannot be imported are ``DQ_VALIDATION_ERROR`` naming every suite (blocks
  verification: ERROR, never a silent skip that leaves the result PASS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.verify.ladder import Ladder
    from drillbook.drills.base import PhaseHandle


def run(ladder: Ladder, ph: PhaseHandle) -> None:
    """Validate each configured suite against the scratch database."""
    suites = list(ladder.verify.suites)
    facts: dict[str, Any] = {"suites": suites}
    ladder.facts["quality"] = facts
    if not suites:
        ph.skip()
        ph.detail = "no data-quality suites configured"
        return
    try:
        from drillbook.drills.data_quality import validate_into
    except ImportError as exc:
        why = f"data-quality engine not available ({exc.name or exc})"
        ladder.builder.find(
            "DQ_VALIDATION_ERROR",
            f"verify.suites names {', '.join(repr(s) for s in suites)} but none could run: {why}",
            subject=", ".join(suites),
            detail={"suites": ", ".join(suites), "error": str(exc)},
        )
        ph.status = "failed"
        ph.detail = f"{why}; suites not run: {', '.join(suites)}"
        facts["engine"] = "unavailable"
        return
    suites_dir = ladder.base_dir / "expectations"
    counts = ladder.builder.measurements.counts
    before_checks = ladder.builder.checks_run
    before_expectations = counts.get("dq_expectations", 0)
    for suite in suites:
        validate_into(ladder.builder, dsn=ladder.dsn, suite=suite, suites_dir=suites_dir, sample=0)
    expectations = counts.get("dq_expectations", 0) - before_expectations
    facts["expectations"] = expectations
    facts["checks"] = ladder.builder.checks_run - before_checks
    ph.detail = f"{len(suites)} suites, {expectations} expectations evaluated on the restored data"
