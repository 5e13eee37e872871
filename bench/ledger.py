"""Benchmark the evidence ledger at a year of hourly drills (~100,000 records).

Builds a valid hash chain in Python and bulk-loads it with COPY, then times what
auditors run — ``evidence list`` for one month and one control, ``evidence
export`` of a year to CSV and JSON, and ``evidence verify`` — each against a
baseline measured in the same run on the same rows (``count(*)`` of the month's
rows for list, a bare ``COPY ... TO STDOUT`` of the year for export). Prints
seconds, ratios and peak memory (ru_maxrss).

    python bench/ledger.py [--rows 100000]     # DRILLBOOK_TEST_PG_DSN or an embedded pgserver
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

DRILLS = [  # (kind, drill, controls): 12 hourly drills ≈ 105,000 records a year
    ("backup_restore", f"db_{i}", ["SOC2:A1.2", "ISO27001:A.8.13", "NIST:CP-9(1)"]) for i in range(4)
] + [
    ("data_quality", f"table_{i}", ["SOC2:A1.3"]) for i in range(3)
] + [
    ("certificates", f"edge_{i}", ["ISO27001:A.5.30"]) for i in range(3)
] + [
    ("alert_path", f"pager_{i}", ["DORA:Art.12", "NIST:CP-4"]) for i in range(2)
]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def template_result() -> dict:
    """A realistic backup-restore result (phases, measurements, one finding), as the ledger stores it."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(kind="backup_restore", drill="db_0", target="orders@db.internal:5432/orders",
                            controls=DRILLS[0][2], objectives={"rto_seconds": 900.0, "rpo_seconds": 3600.0})
    for name in ("locate", "fetch", "restore", "verify"):
        with builder.phase(name) as ph:
            ph.detail = f"{name} ok"
            builder.checked()
    builder.find("ARTEFACT_UNVERIFIED", "no .sha256 sidecar for s3://backups/orders/2026-01-01.dump",
                 subject="s3://backups/orders/2026-01-01.dump")
    builder.measurements.rto_seconds = 41.2
    builder.measurements.rpo_seconds = 1830.0
    builder.measurements.counts.update({"tables": 42, "rows": 1_250_000})
    return builder.finish().to_json_dict()


def generate(rows: int, start: datetime, span: timedelta) -> Iterator[tuple]:
    """Yield COPY rows with a valid chain (hash computed in Python exactly as Ledger.record does)."""
    from drillbook.ledger.canonical import COLUMNS, GENESIS_HASH, canonical_json, normalise, record_hash

    base = normalise(template_result())
    step = span / rows
    prev = GENESIS_HASH
    for seq in range(1, rows + 1):
        kind, drill, controls = DRILLS[seq % len(DRILLS)]
        at = start + step * seq
        doc = dict(base, kind=kind, drill=drill, controls=controls,
                   verdict="FAIL" if seq % 97 == 0 else "PASS",
                   started_at=at.isoformat(), finished_at=(at + timedelta(seconds=41)).isoformat())
        doc["measurements"] = dict(base["measurements"], rto_seconds=round(30 + (seq % 600) / 10, 1))
        fields = {
            "seq": seq, "recorded_at": at, "record_type": "drill", "kind": kind, "drill": drill,
            "target": base["target"], "verdict": doc["verdict"], "controls": controls,
            "dag_id": f"dr_{kind}__{drill}", "run_id": f"scheduled__{at:%Y-%m-%dT%H:%M:%S}+00:00__{seq}",
            "task_id": "drill", "map_index": -1, "try_number": 1, "trigger": "scheduled",
            "result": doc, "prev_hash": prev,
        }
        fields["hash"] = record_hash(fields)
        prev = fields["hash"]
        yield tuple(canonical_json(fields[c]) if c == "result" else fields[c] for c in COLUMNS)


def timed(fn, repeat: int = 5) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """A superuser DSN: DRILLBOOK_TEST_PG_DSN, else an embedded pgserver in a temp dir."""
    dsn = os.environ.get("DRILLBOOK_TEST_PG_DSN")
    if dsn:
        yield dsn
        return
    import pgserver

    data = Path(tempfile.mkdtemp(prefix="drillbook-bench-pg-"))
    srv = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield srv.get_uri("postgres")
    finally:
        srv.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def run(admin_dsn: str, rows: int, *, keep: bool = False) -> None:
    import psycopg

    from drillbook.cli import ledger_cmds
    from drillbook.ledger.canonical import COLUMNS
    from drillbook.ledger.store import Ledger
    from drillbook.resources.pg import with_dbname

    name = f"bench_ledger_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_dbname(admin_dsn, name)
    try:
        ledger = Ledger(dsn)
        ledger.init_schema()
        end = datetime.now(UTC).replace(microsecond=0)
        start = end - timedelta(days=365)
        t0 = time.perf_counter()
        with psycopg.connect(dsn) as conn, conn.cursor() as cur:
            # A year of history with its own timestamps: bypass the seal trigger (which would stamp every
            # row with the current time) as the superuser the bench runs as; hashes are computed above.
            cur.execute("SET session_replication_role = replica")
            with cur.copy(f"COPY drillbook_evidence ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in generate(rows, start, timedelta(days=365)):
                    copy.write_row(row)
            conn.commit()
            conn.execute("ANALYZE drillbook_evidence")
            conn.commit()
        load = time.perf_counter() - t0
        print(f"loaded {rows} records with a valid chain in {load:.1f} s ({rows / load:,.0f} rows/s); "
              f"peak RSS {peak_mb():.0f} MB")
        rss_after_load = peak_mb()

        month_since = (end - timedelta(days=60)).date().isoformat()
        month_until = (end - timedelta(days=31)).date().isoformat()
        year_since, year_until = (start - timedelta(days=1)).date().isoformat(), end.date().isoformat()
        control = "SOC2:A1.2"
        os.environ["DRILLBOOK_LEDGER_DSN"] = dsn
        tmp = Path(tempfile.mkdtemp(prefix="drillbook-bench-out-"))
        conn = ledger.connection

        def month_count() -> None:
            conn.execute(
                "SELECT count(*) FROM drillbook_evidence WHERE controls @> ARRAY[%s]::text[] "
                "AND recorded_at >= %s AND recorded_at < %s",
                (control, month_since, month_until),
            ).fetchall()

        def cli_list() -> None:
            with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
                assert ledger_cmds.main(["evidence", "list", "--control", control, "--since", month_since,
                                         "--until", month_until, "--limit", "0"]) == 0
            cli_list.lines = out.getvalue().count("\n") - 2  # type: ignore[attr-defined]

        def copy_baseline() -> None:
            with open(tmp / "baseline.csv", "wb") as fh, conn.cursor() as cur, \
                    cur.copy("COPY drillbook_evidence TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
                for chunk in copy:
                    fh.write(chunk)

        def control_copy_baseline() -> None:
            sql = ("COPY (SELECT * FROM drillbook_evidence WHERE controls @> ARRAY['SOC2:A1.2']::text[]) "
                   "TO STDOUT WITH (FORMAT csv, HEADER)")
            with open(tmp / "baseline-control.csv", "wb") as fh, conn.cursor() as cur, cur.copy(sql) as copy:
                for chunk in copy:
                    fh.write(chunk)

        def cli_export(fmt: str, *extra: str):
            def go() -> None:
                with contextlib.redirect_stderr(io.StringIO()):
                    assert ledger_cmds.main(["evidence", "export", "--since", year_since, "--until", year_until,
                                             "--format", fmt, "--output", str(tmp / f"year.{fmt}"), *extra]) == 0
            return go

        t_count = timed(month_count)
        t_list = timed(cli_list)
        t_copy = timed(copy_baseline, repeat=3)
        t_csv = timed(cli_export("csv"), repeat=3)
        t_json = timed(cli_export("json"), repeat=3)
        size_mb = (tmp / "year.csv").stat().st_size / 1e6
        t_ccopy = timed(control_copy_baseline, repeat=3)
        t_ccsv = timed(cli_export("csv", "--control", control), repeat=3)
        csize_mb = (tmp / "year.csv").stat().st_size / 1e6

        def month_export() -> None:
            with contextlib.redirect_stderr(io.StringIO()):
                assert ledger_cmds.main(["evidence", "export", "--since", month_since, "--until", month_until,
                                         "--control", control, "--output", str(tmp / "month.csv")]) == 0

        t_month = timed(month_export)
        msize_mb = (tmp / "month.csv").stat().st_size / 1e6
        t0 = time.perf_counter()
        report = ledger.verify()
        t_verify = time.perf_counter() - t0
        assert report.ok and report.checked == rows, report.message
        rss_end = peak_mb()

        print(f"evidence list   (1 month, control {control}, {cli_list.lines} rows): {t_list * 1000:7.1f} ms"  # type: ignore[attr-defined]
              f"   baseline count(*) of the same rows {t_count * 1000:6.1f} ms   ratio {t_list / t_count:5.1f}x")
        print(f"evidence export (1 year, CSV, {rows} rows, {size_mb:.0f} MB): {t_csv * 1000:7.1f} ms"
              f"   baseline bare COPY TO of the table {t_copy * 1000:6.1f} ms   ratio {t_csv / t_copy:5.2f}x")
        print(f"evidence export (1 year, JSON):              {t_json * 1000:7.1f} ms   ratio {t_json / t_copy:5.2f}x vs COPY")
        print(f"evidence export (1 year, control {control}, CSV, {csize_mb:.0f} MB): {t_ccsv * 1000:7.1f} ms"
              f"   baseline bare COPY of the same rows {t_ccopy * 1000:6.1f} ms   ratio {t_ccsv / t_ccopy:5.2f}x")
        print(f"evidence export (1 month, control {control}, CSV, {msize_mb:.1f} MB): {t_month * 1000:7.1f} ms")
        print(f"evidence verify (whole chain, {rows} rows):  {t_verify:7.2f} s ({rows / t_verify:,.0f} records/s), OK")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"peak RSS: {rss_after_load:.0f} MB after load, {rss_end:.0f} MB after list/export/verify "
              f"(growth {rss_end - rss_after_load:.0f} MB: reads stream)")
        ledger.close()
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if keep:
            print(f"kept the benchmark ledger: DRILLBOOK_LEDGER_DSN={dsn!r}")
        else:
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (needs DRILLBOOK_TEST_PG_DSN)")
    args = parser.parse_args()
    with server() as dsn:
        run(dsn, args.rows, keep=args.keep and bool(os.environ.get("DRILLBOOK_TEST_PG_DSN")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
