"""Turn GX expectation results into drillbook checks and findings.

Rules this module enforces (principle 1, and the lesson of the GX Airflow
provider's issue 195, where failed validations stopped failing tasks):
- an expectation that ran and failed is ``DQ_EXPECTATION_FAILED`` with the
  severity of its ``meta.severity``, else the suite's ``meta.severity``, else
  ``high`` (so it FAILs the drill unless the suite says it is only a warning);
- an expectation whose metrics raised is ``DQ_VALIDATION_ERROR`` (ERROR), never
  a pass and never a plain FAIL. GX reports such errors *inside* the result
  (``exception_info``, either one ``{raised_exception, ...}`` object or one per
  failed metric) with ``success: false``, which is how a missing column looks;
  an expectation GX returned no result for is an error too;
- only an expectation that actually evaluated counts as a check;
- unexpected values are sampled only when the drill asks (``sample > 0``) and
  never for a sensitive column (the drill's ``sensitive_columns`` plus the
  suite's ``meta.drillbook.sensitive_columns``) — those expectations run in a
  validation of their own with no sample, so their values never leave the
  database (``engine.run_suite``); for a sensitive column the
  observed value is withheld as well, since a min, max or most common value is
  a value from the column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from drillbook.safety.redact import redact

WITHHELD = "(withheld: sensitive column)"
_COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")
_TEXT_MAX = 200  # characters of one observed value or sampled value kept as evidence


@dataclass
class Outcome:
    """What one expectation did, as evidence: no row, no credential, only short facts."""

    index: int
    type: str
    columns: list[str]
    success: bool | None
    severity: str
    observed: str | None = None
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def evaluated(self) -> bool:
        return self.error is None and self.success is not None

    @property
    def column(self) -> str | None:
        return ", ".join(self.columns) or None

    def label(self, suite: str) -> str:
        on = f"({self.column})" if self.column else ""
        return f"{suite}#{self.index} {self.type}{on}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["column"] = self.column
        return data


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    text = redact(text)
    return text if len(text) <= _TEXT_MAX else text[: _TEXT_MAX - 1] + "…"


def _columns(etype: str, kwargs: dict[str, Any]) -> list[str]:
    """The columns an expectation reads (its domain), not the ones it expects to find."""
    out: list[str] = []
    for key in _COLUMN_KWARGS:
        if key == "column_list" and etype.startswith("expect_table_"):
            continue  # expect_table_columns_to_match_set: the list is the expected value
        value = kwargs.get(key)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(str(v) for v in value)
    return out


def columns_of(expectation: dict[str, Any]) -> list[str]:
    """The columns one suite expectation reads."""
    return _columns(str(expectation.get("type")), expectation.get("kwargs") or {})


def exception_messages(info: Any) -> list[str]:
    """Every exception GX recorded for one expectation (both shapes of ``exception_info``)."""
    if not isinstance(info, dict) or not info:
        return []
    if "raised_exception" in info:
        if info.get("raised_exception") or info.get("exception_message"):
            return [str(info.get("exception_message") or "GX raised without a message")]
        return []
    messages: list[str] = []
    for item in info.values():  # one entry per metric that raised
        if isinstance(item, dict) and (
            item.get("exception_message") or item.get("exception_traceback") or item.get("raised_exception")
        ):
            messages.append(str(item.get("exception_message") or "a metric raised (see the task log)"))
    return messages


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else message
    return line[:300]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if isinstance(value, float) and math.isnan(value) else value


def interpret(
    raw: dict[str, Any] | None,
    *,
    index: int,
    expectation: dict[str, Any],
    severity: str,
    sample: int,
    sensitive: Iterable[str],
    missing_columns: Iterable[str] = (),
) -> Outcome:
    """Read one GX result (``ExpectationValidationResult.to_json_dict()``) into an ``Outcome``."""
    etype = str(expectation.get("type"))
    columns = _columns(etype, expectation.get("kwargs") or {})
    outcome = Outcome(index=index, type=etype, columns=columns, success=None, severity=severity)
    absent = [c for c in columns if c in set(missing_columns)]
    if raw is None:
        outcome.error = "Great Expectations returned no result for this expectation"
        return outcome
    errors = exception_messages(raw.get("exception_info"))
    if absent:
        outcome.error = f"column {absent[0]!r} does not exist" + (
            f" ({_first_line(errors[0])})" if errors else ""
        )
        return outcome
    if errors:
        outcome.error = _first_line(errors[0])
        return outcome
    if not isinstance(raw.get("success"), bool):
        outcome.error = f"Great Expectations returned success={raw.get('success')!r}, not a verdict"
        return outcome
    outcome.success = raw["success"]
    result = raw.get("result") or {}
    hidden = bool(set(columns) & set(sensitive))
    if "observed_value" in result:
        outcome.observed = WITHHELD if hidden else _short(result["observed_value"])
    count = _number(result.get("element_count"))
    outcome.element_count = int(count) if count is not None else None
    count = _number(result.get("unexpected_count"))
    outcome.unexpected_count = int(count) if count is not None else None
    pct = _number(result.get("unexpected_percent"))
    outcome.unexpected_percent = round(float(pct), 4) if pct is not None else None
    if sample > 0 and not hidden and not outcome.success:
        values = result.get("partial_unexpected_list") or []
        outcome.sample = [_short(v) for v in list(values)[:sample]]
    return outcome


def apply(builder: Any, outcomes: list[Outcome], *, suite: str, target: str) -> None:
    """Count evaluated expectations as checks and add one finding per failure or error."""
    for o in outcomes:
        subject = o.label(suite)
        detail: dict[str, Any] = {
            "suite": suite,
            "target": target,
            "index": o.index,
            "type": o.type,
            "column": o.column,
        }
        if not o.evaluated:
            builder.find(
                "DQ_VALIDATION_ERROR",
                f"expectation {subject} could not be evaluated on {target}: {o.error}",
                subject=subject,
                detail={**detail, "error": o.error},
            )
            continue
        builder.checked()
        if o.success:
            continue
        facts = []
        if o.unexpected_count is not None:
            pct = f" ({o.unexpected_percent:g}%)" if o.unexpected_percent is not None else ""
            facts.append(f"{o.unexpected_count} unexpected of {o.element_count}{pct}")
        if o.observed is not None:
            facts.append(f"observed {o.observed}")
        if o.sample:
            facts.append(f"sample {', '.join(o.sample)}")
        builder.find(
            "DQ_EXPECTATION_FAILED",
            f"expectation {subject} failed on {target}" + (": " + "; ".join(facts) if facts else ""),
            severity=o.severity,
            subject=subject,
            detail={
                **detail,
                "observed": o.observed,
                "element_count": o.element_count,
                "unexpected_count": o.unexpected_count,
                "unexpected_percent": o.unexpected_percent,
                "sample": ", ".join(o.sample) if o.sample else None,
            },
        )
