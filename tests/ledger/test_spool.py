"""The evidence spool: the ledger's server stops mid-drill, the result waits on disk, nothing is lost or doubled.

Each test runs its own private PostgreSQL (pgserver) so it can stop and start it; the restart gap is a
few seconds here (the issue's 20 s changes nothing but the wait).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pgserver
import psycopg
import pytest
import yaml

from drillbook.cli import common, ledger_cmds
from drillbook.errors import EvidenceSpooled
from drillbook.ledger.spool import EvidenceSpool
from drillbook.ledger.store import Ledger
from drillbook.run.pipeline import record_and_report
from tests.ledger.conftest import ctx, make_result

RESTART_GAP = 3.0  # seconds the ledger stays down (the scenario uses 20)
ROOT = Path(__file__).resolve().parents[2]


class PrivateServer:
    """A PostgreSQL server this test may stop and start (the same data directory and socket)."""

    def __init__(self, data: Path):
        self.data = data
        self.server = pgserver.get_server(data, cleanup_mode="stop")
        self.dsn = self.server.get_uri("postgres")

    def stop(self) -> None:
        self.server.cleanup()

    def start(self) -> None:
        self.server = pgserver.get_server(self.data, cleanup_mode="stop")
        assert self.server.get_uri("postgres") == self.dsn

    def rows(self) -> list[tuple[int, str, str]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute("SELECT seq, run_id, verdict FROM drillbook_evidence ORDER BY seq").fetchall()


@pytest.fixture
def server() -> Iterator[PrivateServer]:
    data = Path(tempfile.mkdtemp(prefix="drillbook-spool-pg-"))
    srv = PrivateServer(data)
    Ledger(srv.dsn, spool=None).init_schema()
    try:
        yield srv
    finally:
        srv.server.cleanup()


@pytest.fixture
def spool(tmp_path) -> EvidenceSpool:
    return EvidenceSpool(tmp_path / "evidence-spool.jsonl")


def test_ledger_stopped_during_a_drill_spools_and_the_flush_writes_it(server, spool, monkeypatch, capsys):
    monkeypatch.setenv("DRILLBOOK_SPOOL", str(spool.path))
    monkeypatch.setenv("DRILLBOOK_LEDGER_DSN", server.dsn)
    args = argparse.Namespace(ledger_dsn=server.dsn, catalogue=None)
    common.record_cli_result(make_result(), args, notify=False)  # the ledger is up: written
    assert "evidence: ledger record #1" in capsys.readouterr().err
    server.stop()  # ... the drill runs while the ledger's server goes down
    reported = common.record_cli_result(make_result(fail=True), args, notify=False)
    err = capsys.readouterr().err
    assert "evidence: SPOOLED" in err and str(spool.path) in err and "drillbook ledger flush" in err
    assert reported.record is None and "EVIDENCE_SPOOLED" in reported.result.codes()
    assert reported.result.verdict.value == "FAIL"  # the verdict is untouched
    assert len(spool.read().pending) == 1
    time.sleep(RESTART_GAP)
    server.start()
    assert ledger_cmds.main(["ledger", "status"]) == 0
    assert "1 record(s) waiting for the ledger" in capsys.readouterr().out
    assert ledger_cmds.main(["ledger", "flush", "--spool", str(spool.path)]) == 0
    out = capsys.readouterr().out
    assert "1 record(s) replayed, 0 left" in out
    rows = server.rows()
    assert [(seq, verdict) for seq, _, verdict in rows] == [(1, "PASS"), (2, "FAIL")]
    stored = Ledger(server.dsn, spool=None).get(2)
    assert (
        "EVIDENCE_SPOOLED" not in stored.codes
    )  # the ledger holds the signed-off result, not the report note
    assert ledger_cmds.main(["ledger", "flush", "--spool", str(spool.path)]) == 0
    assert "is empty: nothing to replay" in capsys.readouterr().out
    assert Ledger(server.dsn, spool=None).verify().ok


def test_the_next_run_replays_the_spool_in_order_before_its_own_record(server, spool):
    ledger = Ledger(server.dsn, spool=spool)
    ledger.record(make_result(), ctx("run_0"))
    server.stop()
    for i in (1, 2):
        with pytest.raises(EvidenceSpooled, match=r"AdminShutdown|cannot connect"):
            ledger.record(make_result(fail=i == 2), ctx(f"run_{i}"))
    server.start()
    assert ledger.record(make_result(), ctx("run_3")).seq == 4
    assert [run for _, run, _ in server.rows()] == ["run_0", "run_1", "run_2", "run_3"]
    assert not spool.has_pending()


def test_the_spooled_result_is_reported_through_the_notify_path(server, spool, slack, tmp_path):
    from drillbook.catalogue import load_catalogue
    from drillbook.notify import Notifier, SlackSender
    from drillbook.notify.slack import SlackConnection
    from tests.notify.conftest import CATALOGUE, make_ctx
    from tests.notify.conftest import make_result as notify_result

    path = tmp_path / "drills.yaml"
    path.write_text(yaml.safe_dump(CATALOGUE, sort_keys=False))
    catalogue = load_catalogue(path)
    notifier = Notifier(
        catalogue=catalogue,
        sender=SlackSender(connection=SlackConnection(token=slack.token, base_url=slack.base_url)),
    )
    ledger = Ledger(server.dsn, spool=spool)
    ledger.init_schema()
    server.stop()
    reported = record_and_report(
        notify_result("FAIL"), ctx=make_ctx(run_id="spooled"), ledger=ledger, notifier=notifier
    )
    assert reported.spooled == str(spool.path)
    posted = json.dumps([m.__dict__ for m in slack.posted()], default=str)
    assert "EVIDENCE_SPOOLED" in posted
    server.start()
    assert ledger.flush_spool().records[0].run_id == "spooled"


def test_a_replay_that_crashed_after_its_commit_does_not_write_twice(server, spool):
    ledger = Ledger(server.dsn, spool=spool)
    server.stop()
    for i in range(3):
        with pytest.raises(EvidenceSpooled):
            ledger.record(make_result(), ctx(f"run_{i}"))
    with spool.path.open("a") as fh:
        fh.write('{"op": "record", "id": "torn')  # a write cut off by a crash
    server.start()
    # The crash state: the first entry was committed, its "done" line never written.
    first = spool.read().pending[0]
    Ledger(server.dsn, spool=None).record(make_result(), ctx("run_0"))
    assert first.ctx["run_id"] == "run_0"
    report = ledger.flush_spool()
    assert [r.created for r in report.records] == [False, True, True]
    assert len(report.quarantined) == 1 and "not a spool entry" in report.quarantined[0]  # kept in .rejected
    assert [run for _, run, _ in server.rows()] == ["run_0", "run_1", "run_2"]
    assert spool.read().pending == []


def test_killed_mid_replay_then_replayed_again_writes_each_record_once(server, spool):
    ledger = Ledger(server.dsn, spool=spool)
    server.stop()
    count = 150
    for i in range(count):
        with pytest.raises(EvidenceSpooled):
            ledger.record(make_result(), ctx(f"run_{i}"))
    server.start()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drillbook.cli.ledger_cmds",
            "ledger",
            "flush",
            "--ledger-dsn",
            server.dsn,
            "--spool",
            str(spool.path),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(server.rows()) < 10:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    written = len(server.rows())
    assert 0 < written < count, "the replay was not interrupted mid-way; raise count"
    report = Ledger(server.dsn, spool=spool).flush_spool()
    assert report.remaining == 0
    runs = [run for _, run, _ in server.rows()]
    assert sorted(runs) == sorted(f"run_{i}" for i in range(count)) and len(set(runs)) == count
    assert runs == [f"run_{i}" for i in range(count)]  # in spool order
    assert Ledger(server.dsn, spool=None).verify().ok


def test_entries_owed_to_another_ledger_are_left_alone(server, spool, fresh_db):
    ledger = Ledger(server.dsn, spool=spool)
    server.stop()
    with pytest.raises(EvidenceSpooled):
        ledger.record(make_result(), ctx("for_private"))
    server.start()
    other = Ledger(fresh_db, spool=spool, auto_init=True)
    assert other.record(make_result(), ctx("for_other")).seq == 1
    assert [r.run_id for r in other.query()] == ["for_other"]
    assert len(spool.read().pending) == 1
    assert ledger.flush_spool().records[0].run_id == "for_private"


def test_the_spool_sits_next_to_the_outbox_unless_told(monkeypatch, tmp_path):
    from drillbook.ledger.spool import spool_path
    from drillbook.notify.outbox import outbox_path
    from drillbook.settings import load_settings  # as an entry point reads them, then passes the paths down

    monkeypatch.delenv("DRILLBOOK_SPOOL", raising=False)
    monkeypatch.setenv("DRILLBOOK_OUTBOX", str(tmp_path / "o" / "outbox.jsonl"))
    settings = load_settings()
    assert (
        spool_path(settings.spool_file)
        == outbox_path(settings.outbox).parent.absolute() / "evidence-spool.jsonl"
    )
    assert spool_path(settings.spool_file) == tmp_path / "o" / "evidence-spool.jsonl"
    monkeypatch.setenv("DRILLBOOK_SPOOL", str(tmp_path / "s.jsonl"))
    assert spool_path(load_settings().spool_file) == tmp_path / "s.jsonl"


def test_the_default_spool_is_named_by_its_absolute_path(monkeypatch, tmp_path):
    """A record spooled in one directory and a `ledger flush` run from another must not meet in silence:
    every message names the spool by its absolute path, so "empty" can be seen to be another file."""
    from drillbook.ledger.spool import spool_path
    from drillbook.settings import load_settings

    monkeypatch.delenv("DRILLBOOK_SPOOL", raising=False)
    monkeypatch.delenv("DRILLBOOK_OUTBOX", raising=False)
    monkeypatch.chdir(tmp_path)
    default = load_settings().spool_file
    assert spool_path(default) == tmp_path / "var" / "evidence-spool.jsonl"
    assert spool_path(default).is_absolute() and EvidenceSpool(default).path.is_absolute()
    assert spool_path("relative.jsonl") == tmp_path / "relative.jsonl"


def test_no_spool_path_is_an_error_not_a_default(tmp_path):
    """The library never picks a spool or outbox of its own: an empty path is refused, not read from the environment."""
    from drillbook.ledger.spool import spool_path
    from drillbook.notify.outbox import outbox_path

    with pytest.raises(ValueError, match=r"Settings\.spool_file"):
        spool_path("")
    with pytest.raises(ValueError, match=r"Settings\.outbox"):
        outbox_path("")
