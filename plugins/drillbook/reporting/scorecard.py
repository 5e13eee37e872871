"""The scorecard's shape: per drill, per control, and for the whole period; pure data, no I/O.

Rule this module enforces: a drill is VERIFIED only when it ran and its newest run passed and the
ledger verifies; a drill with no run is NOT RUN, a newest FAIL/ERROR is AT RISK, and a drill
whose evidence cannot be trusted (``unverifiable`` set) is UNVERIFIABLE, never VERIFIED.
``digest`` builds scorecards, ``notify.render`` draws them; both depend on this module and
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

    @property
    def pass_rate(self) -> float | None:
        return self.passes / self.runs if self.runs else None

    @property
    def status(self) -> str:
        if self.runs == 0:
            return "NOT RUN"
        if self.newest_verdict != "PASS":
            return "AT RISK"
        return UNVERIFIABLE if self.unverifiable else "VERIFIED"


@dataclass
class ControlScore:
    control: str
    drills: list[str]
    expected: int
    runs: int
    passes: int
    status: str  # VERIFIED, AT RISK, NOT RUN, UNVERIFIABLE


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
