"""``drillbook digest --schedule`` (issue 11 item 8): a preset croniter lacks works, a bad one is a clear error."""

from __future__ import annotations

import pytest

from drillbook.cli import main
from drillbook.ledger.store import Ledger


@pytest.fixture
def digest_argv(catalogue_file, ledger_dsn, tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK", raising=False)
    monkeypatch.setenv("DRILLBOOK_OUTBOX", str(tmp_path / "outbox.jsonl"))
    return ["digest", "--ledger-dsn", ledger_dsn, "--catalogue", str(catalogue_file)]


def test_quarterly_digest_runs(digest_argv, ledger_dsn, capsys):
    assert main([*digest_argv, "--schedule", "@quarterly", "--now", "2026-04-01T00:00:00+00:00"]) == 0
    captured = capsys.readouterr()
    assert "drillbook quarterly scorecard" in captured.out
    assert "Traceback" not in captured.err
    with Ledger(ledger_dsn) as ledger:
        row = ledger.query(record_type="digest")[0]
    scorecard = row.result["details"]["scorecard"]
    assert scorecard["start"].startswith("2026-01-01") and row.dag_id == "dr_digest__quarterly"


def test_a_five_field_cron_is_accepted(digest_argv, capsys):
    assert main([*digest_argv, "--schedule", "0 6 * * 1"]) == 0
    assert "custom scorecard" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("schedule", "says"),
    [
        ("@fortnightly", "unknown schedule preset '@fortnightly'"),
        ("every tuesday", "invalid cron expression 'every tuesday'"),
        ("61 * * * *", "invalid cron expression"),
    ],
)
def test_a_bad_schedule_is_a_clear_error_not_a_traceback(digest_argv, capsys, schedule, says):
    assert main([*digest_argv, "--schedule", schedule]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drillbook: error: --schedule: ") and says in err, err
    assert "Traceback" not in err
