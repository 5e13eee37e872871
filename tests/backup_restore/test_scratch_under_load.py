"""20 drills at once as a non-superuser CREATEDB role, autovacuum forced on: 20/20 PASS, nothing left behind.

``DROP DATABASE ... WITH (FORCE)`` as such a role fails when an autovacuum
worker is in the database; the teardown must not need to signal it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from drillbook.drills.backup_restore.drill import run_backup_restore
from drillbook.drills.backup_restore.scratch import PREFIX
from tests.backup_restore.conftest import make_drill

DRILLS = 20
AUTOVACUUM = {
    "autovacuum_naptime": "1",
    "autovacuum_vacuum_threshold": "1",
    "autovacuum_analyze_threshold": "1",
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_vacuum_insert_threshold": "1",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_max_workers": "6",
    "autovacuum_vacuum_cost_delay": "0",
    "max_connections": "300",
}


@pytest.fixture(scope="module")
def busy_server():
    """A private pgserver with aggressive autovacuum and a CREATEDB (non-superuser) drill role."""
    import pgserver
    import psycopg
    from pgserver._commands import pg_ctl
    from psycopg.conninfo import make_conninfo

    data = Path(tempfile.mkdtemp(prefix="drillbook-test-autovacuum-"))
    server = pgserver.get_server(data, cleanup_mode="stop")
    admin = server.get_uri("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        for key, value in AUTOVACUUM.items():
            conn.execute(f"alter system set {key} = '{value}'")
        conn.execute("create role drill_scratch login createdb")
        conn.execute("grant create on database postgres to drill_scratch")  # for the scratch registry
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=data, user=server.system_user, timeout=60)
    try:
        yield admin, make_conninfo(admin, user="drill_scratch")
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def test_twenty_concurrent_drills_pass_and_leave_nothing(busy_server, dumps, tmp_path):
    import psycopg

    admin, scratch = busy_server
    with psycopg.connect(admin, autocommit=True) as conn:
        assert conn.execute("show autovacuum_naptime").fetchone()[0] == "1s"
        assert not conn.execute("select rolsuper from pg_roles where rolname = 'drill_scratch'").fetchone()[0]
    drill = make_drill(str(dumps["custom"].parent), name="shop_load", restore={"jobs": 1, "no_owner": True})
    results: dict[int, object] = {}

    def one(i: int) -> None:
        results[i] = run_backup_restore(
            drill=drill, scratch_dsn=scratch, work_dir=tmp_path / f"w{i}", run_id=f"manual__load_{i}"
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(DRILLS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    seconds = time.monotonic() - start
    assert len(results) == DRILLS, "a drill thread did not finish"
    verdicts = {i: r.verdict.value for i, r in results.items()}  # type: ignore[attr-defined]
    problems = {
        i: [(f.code, f.message[:160]) for f in r.findings if f.severity.at_least("low")]  # type: ignore[attr-defined]
        for i, r in results.items()
        if r.verdict.value != "PASS"
        or any(  # type: ignore[attr-defined]
            f.code == "SCRATCH_NOT_DROPPED" for f in r.findings
        )
    }  # type: ignore[attr-defined]
    assert list(verdicts.values()) == ["PASS"] * DRILLS and not problems, problems
    with psycopg.connect(admin, autocommit=True) as conn:
        left = conn.execute(
            "select datname from pg_database where starts_with(datname, %s)", (PREFIX,)
        ).fetchall()
        vacuumed = conn.execute(
            "select count(*) from pg_stat_database where datname like 'drillbook_scratch_%'"
        ).fetchone()
    assert left == [], f"orphan scratch databases: {left}"
    print(f"\n{DRILLS} concurrent drills in {seconds:.1f}s, all PASS, no orphan ({vacuumed})")


def test_a_drop_that_fails_after_a_pass_is_a_finding_and_the_next_run_reaps(
    busy_server, dumps, tmp_path, monkeypatch
):
    """A session of another role the drill may not end keeps the database: PASS + SCRATCH_NOT_DROPPED, then reaped."""
    import psycopg

    from drillbook.drills.backup_restore import scratch as scratch_mod
    from drillbook.drills.backup_restore.scratch import ScratchGuard

    admin, scratch = busy_server
    monkeypatch.setattr(
        scratch_mod, "DROP_RETRY_S", 1.0
    )  # the bound, shortened; the behaviour is the real one
    drill = make_drill(str(dumps["custom"].parent), name="shop_stuck", restore={"jobs": 1, "no_owner": True})
    squatter: list[psycopg.Connection] = []

    def on_phase(phase) -> None:
        if phase.name == "measure":  # a superuser's session in the scratch database, as a DBA's psql would be
            name = squatter_target[0]
            squatter.append(psycopg.connect(scratch_mod.pg.with_dbname(admin, name), autocommit=True))

    squatter_target: list[str] = []

    def on_phase_capture(phase) -> None:
        if phase.name == "scratch":
            with psycopg.connect(admin, autocommit=True) as conn:
                squatter_target.append(
                    conn.execute(
                        "select datname from pg_database where datname like %s order by oid desc limit 1",
                        (PREFIX + "shop_stuck_%",),
                    ).fetchone()[0]
                )
        on_phase(phase)

    result = run_backup_restore(
        drill=drill,
        scratch_dsn=scratch,
        work_dir=tmp_path / "w",
        run_id="manual__stuck",
        on_phase=on_phase_capture,
    )
    try:
        assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
        assert "SCRATCH_NOT_DROPPED" in [f.code for f in result.findings]
        assert result.phases[-1].name == "teardown" and result.phases[-1].status == "failed"
    finally:
        for conn in squatter:
            conn.close()
    left = squatter_target[0]
    report = ScratchGuard(scratch_dsn=scratch).reap(drill="shop_stuck", max_age=6 * 3600)
    assert report.dropped == [left]
