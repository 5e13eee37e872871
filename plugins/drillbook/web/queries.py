"""What the evidence pages read from the ledger: one indexed, bounded query per page element.

Rules this module enforces:
- read only: nothing here writes, so a role with SELECT on the evidence and checkpoint
  tables is enough (the README's GRANT); every filter is a bound parameter;
- every answer is bounded by the page, not by the ledger: history pages by keyset
  (``seq < cursor ORDER BY seq DESC LIMIT n``, never OFFSET), charts aggregate per day or
  month in SQL over one drill and one window, and the list of drills is a loose index scan
  (one index probe per drill) instead of a ``DISTINCT`` over every row;
- the large ``result`` JSON is fetched only for one record; lists read plain columns.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from drillbook.ledger.query import Filter
from drillbook.ledger.schema import CHECKPOINT_TABLE, TABLE

PAGE_SIZE = 50
MAX_PAGE = 200
_LIST_COLUMNS = "seq, recorded_at, record_type, kind, drill, target, verdict, controls, dag_id, run_id"


def seq_bounds(conn: Any, *, since: datetime, until: datetime) -> tuple[int, int]:
    """The window [since, until) as a seq range [lo, hi): two probes of the recorded_at index.

    Valid because ``recorded_at`` never decreases along the chain (the seal stamps it under the chain
    lock and ``verify`` reports a decrease as ``backdated``); a range on the drill/seq indexes then
    replaces a scan of every drill's rows in the window.
    """
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT seq FROM {TABLE} WHERE recorded_at >= %s ORDER BY recorded_at, seq LIMIT 1", (since,)
        )
        lo = cur.fetchone()
        cur.execute(
            f"SELECT seq FROM {TABLE} WHERE recorded_at >= %s ORDER BY recorded_at, seq LIMIT 1", (until,)
        )
        hi = cur.fetchone()
        if hi is None:
            cur.execute(f"SELECT coalesce(max(seq), 0) + 1 AS seq FROM {TABLE}")
            hi = cur.fetchone()
    top = int(hi["seq"]) if hi else 1
    return (int(lo["seq"]) if lo else top), top


def history(
    conn: Any, flt: Filter, *, before: int | None = None, limit: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of records, newest first, older than ``before``; and the cursor of the next page (or None)."""
    where, params = flt.where()
    if before is not None:
        where += " AND seq < %s"
        params.append(before)
    params.append(limit + 1)
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_LIST_COLUMNS} FROM {TABLE} WHERE {where} ORDER BY seq DESC LIMIT %s", params)
        rows = cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["seq"] if more and rows else None)


def record(conn: Any, seq: int) -> dict[str, Any] | None:
    """One whole record (with its result document), or None."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_LIST_COLUMNS}, map_index, try_number, task_id, trigger, result, prev_hash, hash "
            f"FROM {TABLE} WHERE seq = %s",
            (seq,),
        )
        row: dict[str, Any] | None = cur.fetchone()
    return row


def last_green_before(conn: Any, *, kind: str, drill: str, seq: int) -> dict[str, Any] | None:
    """The newest PASS drill record of the same drill before ``seq`` (served by the drill/kind/verdict/seq index)."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT seq, recorded_at, result FROM {TABLE} WHERE drill = %s AND kind = %s AND verdict = 'PASS' "
            "AND record_type = 'drill' AND seq < %s ORDER BY seq DESC LIMIT 1",
            (drill, kind, seq),
        )
        row: dict[str, Any] | None = cur.fetchone()
    return row


def drills(conn: Any) -> list[tuple[str, str]]:
    """Every (drill, kind) in the ledger, by a loose index scan: one probe per drill, not a pass over every row."""
    with conn.cursor() as cur:
        cur.execute(
            f"""WITH RECURSIVE d AS (
                  (SELECT drill, kind FROM {TABLE} ORDER BY drill, kind LIMIT 1)
                  UNION ALL
                  SELECT n.drill, n.kind FROM d, LATERAL (
                      SELECT drill, kind FROM {TABLE} WHERE (drill, kind) > (d.drill, d.kind)
                      ORDER BY drill, kind LIMIT 1) n)
                SELECT drill, kind FROM d"""
        )
        return [(r["drill"], r["kind"]) for r in cur.fetchall()]


def has_number_columns(conn: Any) -> bool:
    """Whether the ledger has schema v6's generated RTO/RPO columns (a ledger not migrated yet still reads)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 AS found FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'rpo_objective' "
            "AND NOT attisdropped",
            (TABLE,),
        )
        return cur.fetchone() is not None


def measurements_per_day(
    conn: Any, *, drill: str, kind: str, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """RTO and RPO per day (mean and worst) of one drill's records in the window, with the objectives.

    From schema v6 the numbers are generated columns held in the covering ``drill_period`` index, so a month
    of a drill is an index-only scan (the objective follows the digest's rule: ``rto_seconds``, else
    ``rto``). Before v6 ``result`` (json text, hashed byte for byte) is parsed per row: each ``->`` scans
    the whole document, so the two small objects are cut out once per row.
    """
    if has_number_columns(conn):
        sql = f"""SELECT date_trunc('day', recorded_at) AS day,
                       avg(rto_seconds) AS rto, max(rto_seconds) AS rto_max,
                       avg(rpo_seconds) AS rpo, max(rpo_seconds) AS rpo_max,
                       max(rto_objective) AS rto_objective, max(rpo_objective) AS rpo_objective,
                       count(*) AS runs, count(*) FILTER (WHERE verdict = 'PASS') AS passes
                FROM {TABLE}
                WHERE drill = %s AND kind = %s AND record_type = 'drill' AND recorded_at >= %s AND recorded_at < %s
                GROUP BY 1 ORDER BY 1"""
        params: tuple[Any, ...] = (drill, kind, since, until)
    else:
        sql = f"""SELECT date_trunc('day', recorded_at) AS day,
                       avg((m->>'rto_seconds')::float) AS rto, max((m->>'rto_seconds')::float) AS rto_max,
                       avg((m->>'rpo_seconds')::float) AS rpo, max((m->>'rpo_seconds')::float) AS rpo_max,
                       max((o->>'rto_seconds')::float) AS rto_objective, max((o->>'rpo_seconds')::float) AS rpo_objective,
                       count(*) AS runs, count(*) FILTER (WHERE verdict = 'PASS') AS passes
                FROM (SELECT recorded_at, verdict, result->'measurements' AS m, result->'objectives' AS o FROM {TABLE}
                      WHERE drill = %s AND kind = %s AND record_type = 'drill' AND seq >= %s AND seq < %s) x
                GROUP BY 1 ORDER BY 1"""
        params = (drill, kind, *seq_bounds(conn, since=since, until=until))
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def pass_rate_per_month(days: list[dict[str, Any]]) -> list[tuple[str, float, int]]:
    """(YYYY-MM, pass rate %, runs) from the per-day rows, so the chart costs no second query."""
    months: dict[str, list[int]] = {}
    for row in days:
        key = row["day"].strftime("%Y-%m")
        acc = months.setdefault(key, [0, 0])
        acc[0] += int(row["passes"])
        acc[1] += int(row["runs"])
    return [(k, 100.0 * p / n if n else 0.0, n) for k, (p, n) in sorted(months.items())]


_GROUPS_SQL = f"""
WITH per_drill AS (
  SELECT date_trunc('day', recorded_at, 'UTC') AS day, drill, min(controls::text) AS lo, max(controls::text) AS hi,
         count(*) AS runs, count(*) FILTER (WHERE verdict = 'PASS') AS passes,
         count(*) FILTER (WHERE verdict IN ('FAIL', 'ERROR')) AS exception_count, max(seq) AS newest_seq
  FROM {TABLE}
  WHERE record_type = 'drill' AND drill = ANY(%(drills)s) AND recorded_at >= %(since)s AND recorded_at < %(until)s
  GROUP BY 1, 2)
SELECT day, lo::text[] AS controls, drill, runs, passes, exception_count, newest_seq FROM per_drill WHERE lo = hi
UNION ALL
SELECT date_trunc('day', recorded_at, 'UTC'), controls, drill, count(*), count(*) FILTER (WHERE verdict = 'PASS'),
       count(*) FILTER (WHERE verdict IN ('FAIL', 'ERROR')), max(seq)
FROM {TABLE}
WHERE record_type = 'drill' AND recorded_at >= %(since)s AND recorded_at < %(until)s
  AND (date_trunc('day', recorded_at, 'UTC'), drill) IN (SELECT day, drill FROM per_drill WHERE lo <> hi)
GROUP BY 1, 2, 3
"""
_DAY = timedelta(days=1)
_SETTLED = timedelta(hours=1)  # a day is read from the cache once it ended this long ago (commits in flight)
_Group = tuple[
    tuple[str, ...], str, int, int, int, int
]  # controls, drill, runs, passes, FAIL/ERROR, newest seq
#: (database, day, the first record at the day's start and at its end) -> that day's groups; small tuples,
#: one per drill and day, bounded like population's occurrence cache
_DAY_GROUPS: OrderedDict[tuple[Any, ...], list[_Group]] = OrderedDict()
_DAY_GROUPS_MAX = 800
_DAY_GROUPS_LOCK = threading.Lock()  # the api-server runs sync pages in a thread pool


def _groups(cur: Any, *, drill_names: list[str], since: datetime, until: datetime) -> dict[Any, list[_Group]]:
    """Per UTC day of [since, until): (controls, drill, runs, passes, FAIL/ERROR, newest seq) groups."""
    cur.execute(_GROUPS_SQL, {"drills": drill_names, "since": since, "until": until})
    out: dict[Any, list[_Group]] = {}
    for r in cur.fetchall():
        out.setdefault(r["day"], []).append(
            (
                tuple(r["controls"]),
                r["drill"],
                int(r["runs"]),
                int(r["passes"]),
                int(r["exception_count"]),
                int(r["newest_seq"]),
            )
        )
    return out


def window_groups(conn: Any, *, since: datetime, until: datetime) -> list[_Group]:
    """Every 'drill' record of [since, until) counted per (controls, drill, UTC day), settled days cached.

    A month is ~85,000 index entries at 1M records (0.1 s a request under load); a UTC day that ended
    an hour ago no longer changes in an append-only ledger whose seal stamps ``recorded_at``, so whole
    settled days are computed once per api-server process and kept, keyed by the database and the seq
    and hash of the first record at the day's start and at its end: another ledger, or rows cut or
    added at a day's edge, miss the cache and are read again. The days still open and the partial days
    at the window's edges are read live. What the cache cannot see is a superuser editing or backdating
    a row inside a settled day: that is what ``verify`` reports; the page shows it after a restart.
    """
    known = sorted({d for d, _k in drills(conn)})
    now = datetime.now(UTC)
    since_utc = since.astimezone(UTC)
    first = datetime(since_utc.year, since_utc.month, since_utc.day, tzinfo=UTC)
    if first < since:
        first += _DAY
    days = []
    day = first
    while day + _DAY <= until and day + _DAY + _SETTLED <= now:
        days.append(day)
        day += _DAY
    out: list[_Group] = []
    with conn.cursor() as cur:
        if not days:
            for groups in _groups(cur, drill_names=known, since=since, until=until).values():
                out += groups
            return out
        edges = [*days, days[-1] + _DAY]
        cur.execute(
            f"""SELECT e.at, f.seq, f.hash FROM unnest(%s::timestamptz[]) AS e(at)
                LEFT JOIN LATERAL (SELECT seq, hash FROM {TABLE} WHERE recorded_at >= e.at
                                   ORDER BY recorded_at, seq LIMIT 1) f ON true ORDER BY e.at""",
            (edges,),
        )
        marks = [(r["seq"], r["hash"]) for r in cur.fetchall()]
        where = (conn.info.host, conn.info.port, conn.info.dbname)
        keys = {d: (where, d, marks[n], marks[n + 1]) for n, d in enumerate(days)}
        with _DAY_GROUPS_LOCK:
            have = {d: _DAY_GROUPS.get(keys[d]) for d in days}
        missing = [d for d in days if have[d] is None]
        if missing:  # one scan from the first missing day to the last: usually all (first request) or none
            fresh = _groups(cur, drill_names=known, since=missing[0], until=missing[-1] + _DAY)
            for d in missing:
                have[d] = fresh.get(d, [])
        with _DAY_GROUPS_LOCK:
            for d in days:
                _DAY_GROUPS[keys[d]] = have[d] or []
                _DAY_GROUPS.move_to_end(keys[d])
            while len(_DAY_GROUPS) > _DAY_GROUPS_MAX:
                _DAY_GROUPS.popitem(last=False)
        for d in days:
            out += have[d] or []
        for lo_edge, hi_edge in ((since, days[0]), (days[-1] + _DAY, until)):  # the live edges
            if lo_edge < hi_edge:
                for groups in _groups(cur, drill_names=known, since=lo_edge, until=hi_edge).values():
                    out += groups
    return out


def controls_summary(
    conn: Any, *, since: datetime, until: datetime, limit_exceptions: int = 20
) -> list[dict[str, Any]]:
    """Per control id: runs, passes and every FAIL/ERROR (seq and date, newest first) in the window.

    The counts come from ``window_groups``: per drill and UTC day, read from the covering ``drill_period``
    index from schema v6 (one range per drill: the drills come from a loose index scan), settled days
    cached. A drill whose rows of a day all name the same controls (the usual case: min = max of the
    array's text) is one group; only a drill whose controls changed that day is counted again per
    (controls, drill) — hashing every row's array cost 4x the scan. The exceptions are the window's
    FAIL/ERROR rows, found through the verdict/seq index. No row's result is read.
    """
    lo, hi = seq_bounds(conn, since=since, until=until)
    per_control: dict[str, dict[str, Any]] = {}
    for controls, drill, runs, passes, exception_count, newest_seq in window_groups(
        conn, since=since, until=until
    ):
        for c in controls:  # as unnest(controls): a control named twice in one record counts twice
            acc = per_control.setdefault(
                c,
                {
                    "control": c,
                    "runs": 0,
                    "passes": 0,
                    "newest_seq": 0,
                    "drills": set(),
                    "exception_count": 0,
                },
            )
            acc["runs"] += runs
            acc["passes"] += passes
            acc["exception_count"] += exception_count
            acc["newest_seq"] = max(acc["newest_seq"], newest_seq)
            acc["drills"].add(drill)
    with conn.cursor() as cur:  # the database's collation orders the names, as ORDER BY would
        names = sorted(set(per_control) | {d for row in per_control.values() for d in row["drills"]})
        cur.execute("SELECT n FROM unnest(%s::text[]) AS n ORDER BY n", (names,))
        rank = {r["n"]: i for i, r in enumerate(cur.fetchall())}
    rows = []
    for c in sorted(per_control, key=rank.__getitem__):
        row = per_control[c]
        row["drills"] = sorted(row["drills"], key=rank.__getitem__)
        rows.append(row)
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT c AS control,
                       (array_agg(ARRAY[seq::text, to_char(recorded_at, 'YYYY-MM-DD'), verdict, drill]
                                  ORDER BY seq DESC))[1:%s] AS exceptions
                FROM {TABLE}, unnest(controls) AS c
                WHERE verdict IN ('FAIL', 'ERROR') AND record_type = 'drill' AND seq >= %s AND seq < %s
                GROUP BY c""",
            (limit_exceptions, lo, hi),
        )
        listed = {r["control"]: r["exceptions"] for r in cur.fetchall()}
        for row in rows:
            row["exceptions"] = listed.get(row["control"])
            cur.execute(f"SELECT verdict, recorded_at FROM {TABLE} WHERE seq = %s", (row["newest_seq"],))
            newest = cur.fetchone()
            row["newest_verdict"], row["newest_at"] = (
                (newest["verdict"], newest["recorded_at"]) if newest else (None, None)
            )
        return rows


def coverage(conn: Any, *, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per drill in the ledger: its newest record and newest PASS in the window; drills without a PASS first.

    One statement: the loose index scan of drills, and per drill two backward probes of the
    drill/seq indexes inside the window's seq range (see ``seq_bounds``).
    """
    lo, hi = seq_bounds(conn, since=since, until=until)
    with conn.cursor() as cur:
        cur.execute(
            f"""WITH RECURSIVE d AS (
                  (SELECT drill, kind FROM {TABLE} ORDER BY drill, kind LIMIT 1)
                  UNION ALL
                  SELECT n.drill, n.kind FROM d, LATERAL (
                      SELECT drill, kind FROM {TABLE} WHERE (drill, kind) > (d.drill, d.kind)
                      ORDER BY drill, kind LIMIT 1) n)
                SELECT d.drill, d.kind, n.seq AS n_seq, n.recorded_at AS n_at, n.verdict AS n_verdict,
                       n.target AS n_target, g.seq AS g_seq, g.recorded_at AS g_at
                FROM d
                LEFT JOIN LATERAL (SELECT seq, recorded_at, verdict, target FROM {TABLE}
                    WHERE drill = d.drill AND kind = d.kind AND record_type = 'drill' AND seq >= %s AND seq < %s
                    ORDER BY seq DESC LIMIT 1) n ON true
                LEFT JOIN LATERAL (SELECT seq, recorded_at FROM {TABLE}
                    WHERE drill = d.drill AND kind = d.kind AND verdict = 'PASS' AND record_type = 'drill'
                      AND seq >= %s AND seq < %s ORDER BY seq DESC LIMIT 1) g ON true""",
            (lo, hi, lo, hi),
        )
        rows = cur.fetchall()
    out = [
        {
            "kind": r["kind"],
            "drill": r["drill"],
            "newest": {
                "seq": r["n_seq"],
                "recorded_at": r["n_at"],
                "verdict": r["n_verdict"],
                "target": r["n_target"],
            }
            if r["n_seq"] is not None
            else None,
            "green": {"seq": r["g_seq"], "recorded_at": r["g_at"]} if r["g_seq"] is not None else None,
        }
        for r in rows
    ]
    out.sort(key=lambda r: (r["green"] is not None, r["kind"], r["drill"]))
    return out


def ledger_status(conn: Any) -> dict[str, Any]:
    """The head record and every stored checkpoint (newest first)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT seq, recorded_at, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1")
        head = cur.fetchone()
        cur.execute(
            f"SELECT seq, hash, signed_at, source, key_id, signature IS NOT NULL AS signed "
            f"FROM {CHECKPOINT_TABLE} ORDER BY id DESC LIMIT 20"
        )
        checkpoints = list(cur.fetchall())
    return {"head": head, "checkpoints": checkpoints}
