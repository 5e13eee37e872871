"""The population of a control: every EXPECTED occurrence of each drill in a period, matched to its runs.

Rules this module enforces:
- occurrences come from the drill's catalogue schedule, read in the catalogue's
  timezone the way Airflow's cron timetable reads it (``airflow.timetables._cron``):
  a schedule that does not fire every hour steps in wall-clock time, so a
  ``30 2 * * *`` drill fires once on a spring-forward day (at 03:00, the first
  existing minute) and once on a fall-back day (the first 02:30); a schedule
  that fires every hour steps in elapsed time, so ``0 * * * *`` fires 23 times
  on a spring-forward day and 25 times on a fall-back day. A duration schedule
  (a drill's ``negative: {every: 4w}``) fires at the period start and then
  every ``every``;
- a drill with ``since`` (in force since, ``drillbook.catalogue.common.in_force_since``)
  has no occurrence before it: a drill added to the catalogue inside a period is
  expected from its ``since``, not from the period start, and a duration schedule
  then fires at ``since`` first. A run before ``since`` counts as a run, like a
  run before the period's first due time;
- an occurrence is due at its scheduled time; its window is [due, next due),
  the last one clipped to the period end. A run (one ``(dag_id, run_id)``, its
  verdict the worst of its rows, as in ``drillbook.reporting.drill_history.runs_of``) counts
  for the window its first record falls in; several runs in one window all
  count as runs, and the occurrence's outcome is the NEWEST run's verdict. A
  run before the period's first due time belongs to the previous period's
  occurrence: it counts as a run (and as an exception when it failed) but
  covers no occurrence of this period;
- an occurrence with no run is MISSED once its due time plus the watchdog's
  grace (``defaults.watchdog.grace``, the lateness rule of ``drillbook.reporting.assessment``)
  is past ``as_of``; before that it is PENDING and counted nowhere;
- the ledger is read as one SQL aggregate per run (``GROUP BY dag_id, run_id``)
  streamed through a server-side cursor ordered by drill and time, merged with
  the occurrences as they are generated: memory holds one run and one
  occurrence at a time, never the period's records;
- the number of occurrences per drill and period is bounded (``MAX_OCCURRENCES``);
  a schedule that fires more often over the period is refused with its name.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drillbook import verdict_order
from drillbook.catalogue.common import cron_of, in_force_since
from drillbook.errors import ConfigurationError

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue

MAX_OCCURRENCES = (
    200_000  # a minutely cron over four months; a control's period is rarely more than a year of hourly runs
)
MISSED, PENDING = "MISSED", "PENDING"


@dataclass(frozen=True)
class Series:
    """One scheduled thing that leaves 'drill' rows: a catalogue drill, or its negative drill."""

    drill: str
    kind: str
    schedule: str  # as written in the catalogue (cron or preset), or a duration in seconds for ``every``
    controls: tuple[str, ...]
    every: float | None = None  # seconds, for a duration schedule
    since: datetime | None = None  # in force since (UTC): nothing is expected before it

    @property
    def label(self) -> str:
        return f"{self.drill} (negative)" if self.kind == "negative" else self.drill


@dataclass(frozen=True)
class Run:
    """One run of a drill: its rows' first and last time, worst verdict, and seq range."""

    drill: str
    kind: str
    dag_id: str
    run_id: str
    first_at: datetime
    last_at: datetime
    verdict: str
    rows: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class Occurrence:
    """One expected occurrence and what happened in its window."""

    series: Series
    due: datetime
    window_end: datetime
    outcome: str  # PASS, FAIL, ERROR, SKIPPED (the newest run's verdict), MISSED or PENDING
    runs: tuple[Run, ...] = ()

    @property
    def newest(self) -> Run | None:
        return self.runs[-1] if self.runs else None


def series_of(catalogue: Catalogue, *, control: str | None = None) -> list[Series]:
    """Every enabled drill (and its negative drill) in the catalogue, optionally only those mapped to ``control``."""
    found: list[Series] = []
    for drill in catalogue.drills:
        if not drill.enabled or (control is not None and control not in drill.controls):
            continue
        since = in_force_since(drill.since, catalogue.defaults.timezone)
        found.append(
            Series(
                drill=drill.name,
                kind=drill.kind,
                schedule=drill.schedule,
                controls=tuple(drill.controls),
                since=since,
            )
        )
        if drill.negative is not None:
            found.append(
                Series(
                    drill=drill.name,
                    kind="negative",
                    schedule=f"every {drill.negative.every:.0f}s",
                    controls=tuple(drill.controls),
                    every=float(drill.negative.every),
                    since=since,
                )
            )
    return sorted(found, key=lambda s: (s.drill, s.kind))


def _cron_times(schedule: str, *, start: datetime, end: datetime, timezone: str) -> Iterator[datetime]:
    """Scheduled times in [start, end) as UTC, stepping like Airflow's cron timetable (see the module docstring)."""
    from croniter import croniter

    expr = cron_of(schedule)
    tz = ZoneInfo(timezone)
    every_hour = croniter(expr).expanded[1] == ["*"]
    current = start.astimezone(UTC) - timedelta(microseconds=1)
    it: Any = None
    last: datetime | None = None  # the naive time ``it`` stands at
    for _ in range(MAX_OCCURRENCES + 1):
        naive = current.astimezone(tz).replace(tzinfo=None)
        if (
            naive != last
        ):  # the first step, or a DST change moved the wall clock: start from it, as Airflow does
            it = croniter(expr, start_time=naive)
        scheduled = it.get_next(datetime)
        last = scheduled
        if every_hour:
            moment = current + (
                scheduled - naive
            )  # elapsed time: the repeated (or skipped) hour counts as it is
        else:
            moment = scheduled.replace(tzinfo=tz).astimezone(
                UTC
            )  # wall clock; fold=0: the first of a doubled time
            if (
                moment <= current
            ):  # a wall-clock time inside the repeated hour, already passed: take the next one
                scheduled = it.get_next(datetime)
                last = scheduled
                moment = scheduled.replace(tzinfo=tz).astimezone(UTC)
        if moment >= end:
            return
        yield moment
        current = moment
    raise ConfigurationError(
        f"schedule {schedule!r} fires more than {MAX_OCCURRENCES} times between "
        f"{start:%Y-%m-%d} and {end:%Y-%m-%d}; choose a shorter period"
    )


_CACHE: OrderedDict[tuple[str, datetime, datetime, str], tuple[datetime, ...]] = OrderedDict()
_CACHE_ENTRIES, _CACHE_LARGEST = 16, 50_000  # at most ~45 MB, in a long-running api-server too
_CACHE_LOCK = threading.Lock()  # the api-server's pages run in a thread pool: evict and read under one lock


def _cron_times_cached(schedule: str, start: datetime, end: datetime, timezone: str) -> tuple[datetime, ...]:
    # croniter costs ~0.2 ms a step; drills sharing a schedule (and the pack, which reads the controls
    # view and then the population) compute it once per period. Only lists up to _CACHE_LARGEST are kept.
    key = (schedule, start, end, timezone)
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is not None:
            _CACHE.move_to_end(key)
            return found
    times = tuple(_cron_times(schedule, start=start, end=end, timezone=timezone))
    if len(times) <= _CACHE_LARGEST:
        with _CACHE_LOCK:
            _CACHE[key] = times
            while len(_CACHE) > _CACHE_ENTRIES:
                _CACHE.popitem(last=False)
    return times


def occurrence_times(series: Series, *, start: datetime, end: datetime, timezone: str) -> Iterator[datetime]:
    """The due times of ``series`` in [start, end), UTC, oldest first; none before the series is in force."""
    if series.since is not None and series.since > start:
        start = series.since
    if series.every is None:
        yield from _cron_times_cached(series.schedule, start, end, timezone)
        return
    step = timedelta(seconds=series.every)
    moment = start
    for _ in range(MAX_OCCURRENCES):
        if moment >= end:
            return
        yield moment
        moment += step
    raise ConfigurationError(
        f"{series.label}: every {series.every:.0f}s fires more than {MAX_OCCURRENCES} times "
        f"between {start:%Y-%m-%d} and {end:%Y-%m-%d}; choose a shorter period"
    )


def count_occurrences(schedule: str, *, start: datetime, end: datetime, timezone: str = "UTC") -> int:
    """How many times a cron ``schedule`` fires in [start, end) (the digest's and the controls' one rule)."""
    return len(_cron_times_cached(schedule, start, end, timezone))


# -- reading runs ------------------------------------------------------------------------------------
_RUNS_SQL = """
SELECT drill, kind, dag_id, run_id, min(recorded_at) AS first_at, max(recorded_at) AS last_at,
       max({rank}) AS rank,
       count(*) AS n, min(seq) AS first_seq, max(seq) AS last_seq
FROM {table}
WHERE record_type = 'drill' AND recorded_at >= %s AND recorded_at < %s AND drill = ANY(%s)
GROUP BY drill, kind, dag_id, run_id
ORDER BY drill COLLATE "C", kind COLLATE "C", first_at, first_seq
"""


def stream_runs(
    conn: Any, *, drills: list[str], start: datetime, end: datetime, batch: int = 2000
) -> Iterator[Run]:
    """Runs of ``drills`` whose first record is in [start, end), one aggregate row each, ordered by drill, kind, time."""
    from psycopg.rows import tuple_row

    from drillbook.ledger.schema import TABLE

    with conn.transaction(), conn.cursor(name="drillbook_population_runs", row_factory=tuple_row) as cur:
        cur.itersize = batch
        cur.execute(_RUNS_SQL.format(table=TABLE, rank=verdict_order.RANK_SQL), (start, end, drills))
        for drill, kind, *run in cur:
            yield run_of(drill, kind, *run)


def run_of(
    drill: str,
    kind: str,
    dag_id: str,
    run_id: str,
    first_at: datetime,
    last_at: datetime,
    rank: int,
    rows: int,
    first_seq: int,
    last_seq: int,
) -> Run:
    """A run from the columns the runs statements return (its verdict from the worst rank of its rows)."""
    return Run(
        drill=drill,
        kind=kind,
        dag_id=dag_id,
        run_id=run_id,
        first_at=first_at,
        last_at=last_at,
        verdict=verdict_order.verdict_of_rank(rank),
        rows=int(rows),
        first_seq=int(first_seq),
        last_seq=int(last_seq),
    )


# -- matching ---------------------------------------------------------------------------------------
@dataclass
class SeriesStray:
    """Runs of a series before its first due time in the period: they count as runs but cover nothing."""

    series: Series
    runs: list[Run]


def match(
    series: Series,
    runs: Iterable[Run],
    *,
    start: datetime,
    end: datetime,
    as_of: datetime,
    grace: float,
    timezone: str,
    strays: list[Run] | None = None,
) -> Iterator[Occurrence]:
    """Walk the occurrences of ``series`` and its runs (oldest first) together; see the module docstring."""
    times = occurrence_times(series, start=start, end=end, timezone=timezone)
    run_iter = iter(runs)
    pending_run = next(run_iter, None)
    due = next(times, None)
    while pending_run is not None and (due is None or pending_run.first_at < due):
        if strays is not None:
            strays.append(pending_run)  # before the first due time: the previous period's occurrence
        pending_run = next(run_iter, None)
    late = timedelta(seconds=grace)
    while due is not None:
        following = next(times, None)
        window_end = following if following is not None else end
        found: list[Run] = []
        while pending_run is not None and pending_run.first_at < window_end:
            found.append(pending_run)
            pending_run = next(run_iter, None)
        if found:
            outcome = found[-1].verdict
        else:
            outcome = PENDING if due + late > as_of else MISSED
        yield Occurrence(series=series, due=due, window_end=window_end, outcome=outcome, runs=tuple(found))
        due = following


def population(
    conn: Any,
    catalogue: Catalogue,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime | None = None,
    control: str | None = None,
    strays: list[Run] | None = None,
) -> Iterator[Occurrence]:
    """Every expected occurrence in [start, end) of the drills mapped to ``control`` (all drills: None), streamed."""
    as_of = as_of or datetime.now(UTC)
    every = series_of(catalogue, control=control)
    if not every:
        return
    tz, grace = catalogue.defaults.timezone, catalogue.defaults.watchdog.grace
    stream = stream_runs(conn, drills=sorted({s.drill for s in every}), start=start, end=end)
    head = next(stream, None)
    for series in every:
        key = (series.drill, series.kind)

        def its_runs(key: tuple[str, str] = key) -> Iterator[Run]:
            nonlocal head
            while head is not None and (head.drill, head.kind) <= key:
                run, head = head, next(stream, None)
                if (run.drill, run.kind) == key:
                    yield run

        yield from match(
            series, its_runs(), start=start, end=end, as_of=as_of, grace=grace, timezone=tz, strays=strays
        )
    for _ in stream:  # drain: the server-side cursor closes with its transaction
        pass


def missed_by_drill(
    conn: Any, catalogue: Catalogue, *, start: datetime, end: datetime, as_of: datetime
) -> dict[str, int]:
    """MISSED occurrences per drill (its own schedule, not its negative drill) in [start, end): the digest's count."""
    missed: dict[str, int] = {}
    for occ in population(conn, catalogue, start=start, end=end, as_of=as_of):
        if occ.series.kind != "negative" and occ.outcome == MISSED:
            missed[occ.series.drill] = missed.get(occ.series.drill, 0) + 1
    return missed
