"""The population of the controls, matched in SQL: counts and the newest exceptions per drill series.

``drillbook.evidence.population.match`` is the reference: it walks every occurrence and every run in
Python, which is right for the evidence pack (it lists every occurrence) but costs ~0.7 s a page on a
month of hourly drills. This module gives the same numbers with the same rules, for the pages and the
digest: one tally per series from the one statement (``population_tally``, where the matching rules
are), the finished days from this process's cache when asked (``population_cache``), and the
per-control rows and the digest's missed counts built from those tallies.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from drillbook.evidence.controls import STATUS_ORDER, ControlException, ControlRow
from drillbook.evidence.population import occurrence_times, series_of
from drillbook.evidence.population_cache import CUT_BACK_HOURS, default_cut, split_tallies
from drillbook.evidence.population_tally import SeriesTally, tally_period

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue

NEWEST = 20  # exceptions listed per control on a page (the page says how many more there are)


def series_tallies(
    conn: Any,
    catalogue: Catalogue,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime | None = None,
    control: str | None = None,
    newest: int = NEWEST,
    cached: bool = False,
    cut: datetime | None = None,
) -> list[SeriesTally]:
    """One tally per series of the drills mapped to ``control`` (all: None), in ``series_of`` order.

    The digest's ``missed_by_drill`` is ``{t.series.drill: t.missed}`` over the non-negative series.

    ``cached`` (the api-server's pages): the period is split at ``cut`` (default ``default_cut``:
    today's UTC midnight once yesterday's due times are past their grace) and the tallies of the
    finished part [start, cut) are kept in this process, keyed like ``web.queries``' day cache by
    the database and the first record at ``start`` and at ``cut`` (appended rows do not invalidate
    it; rows cut or added at those edges do); only [cut, end) is read per request, and the halves
    are merged exactly. While a run has rows on both sides of the cut, the cut is moved back (1, 2, 3,
    6 hours); when every one is spanned, the period is read whole, uncached.
    """
    as_of = as_of or datetime.now(UTC)
    every = series_of(catalogue, control=control)
    if not every:
        return []
    tz, grace = catalogue.defaults.timezone, float(catalogue.defaults.watchdog.grace)
    lists: dict[tuple[str, float | None, datetime | None], list[datetime]] = {}
    for s in every:
        key = (s.schedule, s.every, s.since)
        if key not in lists:
            lists[key] = list(occurrence_times(s, start=start, end=end, timezone=tz))
    dues_of = [lists[(s.schedule, s.every, s.since)] for s in every]
    if cached and cut is None:
        cut = default_cut(start=start, end=end, as_of=as_of, grace=grace)
    if cut is None or not (start < cut <= end) or cut + timedelta(seconds=grace) > as_of:
        return tally_period(
            conn, every, dues_of, start=start, end=end, as_of=as_of, grace=grace, newest=newest
        )
    cuts = [c for c in (cut - timedelta(hours=h) for h in CUT_BACK_HOURS) if start < c]
    from psycopg.pq import TransactionStatus

    from drillbook.ledger.schema import TABLE

    # one snapshot for the edges, the straddle check and the tail: a run's row committed between them
    # could otherwise be missed by the check and counted by the tail
    fresh = conn.info.transaction_status == TransactionStatus.IDLE
    with conn.transaction():
        if fresh:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return split_tallies(
            conn,
            every,
            lists,
            dues_of,
            start=start,
            end=end,
            cuts=cuts,
            as_of=as_of,
            tz=tz,
            grace=grace,
            newest=newest,
            table=TABLE,
        )


def control_rows_sql(
    conn: Any,
    catalogue: Catalogue,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime | None = None,
    unverifiable: str | None = None,
    only: str | None = None,
    newest: int = NEWEST,
    cached: bool = False,
) -> list[ControlRow]:
    """``drillbook.evidence.controls.control_rows`` from ``series_tallies``: the same rows and status, except
    that ``exceptions`` holds only the newest ``newest`` per control (``missed + failed`` is the total).
    ``cached``: finished days from this process's cache (``series_tallies``), as the pages do."""
    tallies = series_tallies(
        conn, catalogue, start=start, end=end, as_of=as_of, control=only, newest=newest, cached=cached
    )
    every = [t.series for t in tallies]
    controls = sorted({c for s in every for c in s.controls if only is None or c == only})
    rows = {
        c: ControlRow(
            control=c, drills=sorted({s.label for s in every if c in s.controls}), unverifiable=unverifiable
        )
        for c in controls
    }
    listed: dict[str, list[tuple[tuple[Any, ...], ControlException]]] = {c: [] for c in controls}
    newest_key: dict[str, tuple[Any, ...]] = {}
    for idx, t in enumerate(tallies):  # series order is the reference's processing order
        for control in t.series.controls:
            row = rows.get(control)
            if row is None:
                continue
            row.expected += t.expected
            row.covered += t.covered
            row.missed += t.missed
            row.runs += t.runs
            row.passes += t.passes
            row.failed += t.failed
            listed[control] += [((at, stray, idx, first), e) for (at, stray, first), e in t.exceptions]
            if t.newest is not None:
                # the reference keeps the last run processed among equal times: runs in occurrences
                # series by series, then the strays series by series
                key = (t.newest.last_at, t.newest_stray, idx, t.newest.first_at, t.newest.first_seq)
                if control not in newest_key or key >= newest_key[control]:
                    newest_key[control], row.newest = key, t.newest
                row.newest_by_drill[(t.series.drill, t.series.kind)] = t.newest
    for control, row in rows.items():
        ordered = sorted(listed[control], key=lambda item: item[0])
        row.exceptions = [e for _k, e in ordered[max(0, len(ordered) - newest) :]]
    return sorted(rows.values(), key=lambda r: (STATUS_ORDER[r.status], r.control))


def missed_by_drill_sql(
    conn: Any, catalogue: Catalogue, *, start: datetime, end: datetime, as_of: datetime
) -> dict[str, int]:
    """``population.missed_by_drill`` (MISSED per drill, its own schedule only) from one SQL statement."""
    return {
        t.series.drill: t.missed
        for t in series_tallies(conn, catalogue, start=start, end=end, as_of=as_of, newest=0)
        if t.series.kind != "negative" and t.missed
    }


__all__ = ["NEWEST", "control_rows_sql", "missed_by_drill_sql", "series_tallies"]
