"""Population and controls: expected occurrences from the schedule, matched to the ledger's runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from drillbook.evidence.controls import EXCEPTIONS, NOT_RUN, VERIFIED, control_rows, status_of
from drillbook.evidence.coverage import coverage
from drillbook.evidence.population import MISSED, Series, count_occurrences, occurrence_times, population

from .conftest import backup_drill, catalogue

START = datetime(2026, 1, 1, tzinfo=UTC)


def _utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "day", "expected"),
    [
        (
            "30 2 * * *",
            (2026, 3, 29),
            1,
        ),  # spring forward: 02:30 does not exist, the drill still runs once (03:00)
        ("30 2 * * *", (2026, 10, 25), 1),  # fall back: 02:30 happens twice, the drill runs once
        ("0 * * * *", (2026, 3, 29), 23),  # an hourly drill follows the elapsed hours: 23 on a 23-hour day
        ("0 * * * *", (2026, 10, 25), 25),  # and 25 on a 25-hour day
        ("30 2 * * *", (2026, 3, 28), 1),
    ],
)
def test_population_counts_follow_the_schedule_across_dst(schedule, day, expected):
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Berlin")
    start = datetime(*day, tzinfo=tz).astimezone(UTC)
    end = datetime(*(datetime(*day) + timedelta(days=1)).timetuple()[:3], tzinfo=tz).astimezone(UTC)
    assert count_occurrences(schedule, start=start, end=end, timezone="Europe/Berlin") == expected


def test_spring_forward_occurrence_is_at_the_first_existing_minute():
    times = list(
        occurrence_times(
            Series("d", "backup_restore", "30 2 * * *", ()),
            start=_utc(2026, 3, 28),
            end=_utc(2026, 3, 31),
            timezone="Europe/Berlin",
        )
    )
    assert [t.isoformat() for t in times] == [
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:30:00+00:00",
        "2026-03-30T00:30:00+00:00",
    ]


def test_duration_schedules_fire_every_interval_from_the_period_start():
    series = Series("d", "negative", "every 4w", (), every=28 * 86400.0)
    assert (
        len(list(occurrence_times(series, start=START, end=START + timedelta(weeks=8), timezone="UTC"))) == 2
    )
    assert (
        len(
            list(
                occurrence_times(series, start=START, end=START + timedelta(weeks=8, days=1), timezone="UTC")
            )
        )
        == 3
    )


def test_a_drill_that_missed_18_of_19_runs_shows_18_exceptions_and_is_not_verified(ledger_dsn, history):
    cat = catalogue(backup_drill())
    history.add(_utc(2026, 1, 10, 3, 31))
    end = _utc(2026, 1, 20)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        (row,) = control_rows(conn, cat, start=START, end=end, as_of=end)
    assert (row.control, row.expected, row.covered, row.runs, row.passes, row.missed) == (
        "SOC2:A1.2",
        19,
        1,
        1,
        1,
        18,
    )
    assert row.status == EXCEPTIONS and row.status != VERIFIED
    assert "18 of 19 expected runs missed" in row.status_words
    assert [e.what for e in row.exceptions] == [MISSED] * 18
    assert row.exceptions[0].at == _utc(2026, 1, 1, 3, 30) and row.exceptions[-1].at == _utc(
        2026, 1, 19, 3, 30
    )


def test_every_run_present_and_passing_is_verified(ledger_dsn, history):
    cat = catalogue(backup_drill())
    for day in range(1, 20):
        history.add(_utc(2026, 1, day, 3, 34))
    end = _utc(2026, 1, 20)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        (row,) = control_rows(conn, cat, start=START, end=end, as_of=end)
        occurrences = list(population(conn, cat, start=START, end=end, as_of=end))
    assert (row.expected, row.covered, row.passes, row.status) == (19, 19, 19, VERIFIED)
    assert all(o.outcome == "PASS" and len(o.runs) == 1 for o in occurrences)


def test_a_fail_and_an_error_are_exceptions_with_their_dates(ledger_dsn, history):
    cat = catalogue(backup_drill())
    for day in range(1, 6):
        verdict = {2: "FAIL", 4: "ERROR"}.get(day, "PASS")
        history.add(_utc(2026, 1, day, 3, 34), verdict=verdict)
    end = _utc(2026, 1, 6)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        (row,) = control_rows(conn, cat, start=START, end=end, as_of=end)
    assert row.status == EXCEPTIONS and row.newest.verdict == "PASS"
    assert [(e.what, e.at.day) for e in row.exceptions] == [("FAIL", 2), ("ERROR", 4)]


def test_a_run_inside_the_grace_is_pending_not_missed(ledger_dsn):
    cat = catalogue(backup_drill())
    as_of = _utc(2026, 1, 1, 4, 0)  # 30 minutes after the due time, grace 1h
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        (row,) = control_rows(conn, cat, start=START, end=as_of, as_of=as_of)
        assert (row.expected, row.missed, row.status) == (0, 0, "NOT DUE")
        (late,) = control_rows(conn, cat, start=START, end=_utc(2026, 1, 1, 5), as_of=_utc(2026, 1, 1, 5))
    assert (late.expected, late.missed, late.status) == (1, 1, NOT_RUN)


def test_status_rule_table():
    assert status_of(expected=19, runs=1, missed=18, failed=0, newest_verdict="PASS") == EXCEPTIONS
    assert status_of(expected=19, runs=19, missed=0, failed=0, newest_verdict="PASS") == VERIFIED
    assert (
        status_of(expected=19, runs=19, missed=0, failed=0, newest_verdict="PASS", unverifiable="x")
        == "UNVERIFIABLE"
    )


def test_coverage_lists_what_has_no_passing_evidence_first(ledger_dsn, history):
    certs = {
        "name": "web_certs",
        "kind": "certificates",
        "schedule": "0 6 * * *",
        "controls": ["SOC2:CC6.7"],
        "endpoints": [{"address": "a.example:443"}, {"address": "b.example:443"}],
    }
    cat = catalogue(backup_drill(), certs)
    history.add(
        _utc(2026, 1, 2, 6, 1),
        drill="web_certs",
        kind="certificates",
        target="a.example:443",
        controls=("SOC2:CC6.7",),
    )
    history.add(
        _utc(2026, 1, 2, 6, 1),
        drill="web_certs",
        kind="certificates",
        target="b.example:443",
        verdict="FAIL",
        controls=("SOC2:CC6.7",),
        run_id="scheduled__2026-01-02T06:00:00+00:00",
    )
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        items = coverage(conn, cat, start=START, end=_utc(2026, 1, 3))
    assert [(i.name, i.covered) for i in items] == [
        ("endpoint b.example:443", False),
        ("drillbook_source (backups backups/shop)", False),
        ("endpoint a.example:443", True),
    ]


def test_the_digest_counts_expected_runs_with_the_same_rule():
    """A daily drill runs once on a fall-back day: the digest must not expect two (and then count one missed)."""
    from zoneinfo import ZoneInfo

    from drillbook.reporting.scoring import expected_runs

    tz = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 10, 25, tzinfo=tz).astimezone(UTC)
    end = datetime(2026, 10, 26, tzinfo=tz).astimezone(UTC)
    assert expected_runs("30 2 * * *", start=start, end=end, timezone="Europe/Berlin") == 1
    assert expected_runs("0 * * * *", start=start, end=end, timezone="Europe/Berlin") == 25


# -- since: a drill added inside a period is expected from when it came into force ------------------------------
def test_a_drill_in_force_since_mid_period_is_expected_from_then_not_from_the_period_start(
    ledger_dsn, history
):
    for day in range(10, 20):
        history.add(_utc(2026, 1, day, 3, 34))
    end = _utc(2026, 1, 20)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        (added,) = control_rows(
            conn, catalogue(backup_drill(since="2026-01-10")), start=START, end=end, as_of=end
        )
        (without,) = control_rows(conn, catalogue(backup_drill()), start=START, end=end, as_of=end)
        occurrences = list(
            population(conn, catalogue(backup_drill(since="2026-01-10")), start=START, end=end, as_of=end)
        )
    assert (added.expected, added.covered, added.missed, added.status) == (10, 10, 0, VERIFIED)
    assert occurrences[0].due == _utc(2026, 1, 10, 3, 30)
    # the same ledger without since: the nine days before it are missed exceptions (the old behaviour)
    assert (without.expected, without.missed, without.status) == (19, 9, EXCEPTIONS)


def test_since_still_finds_a_missed_run_after_it(ledger_dsn, history):
    for day in (10, 11, 13):
        history.add(_utc(2026, 1, day, 3, 34))
    end = _utc(2026, 1, 14)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        (row,) = control_rows(
            conn, catalogue(backup_drill(since="2026-01-10")), start=START, end=end, as_of=end
        )
    assert (row.expected, row.missed, row.status) == (4, 1, EXCEPTIONS)
    assert [(e.what, e.at) for e in row.exceptions] == [(MISSED, _utc(2026, 1, 12, 3, 30))]


def test_since_after_the_period_expects_nothing_and_a_date_is_midnight_in_the_catalogue_timezone(ledger_dsn):
    end = _utc(2026, 1, 20)
    with psycopg.connect(ledger_dsn, autocommit=True) as conn:
        (later,) = control_rows(
            conn, catalogue(backup_drill(since="2026-02-01")), start=START, end=end, as_of=end
        )
    assert (later.expected, later.missed, later.status) == (0, 0, "NOT DUE")
    # 2026-01-10 in Tokyo starts at 2026-01-09 15:00 UTC: the 2026-01-09 03:30 Tokyo run (18:30 UTC the day
    # before) is before it, the 2026-01-10 03:30 Tokyo run (2026-01-09 18:30 UTC) is the first expected
    from drillbook.evidence.population import series_of

    (s,) = series_of(catalogue(backup_drill(since="2026-01-10"), timezone="Asia/Tokyo"))
    assert s.since == _utc(2026, 1, 9, 15)
    times = list(occurrence_times(s, start=START, end=_utc(2026, 1, 11), timezone="Asia/Tokyo"))
    assert times == [_utc(2026, 1, 9, 18, 30), _utc(2026, 1, 10, 18, 30)]


def test_a_negative_drill_with_since_fires_from_since():
    series = Series("d", "negative", "every 4w", (), every=28 * 86400.0, since=START + timedelta(days=3))
    times = list(occurrence_times(series, start=START, end=START + timedelta(weeks=8), timezone="UTC"))
    assert times == [START + timedelta(days=3), START + timedelta(days=31)]


def test_the_digest_expects_no_run_before_since():
    from drillbook.reporting.scoring import expected_runs

    end = _utc(2026, 1, 20)
    assert expected_runs("30 3 * * *", start=START, end=end) == 19
    assert expected_runs("30 3 * * *", start=START, end=end, since=_utc(2026, 1, 10)) == 10
    assert expected_runs("30 3 * * *", start=START, end=end, since=_utc(2026, 2, 1)) == 0
    assert expected_runs("30 3 * * *", start=START, end=end, since=_utc(2025, 6, 1)) == 19


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", 20260110, True, ""])
def test_a_since_that_is_not_a_date_is_refused_with_the_key_and_the_value(bad):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        catalogue(backup_drill(since=bad))
    text = str(err.value)
    assert "since" in text and "came into force" in text and repr(bad) in text


def test_since_accepts_a_yaml_date_a_timestamp_and_iso_text():
    from datetime import date

    for value, expected in [
        (date(2026, 1, 10), "2026-01-10"),
        (datetime(2026, 1, 10, 9, tzinfo=UTC), "2026-01-10T09:00:00+00:00"),
        ("2026-01-10T09:00:00Z", "2026-01-10T09:00:00+00:00"),
    ]:
        assert catalogue(backup_drill(since=value)).drills[0].since == expected
