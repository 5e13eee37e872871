"""The finished days of a period, tallied once per process and merged exactly with the fresh tail.

The pages ask for the same month again and again, and only its last day changes: the tallies of
[start, cut) are kept in an LRU keyed by the database, the series and the first record at ``start``
and at ``cut`` (appended rows do not invalidate an entry; rows cut or added at those edges do), and
merged with those of [cut, end) so that the answer equals the one statement over the whole period.
A cut that a run spans would count that run twice, so it is moved back, or the period is read whole.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from drillbook.evidence.population import MISSED, Series
from drillbook.evidence.population_tally import SeriesTally, tally_period

#: (database, series, timezone, grace, start, cut, newest, first record at start and at cut) -> the
#: tallies of [start, cut); LRU, each entry at most series x (newest + 1) exceptions
_HEADS: OrderedDict[tuple[Any, ...], list[SeriesTally]] = OrderedDict()
_HEADS_MAX = 32
_HEADS_LOCK = threading.Lock()  # the api-server runs sync pages in a thread pool
_SETTLED = timedelta(hours=1)  # rows recorded before now - 1 h are all committed (as web.queries' day cache)
#: where the split is tried: the cut, then earlier, while a run has rows on both sides of it
CUT_BACK_HOURS = (0, 1, 2, 3, 6)
#: how many times the head was read from the cache / computed / not usable (a run across the cut); for tests
CACHE_STATS = {"hit": 0, "miss": 0, "straddle": 0}

_EDGES_SQL = """
SELECT (SELECT ARRAY[seq::text, hash] FROM {table} WHERE recorded_at >= %(start)s
        ORDER BY recorded_at, seq LIMIT 1),
       (SELECT ARRAY[seq::text, hash] FROM {table} WHERE recorded_at >= %(cut)s
        ORDER BY recorded_at, seq LIMIT 1),
       EXISTS (  -- a run with rows on both sides of the cut: the split would count it twice
           SELECT 1
           FROM (SELECT DISTINCT dag_id, run_id, drill, kind FROM {table}
                 WHERE record_type = 'drill' AND recorded_at >= %(cut)s AND recorded_at < %(end)s
                   AND drill = ANY(%(drills)s)) r
           WHERE EXISTS (SELECT 1 FROM {table} e
                         WHERE e.record_type = 'drill' AND e.dag_id = r.dag_id AND e.run_id = r.run_id
                           AND e.drill = r.drill AND e.kind = r.kind
                           AND e.recorded_at >= %(start)s AND e.recorded_at < %(cut)s))
"""


def default_cut(*, start: datetime, end: datetime, as_of: datetime, grace: float) -> datetime | None:
    """The UTC day edge the finished part ends at: every due time before it is past its grace at ``as_of``
    and its rows were committed an hour ago; None when no whole finished day is in the period."""
    latest = min(as_of - timedelta(seconds=grace), datetime.now(UTC) - _SETTLED, end).astimezone(UTC)
    cut = latest.replace(hour=0, minute=0, second=0, microsecond=0)
    return cut if start < cut else None


def _merge(
    head: SeriesTally, tail: SeriesTally, *, k: int, shared: datetime | None, newest: int
) -> SeriesTally:
    """One series' tally of [start, end) from that of [start, cut) and [cut, end).

    The head had the first ``k`` due times, the tail the due times from the ``k``-th on (all of them
    when ``k`` is 0): the ``k``-th, ``shared``, is the occurrence the cut falls in, the head's last
    bucket and the tail's first. It is covered when either half has a run in it, and MISSED only when
    neither has; each half counted it MISSED when it had none. Both halves list ``newest + 1``
    exceptions, so dropping one entry of that due time still leaves the newest ``newest``."""
    out = SeriesTally(series=head.series)
    out.runs, out.passes, out.failed = (
        head.runs + tail.runs,
        head.passes + tail.passes,
        head.failed + tail.failed,
    )
    out.covered, out.missed = head.covered + tail.covered, head.missed + tail.missed
    listed = head.exceptions + tail.exceptions
    if k >= 1:
        h_cov, t_cov = head.top == k, tail.low == 1
        if h_cov and t_cov:
            out.covered -= 1
        else:
            out.missed -= 1
        # the shared due time is listed MISSED by both halves (missed: keep one) or by the one that has no
        # run in it (covered by the other: keep none), or by neither (both have runs): drop one entry
        drop = 1
        kept = []
        for key, e in listed:
            if drop and e.what == MISSED and e.at == shared:
                drop = 0
                continue
            kept.append((key, e))
        listed = kept
    listed.sort(key=lambda item: item[0])
    out.exceptions = listed[max(0, len(listed) - newest) :]
    candidates = [(t.newest, t.newest_stray) for t in (head, tail) if t.newest is not None]
    if candidates:  # the tie-break of the statement's ``newest``: last end, a stray, last start, last seq
        out.newest, out.newest_stray = max(
            candidates, key=lambda c: (c[0].last_at, c[1], c[0].first_at, c[0].first_seq)
        )
    return out


def split_tallies(
    conn: Any,
    every: list[Series],
    lists: dict[tuple[str, float | None, datetime | None], list[datetime]],
    dues_of: list[list[datetime]],
    *,
    start: datetime,
    end: datetime,
    cuts: list[datetime],
    as_of: datetime,
    tz: str,
    grace: float,
    newest: int,
    table: str,
) -> list[SeriesTally]:
    """Tally [start, cut) from the cache (computed and kept on a miss) and [cut, end) fresh, then merge them.

    The cut is the first of ``cuts`` that no run spans; when every one is spanned, the period is read whole."""
    from psycopg.rows import tuple_row

    for cut in cuts:  # the first cut no run spans (a nightly drill running across midnight: an hour earlier)
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                _EDGES_SQL.replace("{table}", table),
                {"start": start, "cut": cut, "end": end, "drills": sorted({s.drill for s in every})},
            )
            at_start, at_cut, straddle = cur.fetchone()
        if not straddle:
            break
    else:
        with _HEADS_LOCK:
            CACHE_STATS["straddle"] += 1
        return tally_period(
            conn, every, dues_of, start=start, end=end, as_of=as_of, grace=grace, newest=newest
        )
    ks = {key: bisect_right(times, cut) for key, times in lists.items()}  # due times <= cut: the head's
    head_lists = {key: times[: ks[key]] for key, times in lists.items()}
    tail_lists = {key: times[max(ks[key], 1) - 1 :] for key, times in lists.items()}
    info = conn.info
    cache_key = (
        (info.host, info.port, info.dbname),
        tuple((s.drill, s.kind, s.schedule, s.every, s.since, s.controls) for s in every),
        tz,
        grace,
        start,
        cut,
        newest,
        tuple(at_start or ()),
        tuple(at_cut or ()),
    )
    with _HEADS_LOCK:
        heads = _HEADS.get(cache_key)
        if heads is not None:
            _HEADS.move_to_end(cache_key)
        CACHE_STATS["hit" if heads is not None else "miss"] += 1
    if heads is None:
        heads = tally_period(  # every head due time is matured: as_of is past cut + grace
            conn,
            every,
            [head_lists[(s.schedule, s.every, s.since)] for s in every],
            start=start,
            end=cut,
            as_of=cut + timedelta(seconds=grace),
            grace=grace,
            newest=newest + 1,
        )
        with _HEADS_LOCK:
            _HEADS[cache_key] = heads
            while len(_HEADS) > _HEADS_MAX:
                _HEADS.popitem(last=False)
    tails = tally_period(
        conn,
        every,
        [tail_lists[(s.schedule, s.every, s.since)] for s in every],
        start=cut,
        end=end,
        as_of=as_of,
        grace=grace,
        newest=newest + 1,
    )
    out = []
    for s, head, tail in zip(every, heads, tails, strict=True):
        key = (s.schedule, s.every, s.since)
        k = ks[key]
        out.append(_merge(head, tail, k=k, shared=lists[key][k - 1] if k else None, newest=newest))
    return out
