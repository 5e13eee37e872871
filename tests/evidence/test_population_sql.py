"""The SQL population (the pages' and the digest's) equals the Python reference ``match`` on varied ledgers."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from drillbook.evidence import population_cache
from drillbook.evidence.controls import control_rows
from drillbook.evidence.population import missed_by_drill, occurrence_times, series_of
from drillbook.evidence.population_sql import control_rows_sql, missed_by_drill_sql, series_tallies

from .conftest import backup_drill, catalogue


def _utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _view(rows, *, newest: int | None = None):
    """Everything a page shows of a control row; the reference's exceptions cut to the newest ``newest``."""
    out = []
    for r in rows:
        exceptions = [(e.at, e.drill, e.kind, e.what, e.run_id, e.seq) for e in r.exceptions]
        if newest is not None:
            exceptions = exceptions[max(0, len(exceptions) - newest) :]
        out.append(
            {
                "control": r.control,
                "drills": r.drills,
                "status": r.status,
                "words": r.status_words,
                "counts": (r.expected, r.covered, r.runs, r.passes, r.missed, r.failed),
                "newest": r.newest,
                "newest_by_drill": dict(sorted(r.newest_by_drill.items())),
                "exceptions": exceptions,
            }
        )
    return out


def _fill(history, cat, *, start, end, seed: int) -> None:
    """Runs around every due time of every series: missed, on time, late, several per window, several
    records per run (mapped tasks) with mixed verdicts, strays before the first due time, rows outside the
    period, and rows of other kinds and drills that belong to no series."""
    rnd = random.Random(seed)
    tz = cat.defaults.timezone
    events: list[tuple[datetime, dict]] = []
    for s in series_of(cat):
        dues = list(occurrence_times(s, start=start, end=end, timezone=tz))
        kind = "backup_restore" if s.kind == "negative" else s.kind
        drill_kind = s.kind if s.kind == "negative" else kind
        first = dues[0] if dues else end
        for k in range(rnd.randint(1, 2)):  # strays: before the first due time, inside the period
            at = start + (first - start) * rnd.random() if first > start else None
            if at is not None and at < first:
                events.append((at, {"drill": s.drill, "kind": drill_kind, "run": f"stray{k}_{s.drill}"}))
        events.append(
            (start - timedelta(minutes=7), {"drill": s.drill, "kind": drill_kind, "run": f"before_{s.drill}"})
        )
        for i, due in enumerate(dues):
            window = (dues[i + 1] if i + 1 < len(dues) else end) - due
            for j in range(rnd.choice([0, 0, 1, 1, 1, 2, 3])):
                at = due + window * rnd.random() * 0.9
                if at >= end:
                    continue
                events.append((at, {"drill": s.drill, "kind": drill_kind, "run": f"r{i}_{j}_{s.drill}"}))
        events.append(
            (end + timedelta(minutes=3), {"drill": s.drill, "kind": drill_kind, "run": f"after_{s.drill}"})
        )
    for n in range(3):  # a drill not in the catalogue and a kind of no series
        events.append(
            (start + timedelta(hours=5 + n), {"drill": "unknown", "kind": "backup_restore", "run": f"u{n}"})
        )
        events.append(
            (start + timedelta(hours=6 + n), {"drill": "hourly", "kind": "alert_path", "run": f"k{n}"})
        )
    events.sort(key=lambda e: e[0])
    for at, ev in events:
        records = rnd.choice([1, 1, 1, 2, 3])  # a mapped drill: several records in one run
        for m in range(records):
            verdict = rnd.choices(["PASS", "FAIL", "ERROR", "SKIPPED"], weights=[70, 12, 8, 10])[0]
            drill = ev["drill"]
            controls = next((d.controls for d in cat.drills if d.name == drill), ["SOC2:A1.2"])
            history.add(
                at + timedelta(seconds=m * 11),
                drill=drill,
                kind=ev["kind"],
                verdict=verdict,
                controls=tuple(controls),
                run_id=ev["run"],
                map_index=m if records > 1 else -1,
            )


CATALOGUES = {
    # DST in Berlin on 2026-03-29: an hourly drill fires 23 times that day, a 02:30 drill once (at 03:00)
    "berlin_dst": (
        lambda: catalogue(
            backup_drill("hourly", "0 * * * *", controls=("SOC2:A1.2", "ISO27001:A.8.13")),
            backup_drill("nightly", "30 2 * * *", controls=("SOC2:A1.2",), negative={"every": "1d"}),
            backup_drill("weekly", "15 4 * * 1", controls=("ISO27001:A.8.13",)),
            timezone="Europe/Berlin",
        ),
        _utc(2026, 3, 27, 0, 0),
        _utc(2026, 3, 31, 0, 0),
    ),
    "utc_week": (
        lambda: catalogue(
            backup_drill("a", "*/30 * * * *", controls=("SOC2:A1.2",)),
            backup_drill("b", "0 */6 * * *", controls=("SOC2:A1.2", "DORA:Art.12")),
            backup_drill("off", "0 1 * * *", controls=("DORA:Art.12",), enabled=False),
        ),
        _utc(2026, 1, 1, 0, 0),
        _utc(2026, 1, 4, 0, 0),
    ),
    # drills added inside the period (since): nothing expected before it, strays before it still count as runs;
    # two drills share a schedule with different since (the due times are kept per schedule and since)
    "since": (
        lambda: catalogue(
            backup_drill("a", "0 */4 * * *", controls=("SOC2:A1.2",), since="2026-01-02T09:00:00Z"),
            backup_drill("b", "0 */4 * * *", controls=("SOC2:A1.2", "DORA:Art.12")),
            backup_drill(
                "c", "30 2 * * *", controls=("DORA:Art.12",), since="2026-01-03", negative={"every": "1d"}
            ),
            backup_drill("d", "0 6 * * *", controls=("DORA:Art.12",), since="2026-03-01"),
        ),
        _utc(2026, 1, 1, 0, 0),
        _utc(2026, 1, 5, 0, 0),
    ),
}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", sorted(CATALOGUES))
def test_sql_population_equals_the_reference(ledger_dsn, history, name, seed):
    make, start, end = CATALOGUES[name]
    cat = make()
    _fill(history, cat, start=start, end=end, seed=seed)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        # as_of inside the period: the newest occurrences are still inside the grace (PENDING)
        for as_of in (end - timedelta(minutes=50), end + timedelta(days=1)):
            reference = control_rows(conn, cat, start=start, end=end, as_of=as_of)
            assert _view(
                control_rows_sql(conn, cat, start=start, end=end, as_of=as_of, newest=10**6)
            ) == _view(reference)
            assert _view(control_rows_sql(conn, cat, start=start, end=end, as_of=as_of, newest=5)) == _view(
                reference, newest=5
            )
            assert missed_by_drill_sql(conn, cat, start=start, end=end, as_of=as_of) == missed_by_drill(
                conn, cat, start=start, end=end, as_of=as_of
            )
            for control in ("SOC2:A1.2", "DORA:Art.12"):
                assert _view(
                    control_rows_sql(conn, cat, start=start, end=end, as_of=as_of, only=control, newest=10**6)
                ) == _view(control_rows(conn, cat, start=start, end=end, as_of=as_of, only=control))
    assert any(r.missed for r in reference) and any(r.failed for r in reference)  # the ledger is varied


def test_sql_population_of_an_empty_ledger_and_a_period_with_no_due_time(ledger_dsn, history):
    cat = catalogue(backup_drill("weekly", "15 4 * * 1"))
    start, end = _utc(2026, 1, 6), _utc(2026, 1, 9)  # Tuesday to Friday: nothing due
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        assert _view(control_rows_sql(conn, cat, start=start, end=end, as_of=end)) == _view(
            control_rows(conn, cat, start=start, end=end, as_of=end)
        )
        history.add(_utc(2026, 1, 7, 4, 20), drill="weekly", verdict="FAIL")  # a stray: a run, an exception
        (row,) = control_rows_sql(conn, cat, start=start, end=end, as_of=end)
        assert (row.expected, row.runs, row.failed, row.status) == (0, 1, 1, "AT RISK")
        assert _view([row]) == _view(control_rows(conn, cat, start=start, end=end, as_of=end))


def _tally_view(tallies):
    return [
        (t.series, t.runs, t.passes, t.failed, t.covered, t.missed, t.newest, t.newest_stray, t.exceptions)
        for t in tallies
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(CATALOGUES))
def test_finished_part_and_open_tail_merge_to_the_whole(ledger_dsn, history, name, seed):
    """Split at any cut (day edges, due times, between them, before the first due time, where a mapped run
    crosses it), the cached head and the live tail give exactly the one-statement tallies."""
    make, start, end = CATALOGUES[name]
    cat = make()
    _fill(history, cat, start=start, end=end, seed=seed)
    dues = sorted(
        {d for s in series_of(cat) for d in occurrence_times(s, start=start, end=end, timezone="UTC")}
    )
    rnd = random.Random(seed)
    cuts = {start + timedelta(days=n) for n in range(1, (end - start).days + 1)}  # the UTC day edges
    cuts |= set(rnd.sample(dues, 6)) | {start + timedelta(minutes=1), end}
    cuts |= {start + (end - start) * rnd.random() for _ in range(6)}
    seen = {"hit": 0, "miss": 0, "straddle": 0}
    before = dict(population_cache.CACHE_STATS)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        for as_of in (end - timedelta(minutes=50), end + timedelta(days=1)):
            for newest in (0, 3, 10**6):
                whole = _tally_view(
                    series_tallies(conn, cat, start=start, end=end, as_of=as_of, newest=newest)
                )
                for cut in sorted(cuts):
                    for _twice in range(2):  # the second time from the cache
                        split = series_tallies(
                            conn, cat, start=start, end=end, as_of=as_of, newest=newest, cut=cut
                        )
                        assert _tally_view(split) == whole, (cut, as_of, newest)
            reference = control_rows(conn, cat, start=start, end=end, as_of=as_of)
            assert _view(
                control_rows_sql(conn, cat, start=start, end=end, as_of=as_of, cached=True)
            ) == _view(reference, newest=20)
    for k in seen:
        seen[k] = population_cache.CACHE_STATS[k] - before[k]
    assert seen["hit"] > 0 and seen["miss"] > 0, seen  # both paths ran


def test_a_run_across_the_cut_is_read_whole_and_appended_rows_keep_the_cache(ledger_dsn, history):
    cat = catalogue(backup_drill("hourly", "0 * * * *"))
    start, end = _utc(2026, 1, 1), _utc(2026, 1, 3)
    cut = _utc(2026, 1, 2)
    for h in range(40):
        history.add(
            start + timedelta(hours=h, minutes=5), drill="hourly", verdict="FAIL" if h % 7 == 0 else "PASS"
        )
    as_of = end + timedelta(days=1)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:

        def check() -> None:
            split = series_tallies(conn, cat, start=start, end=end, as_of=as_of, cut=cut)
            assert _tally_view(split) == _tally_view(
                series_tallies(conn, cat, start=start, end=end, as_of=as_of)
            )
            assert _view(control_rows_sql(conn, cat, start=start, end=end, as_of=as_of, newest=5)) == _view(
                control_rows(conn, cat, start=start, end=end, as_of=as_of), newest=5
            )

        before = dict(population_cache.CACHE_STATS)
        check()
        check()
        assert population_cache.CACHE_STATS["miss"] - before["miss"] == 1
        assert population_cache.CACHE_STATS["hit"] - before["hit"] == 1
        history.add(
            _utc(2026, 1, 2, 22, 10), drill="hourly", verdict="ERROR"
        )  # appended: the head still holds
        check()
        assert population_cache.CACHE_STATS["hit"] - before["hit"] == 2
        # one run (mapped: two records) from 23:59:55 to 00:00:06 crosses the cut: split an hour earlier
        history.add(cut - timedelta(seconds=5), drill="hourly", verdict="PASS", run_id="across", map_index=0)
        history.add(cut + timedelta(seconds=6), drill="hourly", verdict="FAIL", run_id="across", map_index=1)
        before = dict(population_cache.CACHE_STATS)
        check()
        assert population_cache.CACHE_STATS["straddle"] == before["straddle"]
        assert population_cache.CACHE_STATS["miss"] - before["miss"] == 1  # the head up to 23:00, once
        check()
        assert population_cache.CACHE_STATS["hit"] - before["hit"] == 1
        # a run from 17:30 to 00:30 spans every cut tried (midnight, 23, 22, 21 and 18 h): read whole, once
        history.add(
            cut - timedelta(hours=6, minutes=30), drill="hourly", verdict="PASS", run_id="long", map_index=0
        )
        history.add(cut + timedelta(minutes=30), drill="hourly", verdict="ERROR", run_id="long", map_index=1)
        before = dict(population_cache.CACHE_STATS)
        check()
        assert population_cache.CACHE_STATS["straddle"] - before["straddle"] == 1


def test_the_cache_is_bounded_and_safe_across_threads(ledger_dsn, history):
    from concurrent.futures import ThreadPoolExecutor

    cat = catalogue(backup_drill("hourly", "0 * * * *"))
    start = _utc(2026, 1, 1)
    for h in range(24 * 5):
        history.add(
            start + timedelta(hours=h, minutes=3), drill="hourly", verdict="PASS" if h % 5 else "FAIL"
        )
    end, as_of = start + timedelta(days=5), start + timedelta(days=6)

    def one(n: int):
        with psycopg.connect(ledger_dsn, autocommit=True) as conn:
            cut = start + timedelta(hours=1 + n % 90)
            return _tally_view(
                series_tallies(conn, cat, start=start, end=end, as_of=as_of, cut=cut, newest=n % 4)
            )

    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        whole = {
            n: _tally_view(series_tallies(conn, cat, start=start, end=end, as_of=as_of, newest=n))
            for n in range(4)
        }
    with ThreadPoolExecutor(8) as pool:
        for n, got in zip(range(200), pool.map(one, range(200)), strict=True):
            assert got == whole[n % 4], n
    assert len(population_cache._HEADS) <= population_cache._HEADS_MAX
