"""Rung 2, volume: exact row counts per table, against minimums and against the last PASS.

Rules this module enforces:
- counts are exact (``count(*)``, never ``reltuples`` estimates) and
  set-based: tables are counted ``BATCH`` at a time in one ``UNION ALL``
  statement, so the server scans each table once and Python never sees a row;
- ``verify.min_rows`` (``"schema.table": n``; a bare name means ``public``):
  a table below its minimum is ``VOLUME_BELOW_MINIMUM``, an absent table is
  ``VOLUME_TABLE_MISSING``;
- against ``previous`` (the DrillResult JSON of the last PASS of the same
  drill): a table that shrank by more than ``verify.drift_tolerance`` is
  ``VOLUME_DRIFT``, and so is a table that had rows then and is absent now
  (a partial backup that lost a whole table). Growth is never a finding;
- the rows per table are kept in ``details.verify.volume.rows`` (what the next
  run compares against) and the total in ``measurements.counts.rows_restored``;
  partitioned parents are counted but left out of the total (their partitions
  are in it already);
- with neither minimums nor a previous PASS the rung is ``not configured``: it
  counted, but compared against nothing, so it counts no check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drillbook.drills.backup_restore.verify.catalog_sql import USER_SCHEMA_FILTER, not_extension_member

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.verify.ladder import Ladder
    from drillbook.drills.base import PhaseHandle

BATCH = 100  # tables per UNION ALL statement

_TABLES_SQL = f"""
select n.nspname, c.relname, c.relkind::text
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and {USER_SCHEMA_FILTER} and {not_extension_member("pg_class", "c.oid")}
order by 1, 2
"""


def count_rows(conn: Any, only: Callable[[str], bool] | None = None) -> tuple[dict[str, int], int]:
    """Return (exact rows per ``schema.table``, total rows of non-partitioned tables); ``only`` narrows the tables."""
    from psycopg import sql

    tables = [t for t in conn.execute(_TABLES_SQL).fetchall() if only is None or only(f"{t[0]}.{t[1]}")]
    rows: dict[str, int] = {}
    total = 0
    leaf = {f"{s}.{t}" for s, t, kind in tables if kind == "r"}
    for start in range(0, len(tables), BATCH):
        parts = [
            sql.SQL("select {name}::text, count(*) from {table}").format(
                name=sql.Literal(f"{schema}.{table}"), table=sql.Identifier(schema, table)
            )
            for schema, table, _kind in tables[start : start + BATCH]
        ]
        for name, count in conn.execute(sql.SQL(" union all ").join(parts)).fetchall():
            rows[name] = int(count)
            if name in leaf:
                total += int(count)
    return rows, total


def _qualified(name: str) -> str:
    return name if "." in name else f"public.{name}"


def previous_rows(previous: dict[str, Any] | None) -> dict[str, int] | None:
    """Rows per table recorded by the previous PASS, or None when it has none."""
    if not previous:
        return None
    rows = ((previous.get("details") or {}).get("verify") or {}).get("volume", {}).get("rows")
    if not isinstance(rows, dict):
        return None
    return {str(k): int(v) for k, v in rows.items() if isinstance(v, int | float)}


def _check_minimums(ladder: Ladder, rows: dict[str, int]) -> int:
    checked = 0
    for name, minimum in sorted(ladder.verify.min_rows.items()):
        table = _qualified(name)
        ladder.builder.checked()
        checked += 1
        if table not in rows:
            ladder.builder.find(
                "VOLUME_TABLE_MISSING",
                f"table {table} has a minimum of {minimum:,} rows but is not in the restored database",
                subject=table,
                detail={"table": table, "minimum": minimum},
            )
        elif rows[table] < minimum:
            ladder.builder.find(
                "VOLUME_BELOW_MINIMUM",
                f"table {table} restored {rows[table]:,} rows, below its minimum of {minimum:,}",
                subject=table,
                detail={"table": table, "rows": rows[table], "minimum": minimum},
            )
    return checked


def _check_drift(ladder: Ladder, rows: dict[str, int], before: dict[str, int]) -> int:
    tolerance = ladder.verify.drift_tolerance
    started = (ladder.previous or {}).get("started_at")
    when = f" ({started})" if started else ""
    checked = 0
    for table, then in sorted(before.items()):
        if then <= 0:
            continue  # an empty table cannot shrink
        ladder.builder.checked()
        checked += 1
        now = rows.get(table)
        if now is None:
            ladder.builder.find(
                "VOLUME_DRIFT",
                f"table {table} had {then:,} rows at the last PASS{when} and is absent from this restore",
                subject=table,
                detail={
                    "table": table,
                    "previous_rows": then,
                    "rows": 0,
                    "absent": True,
                    "tolerance": tolerance,
                },
            )
        elif now < then * (1 - tolerance):
            shrink = (then - now) / then
            ladder.builder.find(
                "VOLUME_DRIFT",
                f"table {table} shrank {shrink:.1%} since the last PASS{when} ({then:,} -> {now:,} rows; "
                f"tolerance {tolerance:.0%})",
                subject=table,
                detail={
                    "table": table,
                    "previous_rows": then,
                    "rows": now,
                    "shrink": round(shrink, 4),
                    "tolerance": tolerance,
                },
            )
    return checked


def run(ladder: Ladder, ph: PhaseHandle) -> None:
    """Count rows exactly, then compare with the minimums and the last PASS."""
    reads = ladder.prefetched
    if reads is not None and reads.volume is not None:
        rows, total = reads.result(reads.volume)  # the same count, read on its own connection (prefetch.py)
    else:
        rows, total = count_rows(ladder.conn, only=ladder.in_scope)
    ladder.facts["volume"] = {"rows": rows, "total_rows": total, "tables": len(rows)}
    ladder.builder.measurements.counts["rows_restored"] = total
    counted = f"{total:,} rows in {len(rows)} tables"

    minimums = _check_minimums(ladder, rows)
    before = previous_rows(ladder.previous)
    drifts = _check_drift(ladder, rows, before) if before is not None else 0
    ladder.facts["volume"]["compared_with_previous"] = before is not None

    if minimums == 0 and before is None:
        ph.skip()
        ph.detail = f"counted {counted}; no min_rows and no previous PASS to compare against"
        return
    parts = [counted]
    if minimums:
        parts.append(f"{minimums} minimums checked")
    parts.append(f"{drifts} tables compared with the last PASS" if before is not None else "no previous PASS")
    ph.detail = "; ".join(parts)
