"""Benchmark the evidence ledger at a year of hourly drills (~100,000 records).

Builds a valid hash chain in Python and bulk-loads it with COPY, then times what
auditors run — ``evidence list`` for one month and one control, ``evidence
export`` of a year to CSV and JSON, and ``evidence verify`` — each against a
baseline measured in the same run on the same rows (``count(*)`` of the month's
rows for list, a bare ``COPY ... TO STDOUT`` of the year for export). Prints
seconds, ratios and peak memory (ru_maxrss).

The scale rows of issue 14 (``scale_rows``, also imported by ``bench/scale.py``):
full ``evidence verify --full`` against a bare ordered COPY of the same rows,
incremental verify from yesterday's signed checkpoint against a bare COPY of
the rows after it, and ``drillbook digest @daily`` / ``@monthly`` run as their
own processes (wall time and that process's peak RSS, via ``os.wait4``) against
a bare COPY of the period's rows.

    python bench/ledger.py [--rows 100000] [--scale-only]   # DRILLBOOK_TEST_PG_DSN or an embedded pgserver
    python bench/ledger.py --rows 1000000 --scale-only --keep   # then: --database bench_ledger_XXXX (reuse)
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

DRILLS = (
    [  # (kind, drill, controls): 12 hourly drills ≈ 105,000 records a year
        ("backup_restore", f"db_{i}", ["SOC2:A1.2", "ISO27001:A.8.13", "NIST:CP-9(1)"]) for i in range(4)
    ]
    + [("data_quality", f"table_{i}", ["SOC2:A1.3"]) for i in range(3)]
    + [("certificates", f"edge_{i}", ["ISO27001:A.5.30"]) for i in range(3)]
    + [("alert_path", f"pager_{i}", ["DORA:Art.12", "NIST:CP-4"]) for i in range(2)]
)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def template_result() -> dict:
    """A realistic backup-restore result (phases, measurements, one finding), as the ledger stores it."""
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(
        kind="backup_restore",
        drill="db_0",
        target="orders@db.internal:5432/orders",
        controls=DRILLS[0][2],
        objectives={"rto_seconds": 900.0, "rpo_seconds": 3600.0},
    )
    for name in ("locate", "fetch", "restore", "verify"):
        with builder.phase(name) as ph:
            ph.detail = f"{name} ok"
            builder.checked()
    builder.find(
        "ARTEFACT_UNVERIFIED",
        "no .sha256 sidecar for s3://backups/orders/2026-01-01.dump",
        subject="s3://backups/orders/2026-01-01.dump",
    )
    builder.measurements.rto_seconds = 41.2
    builder.measurements.rpo_seconds = 1830.0
    builder.measurements.counts.update({"tables": 42, "rows": 1_250_000})
    return builder.finish().to_json_dict()


def generate(rows: int, start: datetime, span: timedelta) -> Iterator[tuple]:
    """Yield COPY rows with a valid chain, fast enough for a million records (~10 s).

    The result document of each drill is encoded once as canonical JSON with placeholder values; each row
    substitutes its own values (already canonical: sorted keys are unchanged) and is hashed with hashlib
    over the same text ``record_text`` builds. ``tests/foundation/test_bench_smoke.py`` verifies the chain.
    """
    import hashlib
    import json

    from drillbook.ledger.canonical import GENESIS_HASH, canonical_json, normalise

    base = normalise(template_result())
    templates = []
    for kind, drill, controls in DRILLS:
        doc = dict(
            base,
            kind=kind,
            drill=drill,
            controls=controls,
            verdict="@@V@@",
            started_at="@@S@@",
            finished_at="@@F@@",
        )
        doc["measurements"] = dict(base["measurements"], rto_seconds="@@R@@")
        text = canonical_json(doc).replace('"@@R@@"', "{rto}").replace("@@V@@", "{verdict}")
        text = text.replace("@@S@@", "{started}").replace("@@F@@", "{finished}")
        head = (
            f'{{"controls":{json.dumps(controls, separators=(",", ":"))},"dag_id":"dr_{kind}__{drill}",'
            f'"drill":"{drill}","kind":"{kind}","map_index":-1,"prev_hash":"'
        )
        templates.append((kind, drill, controls, text, head))
    target = json.dumps(base["target"], ensure_ascii=False)
    step_us = int(span / timedelta(microseconds=1)) // rows
    start_us = int((start - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    prev = GENESIS_HASH
    sha = hashlib.sha256
    for seq in range(1, rows + 1):
        kind, drill, controls, text, head = templates[seq % len(DRILLS)]
        at = epoch + timedelta(microseconds=start_us + step_us * seq)
        ts = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        verdict = "FAIL" if seq % 97 == 0 else "PASS"
        result = (
            text.replace("{rto}", repr(round(30 + (seq % 600) / 10, 1)), 1)
            .replace("{verdict}", verdict, 1)
            .replace("{started}", at.isoformat(), 1)
            .replace("{finished}", (at + timedelta(seconds=41)).isoformat(), 1)
        )
        run_id = f"scheduled__{at:%Y-%m-%dT%H:%M:%S}+00:00__{seq}"
        body = (
            f'{head}{prev}","record_type":"drill","recorded_at":"{ts}","result":{result},'
            f'"run_id":"{run_id}","seq":{seq},"target":{target},"task_id":"drill","trigger":"scheduled",'
            f'"try_number":1,"verdict":"{verdict}"}}'
        )
        digest = sha((prev + body).encode()).hexdigest()
        yield (
            seq,
            ts,
            "drill",
            kind,
            drill,
            base["target"],
            verdict,
            controls,
            f"dr_{kind}__{drill}",
            run_id,
            "drill",
            -1,
            1,
            "scheduled",
            result,
            prev,
            digest,
        )
        prev = digest


def bare_copy(conn, sql: str, params: tuple = ()) -> int:
    """Bytes of ``COPY (sql) TO STDOUT``: the baseline that only moves the rows."""
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT", params) as copy:
        for chunk in copy:
            n += len(chunk)
    return n


def _child(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run a drillbook command in its own process: (wall seconds, its peak RSS in MB, exit code)."""
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):  # 1: the scorecard has drills at risk, which is fine here
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"{' '.join(argv[:5])} exited {proc.returncode}: {err[-2000:]}")
    if proc.stderr:
        proc.stderr.close()
    return wall, usage.ru_maxrss / 1024, proc.returncode


# ``--verify-workers``: the full verify is timed once per entry (None: the default split, see
# ``drillbook.ledger.chainstream.default_workers``), each against the same bare COPY.
VERIFY_WORKERS: list[int | None] = [None]


def scale_rows(dsn: str, *, end: datetime, tmp: Path) -> list[str]:
    """Issue 14's rows on a loaded ledger (see the module docstring); returns the printed lines."""
    import psycopg
    import yaml
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from drillbook.ledger import checkpoint as cpmod
    from drillbook.ledger.checkpoint import CheckpointSettings
    from drillbook.ledger.store import Ledger

    key = Ed25519PrivateKey.generate().private_bytes_raw().hex()
    settings = CheckpointSettings(private_key=key)
    today = end.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    lines: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Yesterday's digest signed the head as it was at midnight: the checkpoint an incremental verify starts at.
        row = conn.execute(
            "SELECT seq, hash FROM drillbook_evidence WHERE recorded_at < %s ORDER BY seq DESC LIMIT 1",
            (today,),
        ).fetchone()
        assert row is not None, "the ledger has no record before today"
        with conn.cursor() as cur:
            cpmod.store_in_db(
                cur, cpmod.sign(int(row[0]), str(row[1]), signer=settings.signer(), source="digest:bench")
            )
        since = int(row[0])
        total = conn.execute("SELECT max(seq) FROM drillbook_evidence").fetchone()[0]
        ledger = Ledger(dsn)

        def full(workers: int | None = None) -> None:
            report = ledger.verify(checkpoints=settings, full=True, workers=workers)
            assert report.ok and report.checked == total, report.message

        def incremental() -> None:
            report = ledger.verify(checkpoints=settings)
            assert report.ok and report.since_seq == since, report.message

        from drillbook.ledger.chainstream import default_workers

        # The walk hashes every record in the server; a PostgreSQL built without OpenSSL (pgserver's) hashes with
        # its own SHA-256, ~4.5x slower (docs/performance.md, 2026-12-03 evening): say which one this run had.
        major, ssl_library = conn.execute(
            "SELECT current_setting('server_version_num')::int / 10000, current_setting('ssl_library', true)"
        ).fetchone()
        hashing = f"PostgreSQL {major}, sha256 {'of ' + ssl_library if ssl_library else 'without OpenSSL'}"
        t_copy = timed(lambda: bare_copy(conn, "SELECT * FROM drillbook_evidence ORDER BY seq"), repeat=2)
        for workers in VERIFY_WORKERS:
            rss0 = peak_mb()
            t_full = timed(lambda w=workers: full(w), repeat=2)
            rss_full = peak_mb()
            used = default_workers(total) if workers is None else workers
            lines.append(
                f"evidence verify --full ({total} rows, {used} connection{'s' if used > 1 else ''}):  "
                f"{t_full:7.2f} s ({total / t_full:,.0f} records/s)"
                f"   baseline bare ordered COPY of the same rows {t_copy:6.2f} s   ratio {t_full / t_copy:5.2f}x"
                f"   peak RSS {rss_full:.0f} MB (+{rss_full - rss0:.0f})   load {os.getloadavg()[0]:.1f}   ({hashing})"
            )
        t_icopy = timed(
            lambda: bare_copy(conn, "SELECT * FROM drillbook_evidence WHERE seq > %s ORDER BY seq", (since,))
        )
        t_inc = timed(incremental)
        lines.append(
            f"evidence verify, incremental ({total - since} rows after the signed checkpoint seq={since}): "
            f"{t_inc * 1000:7.1f} ms   baseline bare COPY of those rows {t_icopy * 1000:6.1f} ms"
            f"   ratio {t_inc / t_icopy:5.2f}x   peak RSS {peak_mb():.0f} MB"
        )
        ledger.close()

        catalogue = {
            "version": 1,
            "defaults": {
                "owner": "bench",
                "slack": {"oncall_channel": "#dr-oncall", "digest_channel": "#dr-digest"},
            },
            "drills": [
                {
                    "name": drill,
                    "kind": "certificates",
                    "schedule": "@hourly",
                    "controls": controls,
                    "files": ["var/certs"],
                }
                for _, drill, controls in DRILLS
            ],
        }
        (tmp / "drills.yaml").write_text(yaml.safe_dump(catalogue, sort_keys=False))
        env = {
            **os.environ,
            "DRILLBOOK_LEDGER_DSN": dsn,
            "DRILLBOOK_CHECKPOINT_KEY": key,
            "DRILLBOOK_OUTBOX": str(tmp / "outbox.jsonl"),
            "DRILLBOOK_SPOOL": str(tmp / "spool.jsonl"),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "plugins"),
        }
        env.pop("AIRFLOW_CONN_DRILLBOOK_SLACK", None)
        for name, schedule, start, at in (
            ("daily", "@daily", today - timedelta(days=1), today),
            ("monthly", "@monthly", (month - timedelta(days=1)).replace(day=1), month),
        ):
            rows = conn.execute(
                "SELECT count(*) FROM drillbook_evidence WHERE recorded_at >= %s AND recorded_at < %s",
                (start, at),
            ).fetchone()[0]
            t_base = timed(
                lambda s=start, a=at: bare_copy(
                    conn,
                    "SELECT * FROM drillbook_evidence WHERE recorded_at >= %s AND recorded_at < %s ORDER BY seq",
                    (s, a),
                ),
                repeat=3,
            )
            argv = [
                sys.executable,
                "-m",
                "drillbook",
                "digest",
                "--schedule",
                schedule,
                "--catalogue",
                str(tmp / "drills.yaml"),
                "--now",
                at.isoformat(),
            ]
            runs = [_child(argv, env) for _ in range(3)]
            wall = statistics.median(r[0] for r in runs)
            rss = max(r[1] for r in runs)
            lines.append(
                f"drillbook digest {schedule} ({rows} records in the period, own process): {wall:6.2f} s"
                f"   baseline bare COPY of the period's rows {t_base:6.2f} s   ratio {wall / t_base:6.1f}x"
                f"   peak RSS {rss:.0f} MB (target {'< 2 s' if name == 'daily' else '< 5 s'}, < 150 MB)"
            )
    return lines


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


def export_rows(
    ledger,
    *,
    rows: int,
    tmp: Path,
    cli_export,
    copy_baseline,
    control_copy_baseline,
    control: str,
    month_since: str,
    month_until: str,
    rss_after_load: float,
) -> None:
    """The export rows of the year-long ledger (skipped with --scale-only)."""
    from drillbook.cli import ledger_cmds

    t_copy = timed(copy_baseline, repeat=3)
    t_csv = timed(cli_export("csv"), repeat=3)
    t_json = timed(cli_export("json"), repeat=3)
    size_mb = (tmp / "year.csv").stat().st_size / 1e6
    t_ccopy = timed(control_copy_baseline, repeat=3)
    t_ccsv = timed(cli_export("csv", "--control", control), repeat=3)
    csize_mb = (tmp / "year.csv").stat().st_size / 1e6

    def month_export() -> None:
        with contextlib.redirect_stderr(io.StringIO()):
            assert (
                ledger_cmds.main(
                    [
                        "evidence",
                        "export",
                        "--since",
                        month_since,
                        "--until",
                        month_until,
                        "--control",
                        control,
                        "--output",
                        str(tmp / "month.csv"),
                    ]
                )
                == 0
            )

    t_month = timed(month_export)
    msize_mb = (tmp / "month.csv").stat().st_size / 1e6
    t0 = time.perf_counter()
    report = ledger.verify(full=True)
    t_verify = time.perf_counter() - t0
    assert report.ok and report.checked == rows, report.message
    rss_end = peak_mb()

    print(
        f"evidence export (1 year, CSV, {rows} rows, {size_mb:.0f} MB): {t_csv * 1000:7.1f} ms"
        f"   baseline bare COPY TO of the table {t_copy * 1000:6.1f} ms   ratio {t_csv / t_copy:5.2f}x"
    )
    print(
        f"evidence export (1 year, JSON):              {t_json * 1000:7.1f} ms   ratio {t_json / t_copy:5.2f}x vs COPY"
    )
    print(
        f"evidence export (1 year, control {control}, CSV, {csize_mb:.0f} MB): {t_ccsv * 1000:7.1f} ms"
        f"   baseline bare COPY of the same rows {t_ccopy * 1000:6.1f} ms   ratio {t_ccsv / t_ccopy:5.2f}x"
    )
    print(f"evidence export (1 month, control {control}, CSV, {msize_mb:.1f} MB): {t_month * 1000:7.1f} ms")
    print(
        f"evidence verify --full (whole chain, {rows} rows):  {t_verify:7.2f} s ({rows / t_verify:,.0f} records/s), OK"
    )
    print(
        f"peak RSS: {rss_after_load:.0f} MB after load, {rss_end:.0f} MB after list/export/verify "
        f"(growth {rss_end - rss_after_load:.0f} MB: reads stream)"
    )


def reuse(dsn: str) -> tuple[datetime, int]:
    """A database kept by ``--keep``, back to the state the build left: (the build's end, its records).

    The scale rows append digest records and checkpoints (signed with a key made per run); as the superuser the
    bench runs as, they are removed from the tail (the chain stays valid) with the triggers bypassed, so every
    run measures the same ledger from the same start."""
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute("SELECT max(seq), max(recorded_at) FROM drillbook_evidence WHERE record_type = 'drill'")
        built, last_at = cur.fetchone() or (None, None)
        if built is None:
            raise SystemExit("the database has no drill records: build it with --keep first")
        cur.execute("DELETE FROM drillbook_evidence WHERE seq > %s", (built,))
        cur.execute("DELETE FROM drillbook_checkpoint")
        conn.commit()
    # the build's rows end just before ``end`` (a whole second): the last one + 1 s, truncated, is that second
    return (last_at + timedelta(seconds=1)).replace(microsecond=0), int(built)


def run(
    admin_dsn: str,
    rows: int,
    *,
    keep: bool = False,
    scale_only: bool = False,
    database: str | None = None,
) -> None:
    import psycopg
    from psycopg.rows import tuple_row

    from drillbook.cli import ledger_cmds
    from drillbook.ledger.canonical import COLUMNS
    from drillbook.ledger.query import Filter
    from drillbook.ledger.store import Ledger
    from drillbook.resources.pg import with_dbname

    name = database or f"bench_ledger_{uuid.uuid4().hex[:8]}"
    if database is None:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_dbname(admin_dsn, name)
    try:
        ledger = Ledger(dsn)
        ledger.init_schema()  # on a kept database: applies any newer migration in place
        if database is not None:
            end, rows = reuse(dsn)
            start = end - timedelta(days=365)
            print(f"reusing the kept ledger {name}: {rows} records up to {end.isoformat()}")
        else:
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
            load = time.perf_counter() - t0
            print(
                f"loaded {rows} records with a valid chain in {load:.1f} s ({rows / load:,.0f} rows/s); "
                f"peak RSS {peak_mb():.0f} MB",
                flush=True,
            )
        # A ledger in service is vacuumed by autovacuum (inserts trigger it since PostgreSQL 13), which sets the
        # visibility map that index-only scans need; a freshly COPYed or migrated one is not yet
        with psycopg.connect(dsn, autocommit=True) as conn:
            t0 = time.perf_counter()
            conn.execute("VACUUM (ANALYZE) drillbook_evidence")
            print(f"VACUUM (ANALYZE) {time.perf_counter() - t0:.1f} s", flush=True)
        rss_after_load = peak_mb()

        month_since = (end - timedelta(days=60)).date().isoformat()
        month_until = (end - timedelta(days=31)).date().isoformat()
        year_since, year_until = (start - timedelta(days=1)).date().isoformat(), end.date().isoformat()
        control = "SOC2:A1.2"
        os.environ["DRILLBOOK_LEDGER_DSN"] = dsn
        tmp = Path(tempfile.mkdtemp(prefix="drillbook-bench-out-"))
        conn = ledger.connection

        # the baseline counts exactly the rows the list prints: the list's own filter (``--until`` a date
        # takes that whole day) makes the WHERE clause of both
        month_where, month_params = Filter.build(
            since=month_since, until=month_until, control=control
        ).where()
        month_sql = f"SELECT count(*) FROM drillbook_evidence WHERE {month_where}"

        def month_count() -> None:
            with conn.cursor(row_factory=tuple_row) as cur:
                month_count.rows = cur.execute(month_sql, month_params).fetchone()[0]  # type: ignore[attr-defined,index]

        def month_count_fresh() -> None:
            # the same count(*) in a new connection, as ``psql -c`` runs it and as the CLI must (it opens
            # one): a new server process pays for its first touch of the shared buffers the month's pages
            # pass through, which the warm connection above has paid for already
            with psycopg.connect(dsn, autocommit=True) as fresh:
                fresh.execute(month_sql, month_params).fetchall()

        def cli_list() -> None:
            with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
                assert (
                    ledger_cmds.main(
                        [
                            "evidence",
                            "list",
                            "--control",
                            control,
                            "--since",
                            month_since,
                            "--until",
                            month_until,
                            "--limit",
                            "0",
                        ]
                    )
                    == 0
                )
            cli_list.lines = out.getvalue().count("\n") - 2  # type: ignore[attr-defined]

        def copy_baseline() -> None:
            with (
                open(tmp / "baseline.csv", "wb") as fh,
                conn.cursor() as cur,
                cur.copy("COPY drillbook_evidence TO STDOUT WITH (FORMAT csv, HEADER)") as copy,
            ):
                for chunk in copy:
                    fh.write(chunk)

        def control_copy_baseline() -> None:
            sql = (
                "COPY (SELECT * FROM drillbook_evidence WHERE controls @> ARRAY['SOC2:A1.2']::text[]) "
                "TO STDOUT WITH (FORMAT csv, HEADER)"
            )
            with open(tmp / "baseline-control.csv", "wb") as fh, conn.cursor() as cur, cur.copy(sql) as copy:
                for chunk in copy:
                    fh.write(chunk)

        def cli_export(fmt: str, *extra: str):
            def go() -> None:
                with contextlib.redirect_stderr(io.StringIO()):
                    assert (
                        ledger_cmds.main(
                            [
                                "evidence",
                                "export",
                                "--since",
                                year_since,
                                "--until",
                                year_until,
                                "--format",
                                fmt,
                                "--output",
                                str(tmp / f"year.{fmt}"),
                                *extra,
                            ]
                        )
                        == 0
                    )

            return go

        t_count = timed(month_count)
        t_list = timed(cli_list)
        t_fresh = timed(month_count_fresh)
        if cli_list.lines != month_count.rows:  # type: ignore[attr-defined]
            raise SystemExit(
                f"the list printed {cli_list.lines} rows, the baseline counted {month_count.rows}"
            )  # type: ignore[attr-defined]
        print(
            f"evidence list   (1 month, control {control}, {cli_list.lines} rows): {t_list * 1000:7.1f} ms"  # type: ignore[attr-defined]
            f"   baseline count(*) of the same rows {t_count * 1000:6.1f} ms   ratio {t_list / t_count:5.1f}x"
            f"   peak RSS {peak_mb():.0f} MB",
            flush=True,
        )
        print(
            f"  (not the baseline: the same count(*) in a new connection, as psql -c and the CLI run: "
            f"{t_fresh * 1000:6.1f} ms, list / that {t_list / t_fresh:4.1f}x)",
            flush=True,
        )
        if not scale_only:
            export_rows(
                ledger,
                rows=rows,
                tmp=tmp,
                cli_export=cli_export,
                copy_baseline=copy_baseline,
                control_copy_baseline=control_copy_baseline,
                control=control,
                month_since=month_since,
                month_until=month_until,
                rss_after_load=rss_after_load,
            )
        for line in scale_rows(dsn, end=end, tmp=tmp):
            print(line, flush=True)
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        ledger.close()
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if keep or database:
            print(f"kept the benchmark ledger: --database {name}")
        else:
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (needs DRILLBOOK_TEST_PG_DSN)")
    parser.add_argument(
        "--scale-only",
        action="store_true",
        help="only issue 14's rows: list, full and incremental verify, daily and monthly digest",
    )
    parser.add_argument(
        "--database",
        default=None,
        help="time a database kept by --keep (its records, not --rows) instead of building one",
    )
    parser.add_argument(
        "--verify-workers",
        default="auto",
        help="comma-separated connection counts for the full verify, e.g. auto,1 (auto: the default split)",
    )
    args = parser.parse_args()
    VERIFY_WORKERS[:] = [None if w == "auto" else int(w) for w in args.verify_workers.split(",")]
    if args.database and not os.environ.get("DRILLBOOK_TEST_PG_DSN"):
        parser.error("--database needs DRILLBOOK_TEST_PG_DSN (the server that holds the kept database)")
    with server() as dsn:
        run(
            dsn,
            args.rows,
            keep=args.keep and bool(os.environ.get("DRILLBOOK_TEST_PG_DSN")),
            scale_only=args.scale_only,
            database=args.database,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
