"""Phase 7, measure: RTO and RPO on the restored data, against the objectives and the last good run.

Rules this module enforces (principle 4, measured, not claimed):
- RTO is the time from drill start to a *verified* restore (after the verify
  ladder), on the drill's monotonic clock; per-phase seconds are kept beside it;
- RPO is drill start minus the newest recoverable point, taken in this order:
  the ``rpo_probe`` SQL run on the restored scratch database (the data itself),
  else the timestamp pg_dump wrote into the archive, else the storage time of
  the object; the source used is recorded in ``measurements.values``;
- a configured probe that fails or returns nothing -> ``RPO_PROBE_FAILED``
  (the fallback is still measured, but the configured check did not hold);
- over the objective -> ``RTO_EXCEEDED`` / ``RPO_EXCEEDED``;
- the trend compares RTO with the last PASS of the same drill
  ("RTO 19% slower than the last good run").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from drillbook.catalogue.common import format_duration
from drillbook.resources import pg

TREND_NOISE = 0.05  # within 5% is "about the same": timings jitter


def as_utc(value: Any) -> datetime | None:
    """A probe's value as an aware UTC datetime (naive timestamps are taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time.max, tzinfo=UTC)  # a whole day is recoverable
    if isinstance(value, int | float | Decimal):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise ValueError(f"expected a timestamp, got {type(value).__name__}")


def run_rpo_probe(*, scratch_db_dsn: str, sql: str, timeout_s: int = 300) -> datetime | None:
    """Run the probe read-only on the restored data; its first column is the newest recoverable point."""
    with pg.connect(scratch_db_dsn) as conn:
        conn.read_only = True
        with conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
            cur.execute(sql)  # operator-written SQL from the catalogue, run on scratch only
            row = cur.fetchone()
    return as_utc(row[0]) if row else None


def recoverable_point(
    *, probe: datetime | None, archive_time: datetime | None, object_time: datetime | None
) -> tuple[datetime | None, str]:
    """The newest recoverable point and where it came from (see the module docstring)."""
    if probe is not None:
        return probe, "rpo_probe"
    if archive_time is not None:
        return archive_time, "dump timestamp"
    if object_time is not None:
        return object_time, "object time"
    return None, "unknown"


def add_objective_findings(
    builder,
    *,
    rto: float | None,
    rpo: float | None,
    rto_objective: float,
    rpo_objective: float,
    rpo_source: str,
) -> None:  # type: ignore[no-untyped-def]
    """RTO_EXCEEDED / RPO_EXCEEDED against the objectives; each comparison counts as a check."""
    if rto is not None:
        builder.checked()
        if rto > rto_objective:
            slowest = max(builder.measurements.phase_seconds.items(), key=lambda kv: kv[1], default=("", 0.0))
            builder.find(
                "RTO_EXCEEDED",
                f"verified restore took {format_duration(rto)}, objective {format_duration(rto_objective)}; "
                f"slowest phase {slowest[0]!r} ({format_duration(slowest[1])})",
                detail={
                    "rto_seconds": round(rto, 3),
                    "objective_seconds": rto_objective,
                    "slowest_phase": slowest[0],
                },
            )
    if rpo is not None:
        builder.checked()
        if rpo > rpo_objective:
            builder.find(
                "RPO_EXCEEDED",
                f"the newest recoverable data ({rpo_source}) is {format_duration(rpo)} old, objective {format_duration(rpo_objective)}",
                detail={
                    "rpo_seconds": round(rpo, 3),
                    "objective_seconds": rpo_objective,
                    "source": rpo_source,
                },
            )


def trend(rto: float | None, previous: dict[str, Any] | None) -> str | None:
    """One sentence comparing this RTO with the last PASS of the same drill, or None."""
    if rto is None or not previous:
        return None
    before = (previous.get("measurements") or {}).get("rto_seconds")
    if not before or before <= 0:
        return None
    change = (rto - before) / before
    when = previous.get("started_at", "")
    when = f" ({str(when)[:16].replace('T', ' ')})" if when else ""
    if abs(change) < TREND_NOISE:
        return f"RTO within {TREND_NOISE:.0%} of the last good run{when}: {format_duration(rto)} vs {format_duration(before)}"
    direction = "slower" if change > 0 else "faster"
    return f"RTO {abs(change):.0%} {direction} than the last good run{when}: {format_duration(rto)} vs {format_duration(before)}"
