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

from datetime import datetime
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


def controls_summary(
    conn: Any, *, since: datetime, until: datetime, limit_exceptions: int = 20
) -> list[dict[str, Any]]:
    """Per control id: runs, passes and every FAIL/ERROR (seq and date, newest first) in the window.

    The window's rows are first counted per (controls array, drill) — a handful of groups, read from the
    covering ``drill_period`` index from schema v6 (one range per drill: the drills come from a loose index
    scan) — and only then spread over the control ids; the exceptions are the window's FAIL/ERROR rows,
    found through the verdict/seq index. No row's result is read.
    """
    lo, hi = seq_bounds(conn, since=since, until=until)
    known = sorted({d for d, _k in drills(conn)})
    with conn.cursor() as cur:
        cur.execute(
            f"""WITH per_group AS (
                  SELECT controls, drill, count(*) AS runs, count(*) FILTER (WHERE verdict = 'PASS') AS passes,
                         count(*) FILTER (WHERE verdict IN ('FAIL', 'ERROR')) AS exception_count, max(seq) AS newest_seq
                  FROM {TABLE}
                  WHERE record_type = 'drill' AND drill = ANY(%s) AND recorded_at >= %s AND recorded_at < %s
                  GROUP BY controls, drill)
                SELECT c AS control, sum(runs)::bigint AS runs, sum(passes)::bigint AS passes,
                       max(newest_seq) AS newest_seq, array_agg(DISTINCT drill) AS drills,
                       sum(exception_count)::bigint AS exception_count
                FROM per_group, unnest(controls) AS c
                GROUP BY c ORDER BY c""",
            (known, since, until),
        )
        rows = list(cur.fetchall())
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
