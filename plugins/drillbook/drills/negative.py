"""Scheduled negative drills: prove, once per period, that a drill's detector still turns red.

A "fire alarm check". A drill that declares ``negative: {every: 4w}`` is run, once
in that period, through its own real code path against a broken input that
drillbook makes itself, never against anything in production (the inputs, kind by
kind: ``drillbook.drills.negative_inputs``).

Rules this module enforces:
- the negative drill passes (``NEGATIVE_DRILL_PASSED``) only when the inner run
  was red (FAIL or ERROR) *with one of the expected codes* **and** its page was
  delivered; red for another reason, green, or a page that reached nobody is
  ``DETECTOR_BLIND`` (critical): on broken input on-call would not have been told;
- the inner page carries "NEGATIVE DRILL" in its target so on-call can see at a
  glance that it was expected;
- the inner run is never evidence about the drill: the negative drill's own row
  has kind ``negative`` (target ``<kind>:<drill>``), so the watchdog, the digest's
  per-kind scorecards and the drift baseline of the drill never count it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillbook.drills import registry as _registry
from drillbook.result import DrillResult, Verdict

KIND = "negative"
LABEL = "NEGATIVE DRILL (expected red, no action needed)"


Resources = _registry.Resources
ClientResources = _registry.ClientResources


@dataclass
class Inner:
    """The red run the negative drill provoked, and what was expected of it."""

    result: DrillResult
    expected: frozenset[str]


def expected(kind: str) -> frozenset[str]:
    """The codes the negative drill of ``kind`` must turn red with (its ``DrillKind.expected_negative``)."""
    return _registry.get(kind).expected_negative


def provoke(
    drill: Any,
    *,
    work_dir: Path,
    base_dir: Path | None,
    resources: Resources,
    on_phase: Callable[..., None] | None = None,
) -> Inner:
    """Run ``drill`` against its broken input; the result is labelled as a negative drill's."""
    kind = _registry.get(drill.kind)
    if kind.negative is None or not kind.expected_negative:
        able = sorted(k.name for k in _registry.kinds().values() if k.negative)
        raise ValueError(f"drill kind {drill.kind!r} has no negative drill; expected one of {able}")
    work_dir.mkdir(parents=True, exist_ok=True)
    result = _registry.load(kind.negative)(
        drill, work_dir=work_dir, base_dir=base_dir, resources=resources, on_phase=on_phase
    )
    labelled = result.model_copy(
        update={"target": f"{LABEL} · {result.target}", "details": {**result.details, "negative_drill": True}}
    )
    return Inner(result=labelled, expected=expected(drill.kind))


def judge(
    drill: Any, inner: Inner | None, *, page_delivered: bool, page_detail: str, error: str | None = None
) -> DrillResult:
    """The negative drill's own result: did the detector turn red with the expected code, and was on-call told?"""
    from drillbook.drills.base import ResultBuilder

    b = ResultBuilder(
        kind=KIND, drill=drill.name, target=f"{drill.kind}:{drill.name}", controls=list(drill.controls)
    )
    b.details["negative_of"] = {"kind": drill.kind, "drill": drill.name}
    if inner is None:
        b.find(
            "DRILL_CRASHED",
            f"the negative drill of {drill.name!r} could not make its broken input or run: {error}",
            subject=drill.name,
        )
        return b.finish()
    got = inner.result
    codes = set(got.codes())
    matched = sorted(codes & inner.expected)
    b.details.update(
        {
            "inner_verdict": got.verdict.value,
            "inner_codes": sorted(codes),
            "expected_codes": sorted(inner.expected),
            "page_delivered": page_delivered,
            "page": page_detail,
        }
    )
    b.checked()
    red = got.verdict in (Verdict.FAIL, Verdict.ERROR)
    if not red or not matched:
        what = (
            "stayed green" if not red else f"went {got.verdict.value} without any of {sorted(inner.expected)}"
        )
        b.find(
            "DETECTOR_BLIND",
            f"on broken input the {drill.kind} drill {drill.name!r} {what} "
            f"(codes: {', '.join(sorted(codes)) or 'none'})",
            subject=drill.name,
        )
    elif not page_delivered:
        b.find(
            "DETECTOR_BLIND",
            f"the {drill.kind} drill {drill.name!r} turned red ({', '.join(matched)}) but its page "
            f"was not delivered: {page_detail}",
            subject=drill.name,
        )
    else:
        b.find(
            "NEGATIVE_DRILL_PASSED",
            f"on broken input the {drill.kind} drill {drill.name!r} went "
            f"{got.verdict.value} with {', '.join(matched)} and on-call was paged ({page_detail})",
            subject=drill.name,
        )
    return b.finish()


def run_negative(
    drill: Any,
    *,
    work_dir: Path,
    base_dir: Path | None,
    resources: Resources,
    notifier: Any,
    ctx: Any,
    on_phase: Callable[..., None] | None = None,
) -> DrillResult:
    """Provoke the red run, page it through ``notifier`` (the drill's real route), and judge both."""
    import logging

    from drillbook.safety.redact import redact

    log = logging.getLogger(__name__)
    try:
        inner = provoke(drill, work_dir=work_dir, base_dir=base_dir, resources=resources, on_phase=on_phase)
    except (
        Exception
    ) as exc:  # could not even make the broken input: the alarm is untested, which is not a pass
        log.warning(
            "negative drill of %s could not run: %s", drill.name, redact(f"{type(exc).__name__}: {exc}")
        )
        return judge(
            drill, None, page_delivered=False, page_detail="", error=redact(f"{type(exc).__name__}: {exc}")
        )
    if notifier is None:
        return judge(drill, inner, page_delivered=False, page_detail="no notifier configured")
    try:
        outcome = notifier.notify(inner.result, None, ctx)
    except Exception as exc:
        return judge(drill, inner, page_delivered=False, page_detail=redact(f"{type(exc).__name__}: {exc}"))
    route = getattr(outcome, "route", None)
    main = getattr(outcome, "main", None)
    if route is None:
        detail = "the drill's reports are not routed to on-call (notify.enabled is false)"
    elif main is not None and getattr(main, "delivered", False):
        detail = f"delivered to {getattr(main, 'channel', None) or route.channel} ({getattr(main, 'transport', 'slack')})"
    else:
        detail = (
            f"written to {getattr(main, 'transport', 'the outbox')} only; no Slack connection delivered it"
        )
    return judge(drill, inner, page_delivered=bool(getattr(outcome, "delivered", False)), page_detail=detail)


def is_due(last_run: dt.datetime | None, *, every: float, now: dt.datetime) -> bool:
    """Whether a negative drill last run at ``last_run`` is due again at ``now``."""
    return last_run is None or (now - last_run).total_seconds() >= every
