"""SIGTERM and SIGKILL to ``drillbook run backup-restore`` mid-restore: no tool survives, evidence, no orphan.

Real processes: the CLI runs as a child of the test on a dump big enough that
``pg_restore -j 2`` takes a few seconds, and is signalled once the restore runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from drillbook.drills.backup_restore.scratch import PREFIX, ScratchGuard
from tests.backup_restore.conftest import pg_dump

ROWS = 1_500_000
CLI = [sys.executable, "-m", "drillbook"]


@pytest.fixture(scope="module")
def big_dump(pg, tmp_path_factory) -> Path:
    name = pg.create_database("bigsrc")
    pg.execute(
        name, "create table public.events (id bigint primary key, payload text, at timestamptz default now())"
    )
    pg.execute(
        name,
        f"insert into public.events (id, payload) select g, md5(g::text) || md5((g * 7)::text) "
        f"from generate_series(1, {ROWS}) g",
    )
    pg.execute(name, "create table public.events2 as select * from public.events")
    pg.execute(name, "create index on public.events2 (payload)")
    folder = tmp_path_factory.mktemp("big")
    try:
        return pg_dump(pg, pg.dsn(name), folder / "big.dump", "-Fc", "-Z", "1")
    finally:
        pg.drop_database(name)


def _settings(tmp_path: Path) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "shop_interrupt", "restore": {"jobs": 2}, "verify": {"min_rows": {"public.events": 1}}}
        )
    )
    return path


def _start(pg, backup: Path, settings: Path, ledger_dsn: str) -> subprocess.Popen:
    argv = [
        *CLI,
        "run",
        "backup-restore",
        "--backup",
        str(backup),
        "--scratch-dsn",
        pg.admin_dsn,
        "--config",
        str(settings),
        "--ledger-dsn",
        ledger_dsn,
        "--no-notify",
    ]
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _proc_table() -> dict[int, tuple[str, int, str]]:
    """pid -> (comm, ppid, state) of every process."""
    table: dict[int, tuple[str, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (comm, int(fields[1]), fields[0])
    return table


def _restore_pids(cli_pid: int) -> set[int]:
    """The pg_restore leader started by ``cli_pid`` and its -j workers."""
    table = _proc_table()
    leaders = {pid for pid, (comm, ppid, _) in table.items() if comm == "pg_restore" and ppid == cli_pid}
    workers = {pid for pid, (comm, ppid, _) in table.items() if comm == "pg_restore" and ppid in leaders}
    return leaders | workers


def _alive(pids: set[int]) -> set[int]:
    table = _proc_table()
    return {p for p in pids if p in table and table[p][2] != "Z"}


def _drain(proc: subprocess.Popen, lines: list[str]) -> threading.Thread:
    """Collect the CLI's output in a thread (a pipe that is not read would stall it)."""

    def run() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line.rstrip("\n"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for_restore(proc: subprocess.Popen, lines: list[str], deadline_s: float = 180) -> set[int]:
    """Wait until the restore runs with its workers; return their pids."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        pids = _restore_pids(proc.pid)
        if len(pids) >= 3:  # the leader and two workers
            return pids
        assert proc.poll() is None, "\n".join(lines)
        time.sleep(0.05)
    raise AssertionError("the restore never ran with its workers:\n" + "\n".join(lines))


def _finish(proc: subprocess.Popen, reader: threading.Thread, timeout: float = 120) -> int:
    code = proc.wait(timeout=timeout)
    reader.join(timeout=10)
    return code


def _wait_gone(pids: set[int], timeout: float = 30) -> set[int]:
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(pids)


def _drill_rows(ledger_dsn: str):
    from drillbook.ledger.store import Ledger

    return [r for r in Ledger(ledger_dsn).query(drill="shop_interrupt") if r.record_type == "drill"]


def test_sigterm_mid_restore_records_error_and_stops_the_tools(pg, big_dump, ledger_dsn, tmp_path):
    before = set(pg.databases(PREFIX))
    lines: list[str] = []
    proc = _start(pg, big_dump, _settings(tmp_path), ledger_dsn)
    reader = _drain(proc, lines)
    pids = _wait_for_restore(proc, lines)
    proc.send_signal(signal.SIGTERM)
    code = _finish(proc, reader)
    assert code == 128 + signal.SIGTERM, "\n".join(lines)
    assert _wait_gone(pids, timeout=5) == set(), "pg_restore survived the SIGTERM"
    rows = _drill_rows(ledger_dsn)
    assert [r.verdict for r in rows] == ["ERROR"], "\n".join(lines)
    assert "DRILL_INTERRUPTED" in [f["code"] for f in rows[0].result["findings"]]
    phases = {ph["name"]: ph for ph in rows[0].result["phases"]}
    assert phases["restore"]["status"] == "failed" and "SIGTERM" in phases["restore"]["detail"]
    assert phases["teardown"]["status"] == "ok"
    assert "Traceback" not in "\n".join(lines)
    assert set(pg.databases(PREFIX)) == before, "the interrupted drill must drop its scratch database"


def test_sigkill_mid_restore_takes_the_tools_and_the_next_run_reaps(
    pg, big_dump, dumps, ledger_dsn, tmp_path
):
    before = set(pg.databases(PREFIX))
    lines: list[str] = []
    settings = _settings(tmp_path)
    proc = _start(pg, big_dump, settings, ledger_dsn)
    reader = _drain(proc, lines)
    pids = _wait_for_restore(proc, lines)
    proc.kill()
    _finish(proc, reader)
    # at once, not when a worker finishes the table it is loading (a restore of this dump takes longer)
    assert _wait_gone(pids, timeout=3) == set(), "pg_restore outlived the SIGKILLed CLI"
    orphans = set(pg.databases(PREFIX)) - before
    assert len(orphans) == 1, orphans  # SIGKILL leaves no chance to drop it
    # the next run of the same drill reaps it before it starts
    settings.write_text(
        yaml.safe_dump({"name": "shop_interrupt", "verify": {"min_rows": {"public.orders": 1}}})
    )
    again: list[str] = []
    nxt = _start(pg, dumps["custom"], settings, ledger_dsn)
    assert _finish(nxt, _drain(nxt, again)) == 0, "\n".join(again)
    rows = _drill_rows(ledger_dsn)
    reaped = [f["subject"] for f in rows[-1].result["findings"] if f["code"] == "SCRATCH_REAPED"]
    assert reaped == sorted(orphans)
    assert set(pg.databases(PREFIX)) == before


def test_sigkill_to_the_whole_process_group_still_takes_the_restore_workers(
    pg, big_dump, ledger_dsn, tmp_path
):
    """A supervisor (Airflow's task runner, a container stop, `kill -9 -PGID`) kills the drill's whole group.

    The watchdog that kills ``pg_restore``'s ``-j`` workers must not be in that group, or it dies with the
    drill and the workers (in their own session) load on for the rest of their table.
    """
    lines: list[str] = []
    argv = [
        *CLI,
        "run",
        "backup-restore",
        "--backup",
        str(big_dump),
        "--scratch-dsn",
        pg.admin_dsn,
        "--config",
        str(_settings(tmp_path)),
        "--ledger-dsn",
        ledger_dsn,
        "--no-notify",
    ]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    reader = _drain(proc, lines)
    pids: set[int] = set()
    try:
        pids = _wait_for_restore(proc, lines)
        os.killpg(proc.pid, signal.SIGKILL)
        _finish(proc, reader)
        assert _wait_gone(pids, timeout=3) == set(), "pg_restore workers outlived the SIGKILLed process group"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids, timeout=10)
        # the killed run had no chance to drop its scratch database; the reaper takes it
        ScratchGuard(scratch_dsn=pg.admin_dsn).reap(drill="shop_interrupt", max_age=0)
