"""Build a DrillResult phase by phase; the only way drills assemble results.

Rules this module enforces:
- a drill counts every check it actually ran (``checks_run``); the verdict is
  derived by ``decide_verdict`` at ``finish()``, so a drill that ran nothing
  can never come out PASS (it gets ``NOTHING_CHECKED``);
- an exception escaping a phase becomes a ``DRILL_CRASHED`` finding (ERROR)
  instead of vanishing; ``DrillAborted`` ends the drill quietly because its
  reason is already a finding;
- phase timings come from one monotonic clock, started when the builder is made.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from drillbook.errors import DrillAborted
from drillbook.findings import finding
from drillbook.result import (
    DrillResult,
    Finding,
    Measurements,
    Phase,
    Severity,
    Verdict,
    decide_verdict,
    environment_fingerprint,
)


class PhaseHandle:
    """What a running phase may set: its one-line detail and its status."""

    def __init__(self, name: str):
        self.name = name
        self.detail = ""
        self.status = "ok"

    def skip(self, why: str = "not configured") -> None:
        self.status = "not configured" if why == "not configured" else "skipped"
        self.detail = why


class ResultBuilder:
    """Collects findings, phases, measurements and counts for one drill run."""

    def __init__(
        self,
        *,
        kind: str,
        drill: str,
        target: str,
        controls: list[str] | None = None,
        objectives: dict[str, float] | None = None,
        on_phase: Callable[[Phase], None] | None = None,
    ):
        self.kind = kind
        self.drill = drill
        self.target = target
        self.controls = list(controls or [])
        self.objectives = dict(objectives or {})
        self.findings: list[Finding] = []
        self.phases: list[Phase] = []
        self.measurements = Measurements()
        self.details: dict[str, Any] = {}
        self.environment: dict[str, str] = {}
        self.checks_run = 0
        self.started_at = datetime.now(UTC)
        self._t0 = time.monotonic()
        self._on_phase = on_phase
        self.crashed = False

    # -- elapsed time ------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds since the drill started, on the monotonic clock."""
        return time.monotonic() - self._t0

    # -- findings and checks -----------------------------------------------------
    def add(self, item: Finding) -> Finding:
        self.findings.append(item)
        return item

    def find(self, code: str, message: str | None = None, **kwargs: Any) -> Finding:
        """Register a finding by code (see drillbook.findings.finding)."""
        return self.add(finding(code, message, **kwargs))

    def checked(self, n: int = 1) -> None:
        """Count checks that actually ran to completion (pass or fail)."""
        self.checks_run += n

    def has_blocking(self) -> bool:
        return any(f.blocks_verification for f in self.findings)

    # -- phases --------------------------------------------------------------------
    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseHandle]:
        """Time a phase; an unexpected exception becomes DRILL_CRASHED and aborts the drill."""
        handle = PhaseHandle(name)
        start = time.monotonic()
        try:
            yield handle
        except DrillAborted:
            handle.status = "failed"
            raise
        except Exception as exc:
            handle.status = "failed"
            handle.detail = f"{type(exc).__name__}: {exc}"
            self.crashed = True
            self.find(
                "DRILL_CRASHED",
                f"phase {name!r} raised {type(exc).__name__}: {exc}",
                subject=name,
                detail={"traceback": "".join(traceback.format_exception_only(type(exc), exc)).strip()},
            )
            raise DrillAborted(name) from exc
        finally:
            seconds = round(time.monotonic() - start, 4)
            self.measurements.phase_seconds[name] = seconds
            phase = Phase(name=name, status=handle.status, seconds=seconds, detail=handle.detail)
            self.phases.append(phase)
            if self._on_phase is not None:
                self._on_phase(phase)

    # -- result ------------------------------------------------------------------
    def finish(
        self, *, verdict: Verdict | None = None, nothing_checked: bool = True, **env: str
    ) -> DrillResult:
        """Freeze the result; the verdict is derived unless the drill was SKIPPED.

        ``nothing_checked=False`` is for rows that are not drills (a ``notification``
        row whose NOTIFY_NOT_CONFIGURED is the reason it is ERROR): they are still
        ERROR with zero checks, without a NOTHING_CHECKED whose hint would not apply.
        """
        if verdict is None or verdict is not Verdict.SKIPPED:
            # result.py's rule: a run that checked nothing and found nothing that decides the
            # verdict is ERROR *with* NOTHING_CHECKED; an info/low finding (SCRATCH_REAPED,
            # ARTEFACT_UNVERIFIED) must not stand in for the reason.
            decisive = any(f.blocks_verification or f.severity.at_least(Severity.HIGH) for f in self.findings)
            if self.checks_run <= 0 and not decisive and nothing_checked:
                self.find("NOTHING_CHECKED", f"drill {self.drill!r} ran no check")
            verdict = decide_verdict(self.findings, checks_run=self.checks_run)
        self.measurements.counts.setdefault("checks_run", self.checks_run)
        finished = self.started_at + timedelta(seconds=self.elapsed())
        return DrillResult(
            kind=self.kind,
            drill=self.drill,
            target=self.target,
            verdict=verdict,
            findings=self.findings,
            measurements=self.measurements,
            objectives=self.objectives,
            controls=self.controls,
            phases=self.phases,
            details=self.details,
            started_at=self.started_at,
            finished_at=finished,
            environment=environment_fingerprint(**{**self.environment, **env}),
        )
