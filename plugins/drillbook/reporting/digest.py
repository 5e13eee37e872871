"""The scorecard digest: what an auditor's periodic review reads, per control and per drill.

Rules this module enforces (``build_scorecard`` is pure; ``run_digest`` does the I/O):
- a run is one (dag_id, run_id) of a drill with at least one 'drill' record in
  the period; its verdict is the worst of its records (ERROR > FAIL > PASS), so
  a mapped drill with one bad target is not a pass;
- runs expected come from the drill's cron schedule over the period, in the
  catalogue's timezone, counted by ``drillbook.evidence.population`` (the
  auditors' population); runs below expected are shown, never hidden;
- pass rate = passing runs / runs; RTO and RPO are shown worst and median
  against the objective the drill recorded;
- ``run_digest`` has the database compute all of that (``aggregate_sql``: one
  statement, counts, ``percentile_cont`` medians, newest run's verdict and
  finding codes): memory is flat in the period's size. ``aggregate_records``
  is the same rule over records in hand; a test holds the two equal;
- the chain is verified incrementally (from the newest trusted signed
  checkpoint, which the previous digest signed) by every digest except the
  weekly one, which verifies in full (``evidence verify --full``,
  ``FULL_VERIFY``): a change to a record older than the newest checkpoint is
  found by the next weekly digest, not the next daily one;
- drill and control status follow ``drillbook.evidence.controls.status_of``, the
  rule of the auditors' controls view: a missed occurrence or a FAIL/ERROR run
  in the period is EXCEPTIONS, so a drill that ran once of 19 expected times is
  never VERIFIED; no run is NOT RUN, a newest FAIL/ERROR is AT RISK;
- the ledger's verify status is part of every scorecard: evidence that does
  not verify is reported before anything else, in the header; and when the
  chain does not verify (or was not checked) no drill or control is shown
  VERIFIED: a broken chain may hold forged PASS rows, so what would have been
  VERIFIED is UNVERIFIABLE (with the seq where the chain breaks);
- every digest signs a checkpoint of the head after recording its own row and
  posts the full head hash, signed or plainly UNSIGNED, so the head exists
  outside the database; it compares the head the previous digest posted
  with the chain and says in the post when that record is gone or changed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drillbook.catalogue.common import PRESET_NAMES, in_force_since, previous_run
from drillbook.evidence.controls import status_of
from drillbook.findings import finding
from drillbook.ledger.checkpoint import CheckpointSettings
from drillbook.reporting.scorecard import ControlScore, DrillScore, Scorecard

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.ledger.checkpoint import Checkpoint
    from drillbook.ledger.records import LedgerRecord, VerifyReport
    from drillbook.ledger.store import Ledger
    from drillbook.notify.notifier import Notifier
    from drillbook.run.context import RunContext

_VERDICT_RANK = {"PASS": 0, "SKIPPED": 1, "FAIL": 2, "ERROR": 3}


#: The weekly digest (``dr_digest__weekly``, in the default ``digest.schedules``) re-hashes the whole chain
#: (``evidence verify --full``); every other digest walks from the newest trusted signed checkpoint, so it
#: costs what its period costs (issue 14: daily < 2 s, monthly < 5 s at a million records).
FULL_VERIFY = ("@weekly",)


def full_verify(schedule: str) -> bool:
    """Whether the digest on ``schedule`` verifies the whole chain (see ``FULL_VERIFY``)."""
    return schedule in FULL_VERIFY


def expected_runs(
    schedule: str, *, start: datetime, end: datetime, timezone: str = "UTC", since: datetime | None = None
) -> int:
    """How many times ``schedule`` fires in [start, end) and not before ``since`` (the population's rule, DST
    included)."""
    from drillbook.evidence.population import count_occurrences

    if since is not None and since > start:
        start = since
    if start >= end:
        return 0
    return count_occurrences(schedule, start=start, end=end, timezone=timezone)


def _missed(
    catalogue: Catalogue, drill: str, run_times: list[datetime], *, start: datetime, end: datetime
) -> int:
    """Expected occurrences of ``drill`` in [start, end) with no run in their window (the population's rule)."""
    from drillbook.evidence.population import MISSED, Run, match, series_of

    series = next(s for s in series_of(catalogue) if s.drill == drill and s.kind != "negative")
    runs = [
        Run(
            drill=drill,
            kind=series.kind,
            dag_id="",
            run_id="",
            first_at=t,
            last_at=t,
            verdict="PASS",
            rows=1,
            first_seq=0,
            last_seq=0,
        )
        for t in sorted(run_times)
    ]
    occurrences = match(
        series,
        runs,
        start=start,
        end=end,
        as_of=end,
        grace=catalogue.defaults.watchdog.grace,
        timezone=catalogue.defaults.timezone,
    )
    return sum(1 for occ in occurrences if occ.outcome == MISSED)


def digest_period(schedule: str, *, end: datetime, timezone: str = "UTC") -> tuple[datetime, datetime]:
    """The period a digest on ``schedule`` covers when it runs at ``end``: from the previous firing to ``end``."""
    local_end = end.astimezone(ZoneInfo(timezone))
    start = previous_run(schedule, local_end - timedelta(seconds=1))
    return start.astimezone(UTC), end.astimezone(UTC)


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
        verdicts = [max((r.verdict for r in recs), key=lambda v: _VERDICT_RANK.get(v, 3)) for recs in ordered]
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
_RANK = "CASE verdict WHEN 'PASS' THEN 0 WHEN 'SKIPPED' THEN 1 WHEN 'FAIL' THEN 2 ELSE 3 END AS rank"
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
_RANK_VERDICT = {rank: verdict for verdict, rank in _VERDICT_RANK.items()}


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
                newest_verdict=_RANK_VERDICT.get(int(rank), "ERROR"),
                open_findings=sorted(codes or []),
                rto=(float(rto_w), float(rto_m)) if rto_w is not None else None,
                rto_objective=rto_o,
                rpo=(float(rpo_w), float(rpo_m)) if rpo_w is not None else None,
                rpo_objective=rpo_o,
            )
    return out


def build_scorecard(
    catalogue: Catalogue,
    records: Iterable[LedgerRecord],
    *,
    start: datetime,
    end: datetime,
    verify: VerifyReport | None,
    title: str = "scorecard",
    aggregates: dict[str, DrillAggregate] | None = None,
    missed: dict[str, int] | None = None,
) -> Scorecard:
    """Score every enabled drill and control from the 'drill' records of [start, end).

    ``aggregates`` (from ``aggregate_sql``) replaces ``records``: the digest passes them, tests pass records.
    ``missed`` (from ``drillbook.evidence.population_sql.missed_by_drill_sql``, counted by the database) goes with
    ``aggregates``; with records in hand it is counted from them.
    """
    drills = [d for d in catalogue.drills if d.enabled]
    scores = {
        d.name: DrillScore(
            drill=d.name,
            kind=d.kind,
            controls=list(d.controls),
            expected=expected_runs(
                d.schedule,
                start=start,
                end=end,
                timezone=catalogue.defaults.timezone,
                since=in_force_since(d.since, catalogue.defaults.timezone),
            ),
        )
        for d in drills
    }
    if aggregates is None:
        aggregates = aggregate_records(records, drills=scores, start=start, end=end)
    for name, agg in aggregates.items():
        if name not in scores:
            continue
        score = scores[name]
        score.runs, score.passes, score.newest_verdict = agg.runs, agg.passes, agg.newest_verdict
        score.open_findings = list(agg.open_findings)
        score.rto, score.rto_objective, score.rpo, score.rpo_objective = (
            agg.rto,
            agg.rto_objective,
            agg.rpo,
            agg.rpo_objective,
        )
        score.failed = agg.failed
    if verify is None:
        ledger_ok, summary, unverifiable = None, "ledger not verified", "ledger not verified"
    elif verify.ok:
        how = (
            f"{verify.checked} records after the signed checkpoint seq {verify.since_seq} (incremental)"
            if verify.since_seq is not None
            else f"{verify.checked} records"
        )
        ledger_ok, summary, unverifiable = (
            True,
            f"ledger verified: {how}, chain intact (head {(verify.head_hash or '')[:12]})",
            None,
        )
    else:
        ledger_ok, summary = (
            False,
            f"LEDGER DOES NOT VERIFY: record seq {verify.first_bad_seq} {verify.reason}: {verify.message}",
        )
        unverifiable = f"ledger chain broken at seq {verify.first_bad_seq}"
    for score in scores.values():
        score.unverifiable = unverifiable
        if missed is not None:
            score.missed = missed.get(score.drill, 0)
        else:
            starts = aggregates[score.drill].run_starts if score.drill in aggregates else []
            score.missed = _missed(catalogue, score.drill, starts or [], start=start, end=end)
    controls: list[ControlScore] = []
    for control in sorted({c for d in drills for c in d.controls}):
        members = [scores[d.name] for d in drills if control in d.controls]
        latest = [m.newest_verdict for m in members if m.newest_verdict]
        numbers = {
            "expected": sum(m.expected for m in members),
            "runs": sum(m.runs for m in members),
            "missed": sum(m.missed for m in members),
            "failed": sum(m.failed for m in members),
        }
        status = status_of(
            **numbers,
            newest_verdict=max(latest, key=lambda v: _VERDICT_RANK.get(v, 3)) if latest else None,
            unverifiable=unverifiable,
        )
        controls.append(
            ControlScore(
                control=control,
                drills=[m.drill for m in members],
                passes=sum(m.passes for m in members),
                status=status,
                **numbers,
            )
        )
    return Scorecard(
        title=title,
        start=start,
        end=end,
        drills=list(scores.values()),
        controls=controls,
        ledger_ok=ledger_ok,
        ledger_summary=summary,
        unverifiable=unverifiable,
    )


def digest_row(scorecard: Scorecard, *, name: str) -> Any:
    """The 'digest' ledger row: the scorecard as sent, so the review itself is evidence."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(
        kind="digest", drill=name, target="ledger", controls=[c.control for c in scorecard.controls]
    )
    builder.checked(len(scorecard.drills))
    builder.details["scorecard"] = {
        "start": scorecard.start.isoformat(),
        "end": scorecard.end.isoformat(),
        "ledger": scorecard.ledger_summary,
        "drills": {
            d.drill: {"expected": d.expected, "runs": d.runs, "passes": d.passes, "status": d.status}
            for d in scorecard.drills
        },
        "controls": {c.control: c.status for c in scorecard.controls},
    }
    return builder.finish()


def _previous_digest_head(ledger: Ledger, settings: CheckpointSettings) -> Checkpoint | None:
    """The newest digest checkpoint in the database or in the outside copy (which survives a wiped table)."""
    from drillbook.ledger import checkpoint as cpmod

    outside, _ = cpmod.read_outside(settings.path)
    found = [c for c in outside if c.source.startswith("digest")]
    in_db = ledger.newest_checkpoint(source_prefix="digest")
    return cpmod.newest(found + ([in_db] if in_db else []))


def head_text(ledger: Ledger, cp: Checkpoint, previous: Checkpoint | None) -> str:
    """The head as posted (full hash, signed or UNSIGNED) and whether the last digest's head is still in the chain."""
    how = f"signed by key {cp.key_id}" if cp.signed else "UNSIGNED: no checkpoint key configured"
    text = f" · head seq={cp.seq} {cp.hash} ({how})"
    if previous is None:
        return text + " · no earlier digest head to compare with"
    record = ledger.get(previous.seq) if previous.seq else None
    now_hash = record.hash if record is not None else None
    if previous.seq == 0 or now_hash == previous.hash:
        return text + f" · previous digest head seq={previous.seq} {previous.hash[:12]}… still in the chain"
    state = (
        "missing (rows cut from the end)"
        if record is None
        else f"now {now_hash[:12] if now_hash else '?'}… (rewritten)"
    )
    return text + (
        f" · PREVIOUS DIGEST HEAD seq={previous.seq} {previous.hash} IS NOT IN THE CHAIN: record "
        f"{previous.seq} is {state}"
    )


def run_digest(
    catalogue: Catalogue,
    *,
    ledger: Ledger,
    notifier: Notifier,
    ctx: RunContext,
    schedule: str,
    checkpoints: CheckpointSettings,
    now: datetime | None = None,
) -> Scorecard:
    """Build the scorecard of the period ending ``now``, record it, then post it to the digest channel.

    ``checkpoints``: the entry point's ``CheckpointSettings.from_settings(settings)`` (signing key, trusted key).
    """
    from drillbook.notify.render import render_digest
    from drillbook.run.pipeline import replay_spool

    now = now or datetime.now(UTC)
    replay_spool(ledger, before="digest")  # a result waiting in this worker's spool counts as run
    tz = catalogue.defaults.timezone
    start, end = digest_period(schedule, end=now, timezone=tz)
    name = PRESET_NAMES.get(schedule, "custom")
    settings = checkpoints
    previous = _previous_digest_head(ledger, settings)  # the head the last digest posted
    # Aggregated by the database (never the period's records in Python); the chain walked from the newest
    # trusted signed checkpoint, or in full by the digests that run `evidence verify --full` (FULL_VERIFY).
    aggregates = aggregate_sql(
        ledger.connection, drills=[d.name for d in catalogue.drills if d.enabled], start=start, end=end
    )
    verify = ledger.verify(checkpoints=settings, full=full_verify(schedule))
    from drillbook.evidence.population_sql import missed_by_drill_sql

    # matched in SQL (each distinct schedule's due times computed once): streaming 82k runs of a month into
    # Python's ``match`` cost 2.7 s at 1M records; tests/evidence/test_population_sql.py holds the two equal
    missed = missed_by_drill_sql(ledger.connection, catalogue, start=start, end=end, as_of=now)
    scorecard = build_scorecard(
        catalogue,
        (),
        start=start,
        end=end,
        verify=verify,
        title=f"{name} scorecard",
        aggregates=aggregates,
        missed=missed,
    )
    row = digest_row(scorecard, name=name)
    if not settings.private_key:
        row.findings.append(finding("CHECKPOINT_UNSIGNED", subject="ledger"))
    ledger.record_event("digest", row, ctx)  # evidence first
    # Then sign the head (which now includes the digest row) and publish the full hash outside the database.
    scorecard.ledger_summary += head_text(
        ledger, ledger.checkpoint(source=f"digest:{name}", settings=settings), previous
    )
    if previous is not None and "NOT IN THE CHAIN" in scorecard.ledger_summary:
        scorecard.ledger_ok = False
    try:
        notifier.post_digest(render_digest(scorecard))
    except Exception as exc:
        ledger.record_notify_failure(row, ctx, error=exc)
        raise
    return scorecard
