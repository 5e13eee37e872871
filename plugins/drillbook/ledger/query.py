"""Filters for reading the ledger: one place turns auditor questions into indexed SQL.

Rules this module enforces:
- every filter is a bound parameter, never text pasted into SQL;
- time windows are half-open: ``since`` inclusive, ``until`` exclusive, both
  on ``recorded_at`` (the server clock when the record was written). A bare
  date given to ``until`` means the end of that day, so ``--since 2026-01-01
  --until 2026-12-31`` is the whole year 2026;
- naive datetimes are read as UTC; a date or time that does not parse is a
  ``ConfigurationError`` naming the option and the accepted forms;
- the control filter uses ``controls @> ARRAY[...]`` so the GIN index serves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from drillbook.errors import ConfigurationError
from drillbook.ledger.records import RECORD_TYPES

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
VERDICTS = ("PASS", "FAIL", "ERROR", "SKIPPED")


def parse_when(text: str, *, option: str, end_of_day: bool = False) -> datetime:
    """Parse an ISO date or datetime from the command line into an aware UTC datetime."""
    raw = text.strip()
    try:
        if _DATE_ONLY.match(raw):
            day = date.fromisoformat(raw)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise ConfigurationError(
            f"{option} {text!r} is not a date or time; use an ISO date like 2026-01-31 "
            "or a datetime like 2026-01-31T12:00:00Z (naive times are UTC)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _aware(value: datetime | date | str | None, *, option: str, end_of_day: bool) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_when(value, option=option, end_of_day=end_of_day)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
    return moment + timedelta(days=1) if end_of_day else moment


@dataclass(frozen=True)
class Filter:
    """Which records an auditor asked for; every field optional."""

    since: datetime | None = None
    until: datetime | None = None
    control: str | None = None
    drill: str | None = None
    kind: str | None = None
    verdict: str | None = None
    record_type: str | None = None

    @classmethod
    def build(
        cls,
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        control: str | None = None,
        drill: str | None = None,
        kind: str | None = None,
        verdict: str | None = None,
        record_type: str | None = None,
    ) -> Filter:
        """Normalise and check the filter values (dates, verdict, record type)."""
        start = _aware(since, option="--since", end_of_day=False)
        end = _aware(until, option="--until", end_of_day=True)
        if start and end and end <= start:
            raise ConfigurationError(f"--until {end.isoformat()} is not after --since {start.isoformat()}")
        if verdict is not None:
            verdict = verdict.upper()
            if verdict not in VERDICTS:
                raise ConfigurationError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        if record_type is not None and record_type not in RECORD_TYPES:
            raise ConfigurationError(f"record type {record_type!r} is not one of {', '.join(RECORD_TYPES)}")
        if kind is not None:
            kind = kind.replace("-", "_")
        return cls(start, end, control, drill, kind, verdict, record_type)

    def where(self) -> tuple[str, list[Any]]:
        """SQL ``WHERE`` clause (or ``TRUE``) and its parameters."""
        parts: list[str] = []
        params: list[Any] = []
        if self.since is not None:
            parts.append("recorded_at >= %s")
            params.append(self.since)
        if self.until is not None:
            parts.append("recorded_at < %s")
            params.append(self.until)
        if self.control is not None:
            parts.append("controls @> ARRAY[%s]::text[]")
            params.append(self.control)
        for column in ("drill", "kind", "verdict", "record_type"):
            value = getattr(self, column)
            if value is not None:
                parts.append(f"{column} = %s")
                params.append(value)
        return (" AND ".join(parts) or "TRUE"), params
