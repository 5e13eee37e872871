"""Field types shared by every drill kind: durations, schedules, control ids, the drill base.

Rule: every model forbids unknown keys (``extra="forbid"``): a misspelt key is an
error, never silently ignored.
"""

from __future__ import annotations

import functools
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

# re-exported: defined in names, which the watchdog's DAG file imports without these models
from drillbook.catalogue.names import DEFAULT_CATALOGUE, PRESET_NAMES  # noqa: F401

_DURATION_RE = re.compile(
    r"^\s*(?:(\d+)w)?\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$"
)


def parse_duration(value: object) -> float:
    """Parse ``15m``, ``4h``, ``1d12h``, ``90s``, ``4w`` (or a number of seconds) into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '15m' or '4h', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a positive duration, got {value!r}")
        return float(value)
    if isinstance(value, str):
        seconds = _duration_of_text(value)
        if seconds is not None:
            return seconds
    raise ValueError(f"expected a duration like '90s', '15m', '4h', '7d' or '4w', got {value!r}")


@functools.lru_cache(maxsize=1024)
def _duration_of_text(value: str) -> float | None:
    # a 1,000-drill catalogue spells a few durations 1,500 times; each DAG-file parse validates them all
    match = _DURATION_RE.match(value)
    if match and any(match.groups()):
        w, d, h, m, s = match.groups()
        return (
            int(w or 0) * 7 * 86400
            + int(d or 0) * 86400
            + int(h or 0) * 3600
            + int(m or 0) * 60
            + float(s or 0)
        )
    return None


def format_duration(seconds: float | None) -> str:
    """Render seconds for humans: ``4m 12s``, ``2h 05m``, ``3d 4h``."""
    if seconds is None:
        return "n/a"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 60:
        return f"{sign}{s:.1f}s"
    if s < 3600:
        return f"{sign}{int(s // 60)}m {int(s % 60):02d}s"
    if s < 86400:
        return f"{sign}{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    return f"{sign}{int(s // 86400)}d {int(s % 86400 // 3600)}h"


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]

PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",  # Airflow's preset; croniter itself does not know it
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def cron_of(schedule: str) -> str:
    """Return the cron expression for a schedule string (presets expanded)."""
    return PRESETS.get(schedule.strip(), schedule.strip())


@functools.lru_cache(maxsize=1024)
def _cron_is_valid(value: str) -> bool:
    # croniter expands every field to check it (0.3 ms a drill); a 1,000-drill catalogue repeats a few schedules
    from croniter import croniter

    return bool(croniter.is_valid(value))


def validate_schedule(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a cron expression or one of {sorted(PRESETS)}, got {value!r}")
    value = value.strip()
    if value.startswith("@"):
        if value not in PRESETS:
            raise ValueError(f"unknown schedule preset {value!r}; expected one of {sorted(PRESETS)}")
        return value
    if len(value.split()) != 5 or not _cron_is_valid(value):
        raise ValueError(f"invalid cron expression {value!r}: expected 5 fields like '0 3 * * *'")
    return value


Schedule = Annotated[str, BeforeValidator(validate_schedule)]


def validate_since(value: object) -> str:
    """``since``: when a drill came into force, as a date (``2026-11-15``) or a time (``2026-11-15T09:00:00Z``).

    Kept as ISO text (a YAML date or timestamp is read back to it); ``in_force_since`` turns it into UTC.
    """
    from datetime import date

    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and value.strip():
        text = value.strip()
        for parse in (date.fromisoformat, datetime.fromisoformat):
            try:
                return parse(text).isoformat()
            except ValueError:
                continue
    raise ValueError(
        "expected the date or time the drill came into force, like '2026-11-15' or '2026-11-15T09:00:00Z', "
        f"got {value!r}"
    )


Since = Annotated[str, BeforeValidator(validate_since)]


def in_force_since(since: str | None, timezone: str) -> datetime | None:
    """``since`` as a UTC time: a date is its midnight, and a time without an offset is read, in ``timezone``
    (the catalogue's, like schedules)."""
    if since is None:
        return None
    from zoneinfo import ZoneInfo

    moment = datetime.fromisoformat(since)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.astimezone(UTC)


def schedule_interval_seconds(schedule: str, *, now: datetime | None = None) -> float:
    """The longest gap between two consecutive runs of ``schedule`` over the next cycle."""
    from croniter import croniter

    start = now or datetime(2026, 1, 1, tzinfo=UTC)
    it = croniter(cron_of(schedule), start)
    times = [it.get_next(datetime) for _ in range(64)]
    return max((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))


def previous_run(schedule: str, before: datetime) -> datetime:
    """The latest scheduled time at or before ``before`` (UTC)."""
    from croniter import croniter

    return croniter(cron_of(schedule), before + timedelta(seconds=1)).get_prev(datetime)


_CONTROL_RE = re.compile(r"^[A-Z][A-Z0-9]*:[A-Za-z0-9.()\-_]+$")


@functools.lru_cache(maxsize=4096)
def _is_control(value: str) -> bool:
    return _CONTROL_RE.match(value) is not None


def validate_control(value: str) -> str:
    if not isinstance(value, str) or not _is_control(value):
        raise ValueError(f"expected a control id like 'SOC2:A1.2' or 'NIST:CP-9(1)', got {value!r}")
    return value


ControlId = Annotated[str, BeforeValidator(validate_control)]

_CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def validate_conn_id(value: str) -> str:
    if not isinstance(value, str) or not _CONN_ID_RE.match(value):
        raise ValueError(f"expected a connection id like 'drillbook_source', got {value!r}")
    return value


ConnId = Annotated[str, BeforeValidator(validate_conn_id)]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NotifySpec(StrictModel):
    """Per-drill routing overrides for Slack reports.

    FAIL and ERROR always page (principle 1: ERROR pages exactly like FAIL);
    ``on`` may only ADD verdicts (PASS, SKIPPED). An ``on`` that names one of
    FAIL/ERROR without the other is refused, because it reads as "page on FAIL
    only" and would silence ERROR. Only ``enabled: false`` silences the drill's
    own reports (the watchdog still pages about it).
    """

    channel: str | None = None  # on-call channel override
    mention: str | None = None  # e.g. "<!subteam^S0123>"
    on: list[str] = Field(default_factory=lambda: ["FAIL", "ERROR"])
    enabled: bool = True

    @field_validator("on")
    @classmethod
    def _verdicts(cls, value: list[str]) -> list[str]:
        allowed = {"PASS", "FAIL", "ERROR", "SKIPPED"}
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"unknown verdicts {bad}; expected some of {sorted(allowed)}")
        paging = {"FAIL", "ERROR"} & set(value)
        if len(paging) == 1:
            named, missing = sorted(paging)[0], sorted({"FAIL", "ERROR"} - paging)[0]
            raise ValueError(
                f"notify.on {value} names {named!r} without {missing!r}: FAIL and ERROR always page on-call together "
                f"(an ERROR is a check that could not run); list both 'FAIL' and 'ERROR', or leave them out and use "
                f"'on' only to add PASS/SKIPPED, or set 'enabled: false' to silence the drill's reports"
            )
        return value


class NegativeSpec(StrictModel):
    """A scheduled negative drill: once per ``every``, prove the detector turns red on broken input."""

    every: Duration = Field(ge=86400.0)  # at least a day: it pages on-call (labelled as expected)


class DrillBase(StrictModel):
    """Fields every drill carries, whatever its kind."""

    kind: str  # each kind's model narrows this to Literal["<its name>"] (the catalogue's discriminator)
    name: str
    description: str = ""
    schedule: Schedule
    owner: str | None = None
    controls: list[ControlId] = Field(default_factory=list)
    enabled: bool = True
    max_unverified: Duration | None = None
    notify: NotifySpec = Field(default_factory=NotifySpec)
    retries: int | None = Field(default=None, ge=0, le=10)
    negative: NegativeSpec | None = None  # drillbook.drills.negative
    # In force since (drillbook.evidence.population): no occurrence is expected before it, none is missed
    since: Since | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                f"expected a lower-case name of letters, digits and '_' starting with a letter "
                f"(it becomes part of a DAG id and a database name), got {value!r}"
            )
        return value


def resolve_relative(raw: str, base_dir: Path | None) -> Path:
    """Resolve a path written in the catalogue: relative to the catalogue's directory.

    One rule for every path in a catalogue (backup locations, certificate files, CA
    bundles, references): a worker's working directory is arbitrary, so it is never
    searched. Without a catalogue (an ad hoc CLI argument) the working directory is
    the base, as a shell user expects. Normalisation is lexical: ``resolve()`` would
    follow a mounted secret's ``..data`` symlinks.
    """
    path = Path(raw).expanduser()
    if path.is_absolute():
        return path
    return Path(os.path.normpath((base_dir if base_dir is not None else Path.cwd()) / path))
