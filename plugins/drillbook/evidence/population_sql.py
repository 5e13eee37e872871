"""The population of the controls, matched in SQL: counts and the newest exceptions per drill series.

``drillbook.evidence.population.match`` is the reference: it walks every occurrence and every run in
Python, which is right for the evidence pack (it lists every occurrence) but costs ~0.7 s a page on a
month of hourly drills. This module gives the same numbers with the same rules, for the pages and the
digest:

- Python computes each distinct schedule's due times once (``occurrence_times``: cron in the
  catalogue's timezone, DST as Airflow steps it; cached per period) and sends them as one array;
- SQL groups the period's 'drill' rows into runs exactly like ``stream_runs`` (one ``(dag_id,
  run_id)``, worst verdict, first/last time and seq), joins each run to its series by (drill, kind) and
  puts it in its occurrence window with ``width_bucket(first_at, dues)``: bucket i is [due_i,
  due_i+1), bucket 0 is before the first due time (a stray: a run of the previous period's
  occurrence, counted as a run, covering nothing);
- an occurrence is covered when its bucket holds a run; an uncovered one is MISSED once its due
  time plus the watchdog's grace is not after ``as_of``, else PENDING (counted nowhere). The
  matured occurrences are a prefix of the due times (``width_bucket(as_of - grace)``), so the
  missed ones are the gaps between consecutive covered buckets inside it: counted from the gaps'
  lengths, only the newest ``newest`` expanded into due times (no join of every occurrence
  against every run);
- per series SQL returns runs, passes, FAIL/ERROR runs, covered, missed, the newest run, and the
  newest ``newest`` exceptions (missed due times and FAIL/ERROR runs) with their total, so a page
  lists the latest ones and says how many there are; memory is bounded by series x ``newest``.

Ties (two runs with the same time) are broken the way the reference's processing order breaks
them, so ``tests/evidence/test_population_sql.py`` can hold both equal on varied ledgers.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from drillbook.evidence.controls import STATUS_ORDER, ControlException, ControlRow
from drillbook.evidence.population import MISSED, Run, Series, occurrence_times, run_of, series_of

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue

NEWEST = 20  # exceptions listed per control on a page (the page says how many more there are)

_SQL = """
WITH series AS (
    SELECT s.drill, s.kind, s.lo, s.hi, s.idx
    FROM unnest(%(drill)s::text[], %(kind)s::text[], %(lo)s::int[], %(hi)s::int[]) WITH ORDINALITY
         AS s(drill, kind, lo, hi, idx)
),
sdues AS MATERIALIZED (  -- each series' due times, and how many are past their grace (MISSED when uncovered)
    SELECT idx, drill, kind, d,
           width_bucket(%(as_of)s::timestamptz - make_interval(secs => %(grace)s), d) AS matured
    FROM (SELECT idx, drill, kind,
                 CASE WHEN hi >= lo THEN (%(dues)s::timestamptz[])[lo:hi] ELSE '{}'::timestamptz[] END AS d
          FROM series) x
),
runs AS (  -- rows of no series (another kind, a drill not in the catalogue) drop out in the join
    SELECT sd.idx, e.dag_id, e.run_id, min(e.recorded_at) AS first_at, max(e.recorded_at) AS last_at,
           max(CASE e.verdict WHEN 'ERROR' THEN 3 WHEN 'FAIL' THEN 2 WHEN 'SKIPPED' THEN 1 ELSE 0 END) AS rank,
           count(*) AS n, min(e.seq) AS first_seq, max(e.seq) AS last_seq
    FROM {table} e JOIN sdues sd ON sd.drill = e.drill AND sd.kind = e.kind
    WHERE e.record_type = 'drill' AND e.recorded_at >= %(start)s AND e.recorded_at < %(end)s
      AND e.drill = ANY(%(drills)s)
    GROUP BY sd.idx, e.dag_id, e.run_id
),
placed AS MATERIALIZED (
    SELECT r.idx, r.dag_id, r.run_id, r.first_at, r.last_at, r.rank, r.n, r.first_seq, r.last_seq,
           width_bucket(r.first_at, sd.d) AS bucket
    FROM runs r JOIN sdues sd USING (idx)
),
tally AS (
    SELECT idx, count(*) AS runs, count(*) FILTER (WHERE rank = 0) AS passes,
           count(*) FILTER (WHERE rank >= 2) AS failed, max(last_at) AS newest_at
    FROM placed GROUP BY idx
),
ordered AS MATERIALIZED (  -- each run with the bucket of the run before it (in bucket order) in its series
    SELECT idx, bucket, lag(bucket, 1, 0) OVER (PARTITION BY idx ORDER BY bucket) AS prev FROM placed
),
covered AS (  -- a bucket is covered once: count it where it first appears
    SELECT idx, count(*) FILTER (WHERE bucket > 0 AND bucket <> prev) AS covered, max(bucket) AS top,
           min(bucket) FILTER (WHERE bucket > 0) AS low
    FROM ordered GROUP BY idx
),
gaps AS (  -- runs of uncovered matured occurrences [g_lo, g_hi], found between consecutive covered buckets
    SELECT o.idx, o.prev + 1 AS g_lo, least(o.bucket - 1, sd.matured) AS g_hi
    FROM ordered o JOIN sdues sd USING (idx)
    WHERE o.bucket > 0 AND o.bucket <> o.prev AND o.prev + 1 <= least(o.bucket - 1, sd.matured)
    UNION ALL
    SELECT sd.idx, coalesce(c.top, 0) + 1, sd.matured
    FROM sdues sd LEFT JOIN covered c USING (idx)
    WHERE coalesce(c.top, 0) + 1 <= sd.matured
),
missed_count AS (SELECT idx, sum(g_hi - g_lo + 1) AS missed FROM gaps GROUP BY idx),
missed AS (  -- only the newest %(newest)s missed occurrences of each series are listed
    SELECT r.idx, sd.d[i] AS due
    FROM (SELECT idx, g_lo, g_hi,
                 sum(g_hi - g_lo + 1) OVER (PARTITION BY idx ORDER BY g_hi DESC) - (g_hi - g_lo + 1) AS newer
          FROM gaps) r
         JOIN sdues sd USING (idx),
         generate_series(greatest(r.g_lo, r.g_hi - (%(newest)s - r.newer) + 1), r.g_hi) AS i
    WHERE r.newer < %(newest)s
),
exc AS (
    SELECT idx, at, what, run_id, seq, stray, first_seq,
           row_number() OVER (PARTITION BY idx ORDER BY at DESC, stray DESC, first_seq DESC) AS rn
    FROM (SELECT idx, due AS at, 'MISSED' AS what, NULL::text AS run_id, NULL::bigint AS seq, false AS stray,
                 0::bigint AS first_seq
          FROM missed
          UNION ALL
          SELECT idx, first_at, CASE WHEN rank = 3 THEN 'ERROR' ELSE 'FAIL' END, run_id, last_seq, bucket = 0,
                 first_seq
          FROM placed WHERE rank >= 2) e
),
exc_agg AS (
    SELECT idx, array_agg(at ORDER BY rn DESC) AS e_at, array_agg(what ORDER BY rn DESC) AS e_what,
           array_agg(run_id ORDER BY rn DESC) AS e_run, array_agg(seq ORDER BY rn DESC) AS e_seq,
           array_agg(stray ORDER BY rn DESC) AS e_stray, array_agg(first_seq ORDER BY rn DESC) AS e_first_seq
    FROM exc WHERE rn <= %(newest)s GROUP BY idx
),
newest AS (  -- among the runs ending last (usually one), the one the reference processes last
    SELECT DISTINCT ON (p.idx) p.idx, p.dag_id, p.run_id, p.first_at, p.last_at, p.rank, p.n, p.first_seq,
           p.last_seq, p.bucket = 0 AS stray
    FROM placed p JOIN tally t ON t.idx = p.idx AND p.last_at = t.newest_at
    ORDER BY p.idx, (p.bucket = 0) DESC, p.first_at DESC, p.first_seq DESC
)
SELECT sd.idx, coalesce(t.runs, 0), coalesce(t.passes, 0), coalesce(t.failed, 0), coalesce(c.covered, 0),
       coalesce(m.missed, 0), e.e_at, e.e_what, e.e_run, e.e_seq, e.e_stray, e.e_first_seq,
       nw.dag_id, nw.run_id, nw.first_at, nw.last_at, nw.rank, nw.n, nw.first_seq, nw.last_seq, nw.stray,
       coalesce(c.top, 0), coalesce(c.low, 0)
FROM sdues sd LEFT JOIN tally t USING (idx) LEFT JOIN covered c USING (idx) LEFT JOIN missed_count m USING (idx)
     LEFT JOIN exc_agg e USING (idx) LEFT JOIN newest nw USING (idx)
ORDER BY sd.idx
"""


@dataclass
class SeriesTally:
    """What one series (a drill's schedule, or its negative drill's) did in the period."""

    series: Series
    runs: int = 0
    passes: int = 0
    failed: int = 0  # FAIL or ERROR runs
    covered: int = 0
    missed: int = 0
    newest: Run | None = None
    newest_stray: bool = False
    # the newest exceptions, oldest first, each with its tie-break key (at, stray, first_seq)
    exceptions: list[tuple[tuple[datetime, bool, int], ControlException]] = field(default_factory=list)
    top: int = 0  # the highest bucket holding a run (0: none, or strays only)
    low: int = 0  # the lowest covered bucket (0: none)

    @property
    def expected(self) -> int:
        return self.covered + self.missed

    @property
    def exception_total(self) -> int:
        return self.missed + self.failed


def _tallies(
    conn: Any,
    every: list[Series],
    dues_of: list[list[datetime]],
    *,
    start: datetime,
    end: datetime,
    as_of: datetime,
    grace: float,
    newest: int,
) -> list[SeriesTally]:
    """The statement over the rows of [start, end), each series with its due times ``dues_of[i]``."""
    from psycopg.rows import tuple_row

    from drillbook.ledger.schema import TABLE

    dues: list[datetime] = []
    slices: dict[int, tuple[int, int]] = {}  # series sharing a schedule share one list object
    lo: list[int] = []
    hi: list[int] = []
    for times in dues_of:
        if id(times) not in slices:
            slices[id(times)] = (len(dues) + 1, len(dues) + len(times))  # 1-based, inclusive; hi < lo: none
            dues.extend(times)
        lo.append(slices[id(times)][0])
        hi.append(slices[id(times)][1])
    params = {
        "drill": [s.drill for s in every],
        "kind": [s.kind for s in every],
        "lo": lo,
        "hi": hi,
        # one array literal: 0.6 ms of isoformat + 0.3 ms a query, against 2.4-4.4 ms for the driver's array dump
        "dues": "{" + ",".join(d.isoformat() for d in dues) + "}",
        "start": start,
        "end": end,
        "drills": sorted({s.drill for s in every}),
        "grace": float(grace),  # seconds: make_interval(secs) has no day part, so no DST in the sum
        "as_of": as_of,
        "newest": newest,
    }
    out = [SeriesTally(series=s) for s in every]
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(_SQL.replace("{table}", TABLE), params)
        for row in cur.fetchall():
            (idx, runs, passes, failed, covered, missed, e_at, e_what, e_run, e_seq, e_stray, e_first) = row[
                :12
            ]
            tally = out[int(idx) - 1]
            s = tally.series
            tally.runs, tally.passes, tally.failed = int(runs), int(passes), int(failed)
            tally.covered, tally.missed = int(covered), int(missed)
            for at, what, run_id, seq, stray, first_seq in zip(
                e_at or [], e_what or [], e_run or [], e_seq or [], e_stray or [], e_first or [], strict=True
            ):
                tally.exceptions.append(
                    (
                        (at, bool(stray), int(first_seq)),
                        ControlException(
                            at=at,
                            drill=s.drill,
                            kind=s.kind,
                            what=what,
                            run_id=run_id,
                            seq=int(seq) if seq is not None else None,
                        ),
                    )
                )
            dag_id, run_id, first_at, last_at, rank, n, first_seq, last_seq, stray = row[12:21]
            tally.top, tally.low = int(row[21]), int(row[22])
            if dag_id is not None:
                tally.newest = run_of(
                    s.drill, s.kind, dag_id, run_id, first_at, last_at, rank, n, first_seq, last_seq
                )
                tally.newest_stray = bool(stray)
    return out


# -- finished days, cached --------------------------------------------------------------------------
#: (database, series, timezone, grace, start, cut, newest, first record at start and at cut) -> the
#: tallies of [start, cut); LRU, each entry at most series x (newest + 1) exceptions
_HEADS: OrderedDict[tuple[Any, ...], list[SeriesTally]] = OrderedDict()
_HEADS_MAX = 32
_HEADS_LOCK = threading.Lock()  # the api-server runs sync pages in a thread pool
_SETTLED = timedelta(hours=1)  # rows recorded before now - 1 h are all committed (as web.queries' day cache)
#: where the split is tried: the cut, then earlier, while a run has rows on both sides of it
_CUT_BACK_HOURS = (0, 1, 2, 3, 6)
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
        return _tallies(conn, every, dues_of, start=start, end=end, as_of=as_of, grace=grace, newest=newest)
    cuts = [c for c in (cut - timedelta(hours=h) for h in _CUT_BACK_HOURS) if start < c]
    from psycopg.pq import TransactionStatus

    from drillbook.ledger.schema import TABLE

    # one snapshot for the edges, the straddle check and the tail: a run's row committed between them
    # could otherwise be missed by the check and counted by the tail
    fresh = conn.info.transaction_status == TransactionStatus.IDLE
    with conn.transaction():
        if fresh:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _split(
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


def _split(
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
        return _tallies(conn, every, dues_of, start=start, end=end, as_of=as_of, grace=grace, newest=newest)
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
        heads = _tallies(  # every head due time is matured: as_of is past cut + grace
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
    tails = _tallies(
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


__all__ = ["MISSED", "NEWEST", "SeriesTally", "control_rows_sql", "missed_by_drill_sql", "series_tallies"]
