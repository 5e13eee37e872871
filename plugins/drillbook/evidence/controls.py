"""Controls: one row per control id in the catalogue, judged from the population of its drills.

Rules this module enforces (``status_of`` is the one rule; the digest uses it too):
- a control's numbers come from ``drillbook.evidence.population``: expected =
  occurrences of its drills due in the period (PENDING ones, still inside the
  watchdog's grace, are not counted), covered = those with a run, runs, passes
  (runs whose every row passed);
- every exception is listed with its date: a MISSED occurrence (its due time),
  and every FAIL or ERROR run (its time). A SKIPPED run is neither a pass nor an
  exception;
- status in words, first match wins:
  NOT RUN (runs expected, none happened), AT RISK (the newest run did not
  pass: broken now), EXCEPTIONS (any missed occurrence or FAIL/ERROR run:
  "18 of 19 expected runs missed" is never VERIFIED), NOT DUE (nothing was expected and nothing
  ran), and only then VERIFIED (every expected occurrence ran, no run failed,
  the newest passed) — which becomes UNVERIFIABLE when the chain does not
  verify or was not checked: a broken chain may hold forged PASS rows, while
  what it says went wrong stays an exception;
- a control's "newest" for AT RISK is the worst of its drills' newest runs;
- the ledger is read once, streamed (see ``population``); per control the
  module keeps counters and the exception list, never the records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drillbook import verdict_order
from drillbook.evidence.population import (
    MISSED,
    PENDING,
    Occurrence,
    Run,
    population,
    series_of,
)

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue

VERIFIED, EXCEPTIONS, AT_RISK, NOT_RUN, NOT_DUE, UNVERIFIABLE = (
    "VERIFIED",
    "EXCEPTIONS",
    "AT RISK",
    "NOT RUN",
    "NOT DUE",
    "UNVERIFIABLE",
)
STATUS_ORDER = {NOT_RUN: 0, AT_RISK: 1, EXCEPTIONS: 2, UNVERIFIABLE: 3, NOT_DUE: 4, VERIFIED: 5}


@dataclass(frozen=True)
class ControlException:
    """One exception: a missed occurrence or a FAIL/ERROR run, with its date."""

    at: datetime
    drill: str
    kind: str
    what: str  # MISSED, FAIL or ERROR
    run_id: str | None = None
    seq: int | None = None  # the run's last record, for a link

    def describe(self) -> str:
        run = f" run {self.run_id}" if self.run_id else ""
        return f"{self.at:%Y-%m-%d %H:%M} UTC {self.what} {self.drill}{' (negative)' if self.kind == 'negative' else ''}{run}"


@dataclass
class ControlRow:
    control: str
    drills: list[str]
    expected: int = 0
    covered: int = 0
    runs: int = 0
    passes: int = 0
    missed: int = 0
    failed: int = 0  # FAIL or ERROR runs
    exceptions: list[ControlException] = field(default_factory=list)
    newest: Run | None = None
    unverifiable: str | None = None
    newest_by_drill: dict[tuple[str, str], Run] = field(default_factory=dict)

    @property
    def newest_verdict(self) -> str | None:
        """The worst of each drill's newest verdict: one drill at risk puts the control at risk."""
        verdicts = [run.verdict for run in self.newest_by_drill.values()]
        return verdict_order.worst(verdicts)

    @property
    def status(self) -> str:
        return status_of(
            expected=self.expected,
            runs=self.runs,
            missed=self.missed,
            failed=self.failed,
            newest_verdict=self.newest_verdict,
            unverifiable=self.unverifiable,
        )

    @property
    def status_words(self) -> str:
        return describe_status(
            self.status,
            expected=self.expected,
            covered=self.covered,
            missed=self.missed,
            failed=self.failed,
            newest=self.newest,
            unverifiable=self.unverifiable,
        )


def status_of(
    *,
    expected: int,
    runs: int,
    missed: int,
    failed: int,
    newest_verdict: str | None,
    unverifiable: str | None = None,
) -> str:
    """The one status rule (module docstring), shared by the controls view and the digest."""
    if expected and not runs:
        return NOT_RUN
    if runs and newest_verdict != "PASS":
        return AT_RISK
    if missed or failed:
        return EXCEPTIONS
    if not expected and not runs:
        return NOT_DUE
    return UNVERIFIABLE if unverifiable else VERIFIED


def describe_status(
    status: str,
    *,
    expected: int,
    covered: int,
    missed: int,
    failed: int,
    newest: Run | None,
    unverifiable: str | None = None,
) -> str:
    """The status in words, with the counts that justify it."""
    newest_text = (
        f"newest {newest.verdict} at {newest.last_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        if newest
        else "no run"
    )
    if status == UNVERIFIABLE:
        return f"cannot be verified: {unverifiable}"
    if status == NOT_RUN:
        return f"not run: none of {expected} expected runs happened"
    if status == EXCEPTIONS:
        parts = []
        if missed:
            parts.append(f"{missed} of {expected} expected runs missed")
        if failed:
            parts.append(f"{failed} run{'s' if failed != 1 else ''} FAIL/ERROR")
        return f"exceptions: {', '.join(parts)}; {newest_text}"
    if status == AT_RISK:
        more = (
            f" ({missed} of {expected} expected runs missed, {failed} FAIL/ERROR)" if missed or failed else ""
        )
        return f"at risk: {newest_text}{more}"
    if status == NOT_DUE:
        return "not due: no run was expected in the period"
    return f"verified: {covered} of {expected} expected runs happened and passed; {newest_text}"


class Tally:
    """Counters of one drill series or control, fed occurrence by occurrence (flat memory)."""

    def __init__(self, row: ControlRow):
        self.row = row

    def add_run(self, run: Run) -> None:
        row = self.row
        row.runs += 1
        if run.verdict == "PASS":
            row.passes += 1
        elif run.verdict in ("FAIL", "ERROR"):
            row.failed += 1
            row.exceptions.append(
                ControlException(
                    at=run.first_at,
                    drill=run.drill,
                    kind=run.kind,
                    what=run.verdict,
                    run_id=run.run_id,
                    seq=run.last_seq,
                )
            )
        if row.newest is None or run.last_at >= row.newest.last_at:
            row.newest = run
        seen = row.newest_by_drill.get((run.drill, run.kind))
        if seen is None or run.last_at >= seen.last_at:
            row.newest_by_drill[(run.drill, run.kind)] = run

    def add(self, occ: Occurrence) -> None:
        row = self.row
        if occ.outcome == PENDING:
            for run in occ.runs:  # cannot happen (a pending occurrence has no run); kept for clarity
                self.add_run(run)
            return
        row.expected += 1
        if occ.outcome == MISSED:
            row.missed += 1
            row.exceptions.append(
                ControlException(at=occ.due, drill=occ.series.drill, kind=occ.series.kind, what=MISSED)
            )
            return
        row.covered += 1
        for run in occ.runs:
            self.add_run(run)


def control_rows(
    conn: Any,
    catalogue: Catalogue,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime | None = None,
    unverifiable: str | None = None,
    only: str | None = None,
    each: Callable[[Occurrence], None] | None = None,
) -> list[ControlRow]:
    """One row per control id of the enabled drills (or only ``only``), sorted by status then id.

    ``each`` sees every occurrence as it streams by (the pack writes its population listing with it).
    """
    every = series_of(catalogue, control=only)
    controls = sorted({c for s in every for c in s.controls if only is None or c == only})
    rows = {
        c: ControlRow(
            control=c, drills=sorted({s.label for s in every if c in s.controls}), unverifiable=unverifiable
        )
        for c in controls
    }
    tallies = {c: Tally(r) for c, r in rows.items()}
    strays: list[Run] = []
    for occ in population(conn, catalogue, start=start, end=end, as_of=as_of, control=only, strays=strays):
        if each is not None:
            each(occ)
        for control in occ.series.controls:
            if control in tallies:
                tallies[control].add(occ)
    by_key = {(s.drill, s.kind): s for s in every}
    for run in strays:  # runs before the first due time: runs (and exceptions) that cover no occurrence
        series = by_key.get((run.drill, run.kind))
        for control in series.controls if series else ():
            if control in tallies:
                tallies[control].add_run(run)
    for row in rows.values():
        row.exceptions.sort(key=lambda e: e.at)
    return sorted(rows.values(), key=lambda r: (STATUS_ORDER[r.status], r.control))


CONTROLS_HEADER = (
    "control",
    "status",
    "expected",
    "ran",
    "runs",
    "passes",
    "missed",
    "fail/error",
    "newest",
    "drills",
)


def table_rows(rows: list[ControlRow]) -> list[tuple[str, ...]]:
    """The controls table as text cells (the CLI prints it; the HTML report draws the same cells)."""
    out: list[tuple[str, ...]] = []
    for r in rows:
        newest = f"{r.newest.verdict} {r.newest.last_at.astimezone(UTC):%Y-%m-%d %H:%M}" if r.newest else "-"
        out.append(
            (
                r.control,
                r.status,
                str(r.expected),
                str(r.covered),
                str(r.runs),
                str(r.passes),
                str(r.missed),
                str(r.failed),
                newest,
                ", ".join(r.drills),
            )
        )
    return out
