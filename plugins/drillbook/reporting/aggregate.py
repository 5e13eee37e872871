"""Aggregate one period's 'drill' records per drill: runs, passes, RTO and RPO, the newest run's findings.

Rules this module enforces:
- a run is one (dag_id, run_id) of a drill with at least one 'drill' record in
  the period; its verdict is the worst of its records (ERROR > FAIL > PASS), so
  a mapped drill with one bad target is not a pass;
- the digest has the database compute the aggregate (``aggregate_sql``: one
  statement, counts, ``percentile_cont`` medians, newest run's verdict and
  finding codes): memory is flat in the period's size. ``aggregate_records``
  is the same rule over records in hand; a test holds the two equal.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from drillbook import verdict_order

if TYPE_CHECKING:
    from drillbook.ledger.records import LedgerRecord


def _objective(result: dict[str, Any], name: str) -> float | None:
    objectives = result.get("objectives") or {}
    value = objectives.get(f"{name}_seconds", objectives.get(name))
    return float(value) if value is not None else None


def _worst_median(values: list[float]) -> tuple[float, float] | None:
    return (max(values), float(statistics.median(values))) if values else None


@dataclass
class DrillAggregate:
    """What the scorecard needs of one drill's 'drill' records in the period (SQL or Python computes it)."""

    runs: int = 0
    passes: int = 0
    newest_verdict: str | None = None
    open_findings: list[str] = field(default_factory=list)
    rto: tuple[float, float] | None = None
    rto_objective: float | None = None
    rpo: tuple[float, float] | None = None
    rpo_objective: float | None = None
    failed: int = 0  # FAIL or ERROR runs: exceptions (drillbook.evidence.controls)
    # records in hand only: first record of each run, for the missed count (the SQL path counts missed occurrences in SQL)
    run_starts: list[datetime] | None = field(default=None, compare=False)


def aggregate_records(
    records: Iterable[LedgerRecord], *, drills: Iterable[str], start: datetime, end: datetime
) -> dict[str, DrillAggregate]:
    """The per-drill aggregate from records in hand (tests, small inputs); ``aggregate_sql`` is the same in SQL."""
    names = set(drills)
    runs: dict[str, dict[tuple[str, str], list[LedgerRecord]]] = {}
    for record in records:
        if (
            record.record_type != "drill"
            or record.drill not in names
            or not (start <= record.recorded_at < end)
        ):
            continue
        runs.setdefault(record.drill, {}).setdefault((record.dag_id, record.run_id), []).append(record)
    out: dict[str, DrillAggregate] = {}
    for name, by_run in runs.items():
        agg = out[name] = DrillAggregate()
        ordered = sorted(by_run.values(), key=lambda recs: max(r.seq for r in recs))
        verdicts = [max((r.verdict for r in recs), key=verdict_order.rank) for recs in ordered]
        agg.runs, agg.passes, agg.newest_verdict = len(ordered), verdicts.count("PASS"), verdicts[-1]
        agg.failed = sum(1 for v in verdicts if v in ("FAIL", "ERROR"))
        agg.run_starts = [min(r.recorded_at for r in recs) for recs in ordered]
        newest = ordered[-1]
        agg.open_findings = sorted(
            {f["code"] for r in newest for f in r.result.get("findings", []) if f.get("severity") != "info"}
        )
        all_records = [r for recs in ordered for r in recs]
        for name_, attr in (("rto", "rto_seconds"), ("rpo", "rpo_seconds")):
            values = [
                float(v)
                for r in all_records
                if (v := (r.result.get("measurements") or {}).get(attr)) is not None
            ]
            objectives = [o for r in all_records if (o := _objective(r.result, name_)) is not None]
            setattr(agg, name_, _worst_median(values))
            setattr(agg, f"{name_}_objective", objectives[-1] if objectives else None)
    return out


def _number(path: str) -> str:
    """A JSON number at ``path`` (json) as float8; NULL when absent or not a number."""
    return f"CASE WHEN json_typeof({path}) = 'number' THEN ({path})::text::float8 END"


def _objective_sql(name: str) -> str:
    # objectives.get("rto_seconds", objectives.get("rto")): a key that is present (even as null) wins
    seconds, plain = f"o->'{name}_seconds'", f"o->'{name}'"
    return f"CASE WHEN {seconds} IS NOT NULL THEN {_number(seconds)} ELSE {_number(plain)} END"


# One statement, one row per drill: the database reads the period's 'drill' rows through an index and hands
# back counts, worst/median RTO and RPO (percentile_cont), the newest run's verdict and objective and its open
# finding codes. Python never holds the period's records. On a schema v6 ledger RTO, RPO and the objectives
# are stored generated columns (``drillbook.ledger.schema``: the same rule as ``_number``/``_objective_sql``)
# covered by the ``drill_period`` index, so no record's JSON is parsed: at 1M records a month's aggregate
# parsed 82k result texts (two json_extract_path per record) and took 11 s of the monthly digest's 15. An
# older ledger (v2..v5, still written to) gets the same numbers from the JSON text. Findings are read only
# for the newest run's records (one index lookup per drill).
_PERIOD = (
    "record_type = 'drill' AND recorded_at >= %(start)s AND recorded_at < %(end)s AND drill = ANY(%(drills)s)"
)
_RANK = f"{verdict_order.RANK_SQL} AS rank"
_RECS_COLUMNS = f"""
recs AS MATERIALIZED (
    SELECT drill, dag_id, run_id, seq, {_RANK},
           rto_seconds AS rto, rpo_seconds AS rpo, rto_objective, rpo_objective
    FROM {{table}} WHERE {_PERIOD}
),"""
# Before v6: each result's text is parsed once for its two small objects (a MATERIALIZED CTE, or the planner
# substitutes json_extract_path into every use below and parses the whole text a dozen times per record).
_RECS_JSON = f"""
period AS MATERIALIZED (
    SELECT drill, dag_id, run_id, seq, {_RANK},
           json_extract_path(result, 'measurements') AS m, json_extract_path(result, 'objectives') AS o
    FROM {{table}} WHERE {_PERIOD}
),
recs AS MATERIALIZED (
    SELECT drill, dag_id, run_id, seq, rank,
           {_number("m->'rto_seconds'")} AS rto,
           {_number("m->'rpo_seconds'")} AS rpo,
           {_objective_sql("rto")} AS rto_objective,
           {_objective_sql("rpo")} AS rpo_objective
    FROM period
),"""
_AGGREGATE_SQL = """
WITH {recs}
runs AS (
    -- a run's objective: its newest record's that has one; the drill's: the newest run's that has one
    SELECT drill, dag_id, run_id, max(seq) AS run_seq, max(rank) AS rank,
           (array_agg(rto_objective ORDER BY seq DESC) FILTER (WHERE rto_objective IS NOT NULL))[1] AS rto_objective,
           (array_agg(rpo_objective ORDER BY seq DESC) FILTER (WHERE rpo_objective IS NOT NULL))[1] AS rpo_objective
    FROM recs GROUP BY drill, dag_id, run_id
),
per_drill AS (
    SELECT drill, count(*) AS runs, count(*) FILTER (WHERE rank = 0) AS passes, count(*) FILTER (WHERE rank >= 2) AS failed,
           (array_agg(rank ORDER BY run_seq DESC))[1] AS newest_rank,
           (array_agg(dag_id ORDER BY run_seq DESC))[1] AS newest_dag,
           (array_agg(run_id ORDER BY run_seq DESC))[1] AS newest_run,
           (array_agg(rto_objective ORDER BY run_seq DESC) FILTER (WHERE rto_objective IS NOT NULL))[1] AS rto_objective,
           (array_agg(rpo_objective ORDER BY run_seq DESC) FILTER (WHERE rpo_objective IS NOT NULL))[1] AS rpo_objective
    FROM runs GROUP BY drill
),
measured AS (
    SELECT drill,
           max(rto) AS rto_worst, percentile_cont(0.5) WITHIN GROUP (ORDER BY rto) AS rto_median,
           max(rpo) AS rpo_worst, percentile_cont(0.5) WITHIN GROUP (ORDER BY rpo) AS rpo_median
    FROM recs GROUP BY drill
)
SELECT p.drill, p.runs, p.passes, p.failed, p.newest_rank, m.rto_worst, m.rto_median, p.rto_objective,
       m.rpo_worst, m.rpo_median, p.rpo_objective,
       ARRAY(SELECT DISTINCT f->>'code' FROM {table} x,
                 json_array_elements(CASE WHEN json_typeof(x.result->'findings') = 'array' THEN x.result->'findings' END) AS f
             WHERE x.record_type = 'drill' AND x.recorded_at >= %(start)s AND x.recorded_at < %(end)s
               AND x.drill = p.drill AND x.dag_id = p.newest_dag AND x.run_id = p.newest_run
               AND f->>'code' IS NOT NULL AND (f->>'severity') IS DISTINCT FROM 'info') AS codes
FROM per_drill p JOIN measured m USING (drill)
"""


def _has_number_columns(cur: Any, table: str) -> bool:
    """Whether the ledger has schema v6's generated RTO/RPO/objective columns."""
    cur.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND NOT attisdropped "
        "AND attname = ANY(%s)",
        (table, ["rto_seconds", "rpo_seconds", "rto_objective", "rpo_objective"]),
    )
    row = cur.fetchone()
    return bool(row and row[0] == 4)


def aggregate_sql(
    conn: Any, *, drills: Iterable[str], start: datetime, end: datetime, columns: bool | None = None
) -> dict[str, DrillAggregate]:
    """``aggregate_records`` computed by PostgreSQL: one row per drill, memory flat in the period's size.

    ``columns``: read schema v6's generated columns (True) or the JSON text (False); None: whichever the
    ledger has.
    """
    from psycopg.rows import tuple_row

    from drillbook.ledger.schema import TABLE

    out: dict[str, DrillAggregate] = {}
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        if columns is None:
            columns = _has_number_columns(cur, TABLE)
        recs = _RECS_COLUMNS if columns else _RECS_JSON
        cur.execute(
            _AGGREGATE_SQL.format(recs=recs.format(table=TABLE), table=TABLE),
            {"start": start, "end": end, "drills": sorted(set(drills))},
        )
        for (
            drill,
            runs,
            passes,
            failed,
            rank,
            rto_w,
            rto_m,
            rto_o,
            rpo_w,
            rpo_m,
            rpo_o,
            codes,
        ) in cur.fetchall():
            out[drill] = DrillAggregate(
                runs=int(runs),
                passes=int(passes),
                failed=int(failed),
                newest_verdict=verdict_order.verdict_of_rank(rank),
                open_findings=sorted(codes or []),
                rto=(float(rto_w), float(rto_m)) if rto_w is not None else None,
                rto_objective=rto_o,
                rpo=(float(rpo_w), float(rpo_m)) if rpo_w is not None else None,
                rpo_objective=rpo_o,
            )
    return out
