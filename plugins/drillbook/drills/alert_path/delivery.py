"""Timing and judging one canary's delivery: sent, seen, latency, and the verdict-bearing finding.

Rules this module enforces:
- latency is measured on the monotonic clock from just before the send to the
  read-back that first saw the canary (so it includes up to one poll interval);
  wall-clock timestamps are recorded beside it for the evidence;
- the read-back keeps looking past the objective, up to ``give_up``, so a slow
  path (``ALERT_SLOW``) is told apart from a lost alert (``ALERT_NOT_DELIVERED``);
- every loop is bounded by ``give_up`` on the monotonic clock;
- a path that can only prove acceptance says "accepted, not seen" and has no
  seen time and no latency: nothing was read back, so nothing was measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drillbook.drills.base import ResultBuilder


@dataclass
class Delivery:
    """What happened to one canary on one path; lands in ``details`` and ``measurements``."""

    path: str
    path_type: str
    destination: str  # already redacted: channel, topic ARN, or scheme://host/first-segment/***
    objective: float
    give_up: float
    seen_via: str = "read-back"
    sent_at: datetime | None = None
    seen_at: datetime | None = None
    latency_seconds: float | None = None
    attempts: int = 0  # send attempts, retries included
    polls: int = 0  # read-back requests
    http_status: int | None = None  # of the last send attempt, where the path speaks HTTP
    cleanup: str = "not attempted"
    accepted_only: bool = False  # acceptance (2xx) is all this path can prove
    may_have_landed: bool = False  # a send reached the far end or may have (then it must be resolved)
    extra: dict[str, Any] = field(default_factory=dict)
    _sent_mono: float | None = None

    # -- clock ----------------------------------------------------------------------
    def mark_sent(self) -> None:
        """Start the delivery clock: call just before the send request goes out."""
        self._sent_mono = time.monotonic()
        self.sent_at = datetime.now(UTC)

    def mark_seen(self) -> None:
        if self._sent_mono is None:  # pragma: no cover - programming error
            raise RuntimeError("mark_seen() before mark_sent()")
        self.latency_seconds = round(time.monotonic() - self._sent_mono, 3)
        self.seen_at = datetime.now(UTC)

    def mark_accepted_only(self) -> None:
        self.accepted_only = True
        self.seen_via = "accepted, not seen (no read-back configured)"

    @property
    def seen(self) -> bool:
        return self.seen_at is not None

    def remaining(self) -> float:
        """Seconds left before giving up (counted from the send)."""
        start = self._sent_mono if self._sent_mono is not None else time.monotonic()
        return self.give_up - (time.monotonic() - start)

    # -- polling --------------------------------------------------------------------
    def poll(self, look: Callable[[float], bool], *, interval: float) -> bool:
        """Call ``look(remaining_seconds)`` until it returns True or ``give_up`` passes.

        ``look`` may block up to the remaining time (SQS long polling) or return at
        once (HTTP, Slack history); between calls we sleep ``interval``.
        """
        while True:
            self.polls += 1
            if look(max(0.0, self.remaining())):
                self.mark_seen()
                return True
            left = self.remaining()
            if left <= 0:
                return False
            time.sleep(min(interval, left))

    # -- evidence -------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.path_type,
            "destination": self.destination,
            "seen_via": self.seen_via,
            "objective_seconds": self.objective,
            "give_up_seconds": self.give_up,
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "seen_at": self.seen_at.isoformat() if self.seen_at else None,
            "latency_seconds": self.latency_seconds,
            "attempts": self.attempts,
            "polls": self.polls,
            "http_status": self.http_status,
            "cleanup": self.cleanup,
            **self.extra,
        }

    def record(self, builder: ResultBuilder) -> None:
        """Copy this delivery into the result (details, measurements, counts)."""
        data = self.as_dict()
        builder.details["delivery"] = data
        values = builder.measurements.values
        for key in (
            "sent_at",
            "seen_at",
            "latency_seconds",
            "http_status",
            "destination",
            "seen_via",
            "cleanup",
        ):
            values[key] = data[key]
        builder.measurements.counts["attempts"] = self.attempts
        builder.measurements.counts["polls"] = self.polls


def judge(
    builder: ResultBuilder,
    delivery: Delivery,
    *,
    not_seen_detail: dict[str, Any] | None = None,
    not_seen_reason: str = "",
) -> None:
    """Turn a finished read-back into a counted check and, if late or lost, a finding."""
    builder.checked()
    subject = delivery.path
    if delivery.accepted_only:
        return
    if not delivery.seen:
        builder.find(
            "ALERT_NOT_DELIVERED",
            f"test alert on path {delivery.path!r} ({delivery.destination}) was sent at "
            f"{delivery.sent_at:%H:%M:%S} UTC and not seen after {delivery.give_up:.0f}s "
            f"(objective {delivery.objective:.0f}s, {delivery.polls} read-backs)"
            + (f": {not_seen_reason}" if not_seen_reason else ""),
            subject=subject,
            detail={
                "objective_seconds": delivery.objective,
                "give_up_seconds": delivery.give_up,
                "polls": delivery.polls,
                **(not_seen_detail or {}),
            },
        )
        return
    assert delivery.latency_seconds is not None
    if delivery.latency_seconds > delivery.objective:
        builder.find(
            "ALERT_SLOW",
            f"test alert on path {delivery.path!r} arrived after {delivery.latency_seconds:.1f}s; "
            f"objective {delivery.objective:.0f}s",
            subject=subject,
            detail={"latency_seconds": delivery.latency_seconds, "objective_seconds": delivery.objective},
        )
