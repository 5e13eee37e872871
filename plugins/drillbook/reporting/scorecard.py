"""The scorecard's shape: per drill, per control, and for the whole period; pure data, no I/O.

Rule this module enforces: a drill's and a control's status is ``drillbook.evidence.controls.status_of``,
the rule of the auditors' controls view: VERIFIED only when every expected run happened, none
failed, the newest passed and the ledger verifies; a missed run or a FAIL/ERROR run in the period
is EXCEPTIONS (never "VERIFIED · 1/19 runs"), no run at all is NOT RUN, a newest FAIL/ERROR is
AT RISK, nothing expected is NOT DUE, and evidence that cannot be trusted (``unverifiable`` set)
is UNVERIFIABLE, never VERIFIED.
``scoring`` builds scorecards, ``notify.render_digest`` draws them; both depend on this module and
neither on the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

UNVERIFIABLE = "UNVERIFIABLE"


@dataclass
class DrillScore:
    drill: str
    kind: str
    controls: list[str]
    expected: int
    runs: int = 0
    passes: int = 0
    newest_verdict: str | None = None
    open_findings: list[str] = field(default_factory=list)  # codes of the newest run, info left out
    rto: tuple[float, float] | None = None  # (worst, median) seconds
    rto_objective: float | None = None
    rpo: tuple[float, float] | None = None
    rpo_objective: float | None = None
    unverifiable: str | None = None  # why VERIFIED cannot be claimed (the ledger does not verify), else None
    missed: int = 0  # expected occurrences with no run (drillbook.evidence.population)
    failed: int = 0  # FAIL or ERROR runs in the period

    @property
    def pass_rate(self) -> float | None:
        return self.passes / self.runs if self.runs else None

    @property
    def status(self) -> str:
        from drillbook.evidence.controls import status_of

        return status_of(
            expected=self.expected,
            runs=self.runs,
            missed=self.missed,
            failed=self.failed,
            newest_verdict=self.newest_verdict,
            unverifiable=self.unverifiable,
        )


@dataclass
class ControlScore:
    control: str
    drills: list[str]
    expected: int
    runs: int
    passes: int
    status: str  # drillbook.evidence.controls: VERIFIED, EXCEPTIONS, AT RISK, NOT RUN, NOT DUE, UNVERIFIABLE
    missed: int = 0
    failed: int = 0


@dataclass
class Scorecard:
    title: str
    start: datetime
    end: datetime
    drills: list[DrillScore]
    controls: list[ControlScore]
    ledger_ok: bool | None  # None: not checked
    ledger_summary: str
    unverifiable: str | None = None  # set when nothing may show VERIFIED: "ledger chain broken at seq N"
