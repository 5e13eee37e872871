"""The result model every drill returns: ``DrillResult``.

Rules this module enforces (principle 1: a check that could not run never
reports as passing):
- the verdict is derived, never set by hand: any finding that blocks
  verification -> ERROR; else any finding at or above ``high`` -> FAIL; else
  PASS, but only if at least one check actually ran (``checks_run > 0``),
  otherwise ERROR with ``NOTHING_CHECKED``. SKIPPED exists only for a drill
  that is explicitly not configured. A finding suppressed with a written
  reason (``Finding.suppressed``) is kept and shown but left out of the
  verdict; codes that block verification cannot be suppressed.
- a finding has no field that could hold a table row or a credential: its
  ``detail`` is a flat map of short scalars, and every string in a finding
  passes through ``drillbook.safety.redact.redact`` when the finding is built.
"""

from __future__ import annotations

import enum
import platform
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drillbook.safety.redact import redact

DETAIL_VALUE_MAX = 500  # characters; a detail is evidence, not a data dump


class Verdict(enum.StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    ERROR = "ERROR"
    SKIPPED = "SKIPPED"

    @property
    def is_green(self) -> bool:
        return self is Verdict.PASS

    @property
    def exit_code(self) -> int:
        """CLI exit status: 0 PASS, 1 FAIL, 2 ERROR, 3 SKIPPED."""
        return {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.ERROR: 2, Verdict.SKIPPED: 3}[self]


class Severity(enum.StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)

    def at_least(self, other: Severity | str) -> bool:
        return self.rank >= Severity(other).rank


_SEVERITY_ORDER = [Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]

DetailValue = str | int | float | bool | None


class Finding(BaseModel):
    """One thing a drill found: a stable code, a severity, what and how to fix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    severity: Severity
    message: str
    hint: str
    subject: str | None = None  # which object: table, endpoint, path, expectation
    blocks_verification: bool = False
    detail: dict[str, DetailValue] = Field(default_factory=dict)
    # The written reason of a catalogue suppression (``verify.ignore``): the finding is kept and
    # shown, but no longer drives the verdict. None for every finding that is not suppressed.
    suppressed: str | None = None

    @field_validator("message", "hint", "subject", "suppressed")
    @classmethod
    def _redact_text(cls, value: str | None) -> str | None:
        return redact(value) if value else value

    @field_validator("detail")
    @classmethod
    def _redact_detail(cls, value: dict[str, DetailValue]) -> dict[str, DetailValue]:
        clean: dict[str, DetailValue] = {}
        for key, item in value.items():
            if isinstance(item, str):
                item = redact(item)
                if len(item) > DETAIL_VALUE_MAX:
                    item = item[: DETAIL_VALUE_MAX - 15] + f"… (+{len(item) - DETAIL_VALUE_MAX + 15} chars)"
            clean[str(key)] = item
        return clean


class Phase(BaseModel):
    """One timed phase of a drill, as the CLI shows it and the ledger keeps it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    status: str  # "ok", "failed", "skipped", "not configured"
    seconds: float
    detail: str = ""

    @field_validator("detail")
    @classmethod
    def _redact_detail(cls, value: str) -> str:
        return redact(value)


class Measurements(BaseModel):
    """What the drill measured: RTO, RPO, per-phase seconds and counts."""

    model_config = ConfigDict(extra="forbid")

    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    phase_seconds: dict[str, float] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    values: dict[str, DetailValue] = Field(default_factory=dict)


def environment_fingerprint(**extra: str) -> dict[str, str]:
    """Describe the tools and host that produced a result (no secrets, no hostnames of sources)."""
    from drillbook import __version__

    env = {
        "drillbook": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    env.update({k: redact(str(v)) for k, v in extra.items()})
    return env


def utcnow() -> datetime:
    return datetime.now(UTC)


class DrillResult(BaseModel):
    """The outcome of one drill against one target."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    drill: str
    target: str
    verdict: Verdict
    findings: list[Finding] = Field(default_factory=list)
    measurements: Measurements = Field(default_factory=Measurements)
    objectives: dict[str, float] = Field(default_factory=dict)
    controls: list[str] = Field(default_factory=list)
    phases: list[Phase] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime
    finished_at: datetime
    environment: dict[str, str] = Field(default_factory=dict)

    @field_validator("target")
    @classmethod
    def _redact_target(cls, value: str) -> str:
        return redact(value)

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def worst_severity(self) -> Severity | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: s.rank)

    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def decide_verdict(findings: list[Finding], *, checks_run: int) -> Verdict:
    """Derive the verdict from findings; see the module docstring for the rule (suppressed findings do not count)."""
    findings = [f for f in findings if f.suppressed is None]
    if any(f.blocks_verification for f in findings):
        return Verdict.ERROR
    if any(f.severity.at_least(Severity.HIGH) for f in findings):
        return Verdict.FAIL
    if checks_run <= 0:
        return Verdict.ERROR
    return Verdict.PASS
