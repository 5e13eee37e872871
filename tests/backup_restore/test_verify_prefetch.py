"""The ladder's prefetched reads (verify/prefetch.py) on a real database: same results, failures never PASS, close joins.

The physical drill starts the volume count and the B-tree checks on connections of their own while its
heap check runs; these tests pin what that must never change: the rungs record exactly what they would
have read themselves, a read that raised is a crash of the rung that consumes it (never a PASS, never a
silent second read), and ``close`` cancels what still runs and returns only when no worker is left.
"""

from __future__ import annotations

import threading
import time
from functools import partial

import psycopg

from drillbook.drills.backup_restore.catalogue import VerifySpec
from drillbook.drills.backup_restore.verify import integrity, run_ladder
from drillbook.drills.backup_restore.verify.ladder import table_in_scope
from drillbook.drills.backup_restore.verify.prefetch import Prefetch
from drillbook.drills.base import ResultBuilder
from drillbook.errors import DrillAborted

from .test_verify_integrity import amcheck_shop  # noqa: F401  (the embedded pgserver ships no amcheck)
from .test_verify_ladder import INCLUDE, healthy_verify, ladder, shop_db, shop_template  # noqa: F401

AMCHECK = "drillbook_amcheck"


def _install_amcheck(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema, how = integrity._amcheck_schema(conn)
    assert schema is not None, how
    return schema


def _prefetched_ladder(dsn: str, prefetch: Prefetch, **verify: object):  # type: ignore[no-untyped-def]
    spec = VerifySpec.model_validate(verify)
    builder = ResultBuilder(kind="backup_restore", drill="verify_test", target="scratch")
    try:
        run_ladder(
            builder,
            scratch_dsn=dsn,
            verify=spec,
            base_dir=INCLUDE,
            previous=None,
            prefetched=prefetch.for_db("db"),
        )
    except DrillAborted:
        pass
    return builder.finish()


def _comparable(result) -> tuple:  # type: ignore[no-untyped-def]
    return (
        result.verdict.value,
        result.measurements.counts["checks_run"],
        sorted((f.code, f.subject) for f in result.findings),
        result.details["verify"]["volume"],
        {k: v for k, v in result.details["verify"]["integrity"].items() if k != "amcheck"},
        [(p.name, p.status) for p in result.phases],
    )


def test_prefetched_reads_record_exactly_what_the_rungs_read_themselves(amcheck_shop):  # noqa: F811
    schema = _install_amcheck(amcheck_shop)
    spec = {**healthy_verify(), "amcheck": True}
    alone = ladder(amcheck_shop, **spec)
    with Prefetch() as prefetch:
        reads = prefetch.start(
            "db",
            amcheck_shop,
            volume=True,
            amcheck_schema=schema,
            in_scope=partial(table_in_scope, VerifySpec.model_validate(spec)),
        )
        assert reads.volume is not None and reads.btree is not None
        together = _prefetched_ladder(amcheck_shop, prefetch, **spec)
    assert together.verdict.value == "PASS", [(f.code, f.message) for f in together.findings]
    assert _comparable(together) == _comparable(alone)
    assert together.details["verify"]["integrity"]["indexes_checked"] > 0


def test_a_prefetched_count_that_raised_crashes_the_volume_rung_never_pass(shop_db, monkeypatch):  # noqa: F811
    from drillbook.drills.backup_restore.verify import volume

    def broken(conn, only=None):  # type: ignore[no-untyped-def]
        raise psycopg.errors.DataCorrupted("invalid page in block 7 of relation base/5/16384")

    monkeypatch.setattr(volume, "count_rows", broken)
    with Prefetch() as prefetch:
        prefetch.start("db", shop_db, volume=True, amcheck_schema=None, in_scope=lambda t: True)
        result = _prefetched_ladder(shop_db, prefetch, **healthy_verify())
    assert result.verdict.value == "ERROR"
    crashed = [f for f in result.findings if f.code == "DRILL_CRASHED"]
    assert crashed and crashed[0].subject == "verify.volume" and "invalid page" in crashed[0].message
    names = [p.name for p in result.phases]
    assert "verify.integrity" not in names  # the ladder stopped at the rung whose read failed
    assert "rows" not in result.details["verify"].get("volume", {})


def test_prefetched_btree_checks_that_raised_crash_the_integrity_rung_never_pass(amcheck_shop, monkeypatch):  # noqa: F811
    schema = _install_amcheck(amcheck_shop)

    def broken(conn, schema, in_scope, *, stop=None):  # type: ignore[no-untyped-def]
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(integrity, "btree_outcomes", broken)
    with Prefetch() as prefetch:
        prefetch.start("db", amcheck_shop, volume=False, amcheck_schema=schema, in_scope=lambda t: True)
        result = _prefetched_ladder(amcheck_shop, prefetch, **healthy_verify(), amcheck=True)
    assert result.verdict.value == "ERROR"
    crashed = [f for f in result.findings if f.code == "DRILL_CRASHED"]
    assert crashed and crashed[0].subject == "verify.integrity"


def test_a_prefetch_to_an_unreachable_database_is_an_error_not_a_pass(shop_db):  # noqa: F811
    from drillbook.resources.pg import with_dbname

    gone = with_dbname(shop_db, "drillbook_no_such_db_7f3a")
    with Prefetch() as prefetch:
        prefetch.start("db", gone, volume=True, amcheck_schema=None, in_scope=lambda t: True)
        result = _prefetched_ladder(shop_db, prefetch, **healthy_verify())
    assert result.verdict.value == "ERROR"
    assert any(f.code == "DRILL_CRASHED" and f.subject == "verify.volume" for f in result.findings)


def test_close_cancels_a_running_read_and_joins_every_worker(shop_db):  # noqa: F811
    started = threading.Event()

    def slow(conn):  # type: ignore[no-untyped-def]
        started.set()
        conn.execute("select pg_sleep(60)")

    prefetch = Prefetch()
    running = prefetch.submit(shop_db, slow)
    queued = [prefetch.submit(shop_db, slow) for _ in range(3)]
    assert started.wait(30)
    began = time.monotonic()
    prefetch.close()
    assert time.monotonic() - began < 10  # cancelled, not waited out
    assert running.done() and isinstance(running.exception(), psycopg.errors.QueryCanceled)
    assert any(f.cancelled() for f in queued)  # never started
    assert all(f.done() for f in queued)
    assert not [t for t in threading.enumerate() if t.name.startswith("drillbook-verify")]
    with psycopg.connect(shop_db, autocommit=True) as conn:
        left = conn.execute(
            "select count(*) from pg_stat_activity where application_name = 'drillbook-verify' and state = 'active'"
        ).fetchone()[0]
    assert left == 0
    prefetch.close()  # idempotent
