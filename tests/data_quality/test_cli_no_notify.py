"""``drillbook run data-quality --no-notify`` (issue 11 item 8): recorded, not posted, like the other run commands."""

from __future__ import annotations

import json

import pytest

from tests.data_quality.conftest import SUITES


def _run(dq_db, table, ledger_dsn, *extra):
    from drillbook.cli import main

    return main(
        [
            "run",
            "data-quality",
            "--dsn",
            dq_db,
            "--table",
            table,
            "--suite",
            str(SUITES / "orders_full.json"),
            "--ledger-dsn",
            ledger_dsn,
            "--json",
            *extra,
        ]
    )


def test_no_notify_records_but_does_not_post(dq_db, orders_table, ledger_dsn, slack, capsys):
    from drillbook.ledger.store import Ledger

    table = orders_table("update {table} set status = 'lost' where id = 9")
    assert _run(dq_db, table, ledger_dsn, "--no-notify") == 1
    assert json.loads(capsys.readouterr().out)["verdict"] == "FAIL"
    assert slack.posted() == [], "--no-notify must not page"
    with Ledger(ledger_dsn) as ledger:
        assert [r.verdict for r in ledger.query(record_type="drill")] == ["FAIL"]
    # the control: without the flag the same FAIL pages on-call
    assert _run(dq_db, table, ledger_dsn) == 1
    assert slack.posted("#dr-oncall"), "a FAIL without --no-notify is posted"


@pytest.mark.parametrize(
    "command", [["run", "certificates"], ["run", "alert-path"], ["run", "backup-restore"]]
)
def test_every_run_command_takes_no_notify(command, capsys):
    from drillbook.cli import main

    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    assert "--no-notify" in capsys.readouterr().out
