"""The physical drill's verify phases: which databases, amcheck's heap check, the verify ladder per database.

Rules this module enforces (called by drill.py):
- the ladder runs on ``restore.database``, else on every database of the
  recovered cluster with a user table; none is ``EMPTY_RESTORE``;
- unless ``verify.amcheck`` is false, every table's heap is checked first (the
  B-tree rung does not read the heap, a physical copy can damage it): a damaged
  table is ``HEAP_CORRUPT`` and the ladder does not run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.physical.drill import _Physical


def verify_phase(run: _Physical, previous: dict[str, Any] | None) -> None:
    assert run.cluster is not None
    from drillbook.drills.backup_restore.verify import run_ladder

    with run.b.phase("verify.databases") as ph:
        found = run.cluster.databases()
        wanted = run.drill.restore.database
        if wanted:
            dbs = [d for d, _ in found if d == wanted]
            if not dbs:
                run.fail(
                    ph,
                    "EMPTY_RESTORE",
                    f"restore.database {wanted!r} is not in the restored cluster "
                    f"(found: {', '.join(d for d, _ in found)})",
                    "verify",
                )
        else:
            dbs = [d for d, n in found if n > 0]
            if not dbs:
                run.fail(
                    ph,
                    "EMPTY_RESTORE",
                    "no database of the restored cluster has a user table "
                    f"(databases: {', '.join(d for d, _ in found)})",
                    "verify",
                )
        run.b.checked()
        ph.detail = ", ".join(f"{d} ({n} table(s))" for d, n in found if d in dbs)
    run.b.details["verified_databases"] = dbs
    base = run.base_dir or Path.cwd()
    from functools import partial

    from drillbook.drills.backup_restore.verify.ladder import table_in_scope
    from drillbook.drills.backup_restore.verify.prefetch import Prefetch
    from drillbook.drills.backup_restore.verify.tiers import skipped_by_tier
    from drillbook.settings import DrillTimeouts

    verify = run.drill.verify
    timeouts = DrillTimeouts()
    count = skipped_by_tier(verify, "verify.volume") is None
    btree = verify.amcheck is not False and skipped_by_tier(verify, "verify.integrity") is None
    cluster = run.cluster

    # the heap check, the exact row count and the B-tree checks are independent full reads: the count and
    # the B-tree checks start on connections of their own while the heap check runs here, and the rungs
    # wait for their results (prefetch.py); closed (cancelled, joined) before teardown, whatever happened
    with Prefetch(statement_timeout_s=timeouts.verify_statement) as prefetch:

        def start_reads(db: str, amcheck_schema: str | None) -> None:
            prefetch.start(
                db,
                cluster.dsn(db),
                volume=count,
                amcheck_schema=amcheck_schema if btree else None,
                in_scope=partial(table_in_scope, verify),
            )

        if verify.amcheck is not False:
            with run.b.phase("verify.heap") as ph:
                ph.detail = _heap_check(run, dbs, ph, start_reads)
                if any(f.code == "HEAP_CORRUPT" for f in run.b.findings):
                    ph.detail += "; the ladder is not run on damaged tables (reading them fails)"
                    run.abort("verify.heap")
        for db in dbs:
            start_reads(db, None)  # the count of a database the heap check did not reach
            run_ladder(
                run.b,
                scratch_dsn=cluster.dsn(db),
                verify=verify,
                base_dir=base,
                previous=previous,
                source_server_version=cluster.version,
                timeouts=timeouts,
                prefetched=prefetch.for_db(db),
            )


def _heap_check(
    run: _Physical, dbs: list[str], ph: Any, start_reads: Callable[[str, str | None], None]
) -> str:
    """verify_heapam on every table of ``dbs``: the B-tree rung does not read the heap, a physical copy can damage it.

    ``start_reads(db, amcheck_schema)`` starts the ladder's other long reads of ``db`` once amcheck is in place.
    """
    assert run.cluster is not None
    import psycopg
    import psycopg.sql

    from drillbook.drills.backup_restore.verify.integrity import _amcheck_schema

    tables = bad = 0
    for db in dbs:
        try:
            with psycopg.connect(run.cluster.dsn(db), autocommit=True, connect_timeout=30) as conn:
                # amcheck where the backup installed it, else in drillbook's own schema (the recovered cluster is
                # ours to change); called schema-qualified so a verify_heapam the backup brings is never used
                schema, how = _amcheck_schema(conn)
                if schema is None:
                    raise psycopg.errors.UndefinedFunction(how)
                start_reads(db, schema)
                fn = f"{psycopg.sql.Identifier(schema).as_string(conn)}.verify_heapam"
                rels = [
                    r[0]
                    for r in conn.execute(
                        "select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                        "where c.relkind in ('r','m') and c.relpersistence = 'p' and n.nspname not in "
                        "('pg_catalog','information_schema') and n.nspname not like 'pg_toast%' order by 1"
                    ).fetchall()
                ]
                for rel in rels:
                    tables += 1
                    try:
                        rows = conn.execute(
                            f"select blkno, offnum, msg from {fn}(%s::regclass, "  # type: ignore[arg-type]
                            "on_error_stop => false, check_toast => true) limit 5",
                            (rel,),
                        ).fetchall()
                    except (
                        psycopg.Error
                    ) as exc:  # a page that cannot be read (checksum failure) is corrupt too
                        rows = [(None, None, str(exc).strip().splitlines()[0][:300])]
                    run.b.checked()
                    if rows:
                        bad += 1
                        run.b.find(
                            "HEAP_CORRUPT",
                            f"{db}.{rel}: {rows[0][2]} (block {rows[0][0]})",
                            subject=f"{db}.{rel}",
                            detail={
                                "problems": "; ".join(f"block {r[0]} offset {r[1]}: {r[2]}" for r in rows)[
                                    :1000
                                ]
                            },
                        )
                        ph.status = "failed"
        except psycopg.Error as exc:
            if run.drill.verify.amcheck is True:
                run.b.find(
                    "AMCHECK_UNAVAILABLE",
                    f"heap check in {db!r}: {type(exc).__name__}: {str(exc).strip()[:300]}",
                    subject=db,
                )
                ph.status = "failed"
            return f"heap check not run in {db!r}: {str(exc).strip()[:200]}"
    run.b.measurements.counts["heap_tables_checked"] = tables
    return f"{tables} table(s) heap-checked, {bad} corrupt"
