"""Coverage: what is in scope in the catalogue against what has passing evidence in the period.

Rules this module enforces:
- in scope is every database (a backup_restore drill's source and backup
  location, a data_quality drill's table), every certificate source (endpoint,
  file or directory, ACM region) and every alert path of every enabled drill;
- an item has passing evidence when a PASS 'drill' row of its drill in the
  period names it as its target (exactly, or under it: a certificate found
  in a directory is named by its own path). Drills that write one row per run
  (backup_restore, data_quality) cover their items with any PASS row;
- items with no passing evidence are listed first; the ledger is read as one
  aggregate per (drill, kind, target), a number bounded by the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue


@dataclass
class ScopeItem:
    what: str  # database, certificate source, alert path
    name: str  # as the catalogue names it
    drill: str
    kind: str
    target: str | None  # the row target that covers it; None: any row of the drill
    last_pass: datetime | None = None
    last_result: str | None = None  # newest verdict of a row covering it

    @property
    def covered(self) -> bool:
        return self.last_pass is not None


def scope_of(catalogue: Catalogue) -> list[ScopeItem]:
    """Every in-scope item of the enabled drills."""
    items: list[ScopeItem] = []
    for d in catalogue.drills:
        if not d.enabled:
            continue
        if d.kind == "backup_restore":
            source = d.source.connection if d.source is not None else "backups only"
            items.append(
                ScopeItem("database", f"{source} (backups {d.backup.location})", d.name, d.kind, None)
            )
        elif d.kind == "data_quality":
            items.append(ScopeItem("database", f"{d.connection}: {d.table or 'query'}", d.name, d.kind, None))
        elif d.kind == "certificates":
            items += [
                ScopeItem("certificate source", f"endpoint {e.address}", d.name, d.kind, e.address)
                for e in d.endpoints
            ]
            items += [ScopeItem("certificate source", f"file {f}", d.name, d.kind, f) for f in d.files]
            if d.acm is not None:
                items.append(ScopeItem("certificate source", f"ACM {d.acm.region}", d.name, d.kind, None))
        elif d.kind == "alert_path":
            items += [ScopeItem("alert path", p.name, d.name, d.kind, p.name) for p in d.paths]
    return items


_SQL = """
SELECT drill, kind, target, max(recorded_at) FILTER (WHERE verdict = 'PASS') AS last_pass,
       (array_agg(verdict ORDER BY seq DESC))[1] AS last_verdict
FROM {table}
WHERE record_type = 'drill' AND recorded_at >= %s AND recorded_at < %s AND drill = ANY(%s)
GROUP BY drill, kind, target
"""


def _covers(item: ScopeItem, target: str) -> bool:
    if item.target is None:
        return True
    return target == item.target or target.startswith(item.target.rstrip("/") + "/") or item.target in target


def coverage(conn: Any, catalogue: Catalogue, *, start: datetime, end: datetime) -> list[ScopeItem]:
    """Scope items with their newest passing evidence in [start, end); uncovered first."""
    from psycopg.rows import tuple_row

    from drillbook.ledger.schema import TABLE

    items = scope_of(catalogue)
    by_drill: dict[tuple[str, str], list[ScopeItem]] = {}
    for item in items:
        by_drill.setdefault((item.drill, item.kind), []).append(item)
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(_SQL.format(table=TABLE), (start, end, sorted({i.drill for i in items})))
        for drill, kind, target, last_pass, last_verdict in cur:
            for item in by_drill.get((drill, kind), []):
                if not _covers(item, target):
                    continue
                item.last_result = last_verdict if item.last_result is None else item.last_result
                if last_pass is not None and (item.last_pass is None or last_pass > item.last_pass):
                    item.last_pass = last_pass
    return sorted(items, key=lambda i: (i.covered, i.what, i.name))


COVERAGE_HEADER = ("evidence", "in scope", "name", "drill", "last pass")


def table_rows(items: list[ScopeItem]) -> list[tuple[str, ...]]:
    return [
        (
            "PASSING" if i.covered else "NONE",
            i.what,
            i.name,
            i.drill,
            f"{i.last_pass.astimezone(UTC):%Y-%m-%d %H:%M}" if i.last_pass else "-",
        )
        for i in items
    ]
