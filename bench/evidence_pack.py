"""Benchmark the auditors' controls view and evidence pack on a large ledger (default 1,000,000 records).

Loads a valid chain the way bench/ledger.py does (a year of 12 drills, records spread evenly), then
times, for control SOC2:A1.2 over the whole year: ``control_rows`` (population + exceptions from one
SQL aggregate per run, streamed), ``write_pack`` (JSON + CSV records with link rows, population,
sample, report, OSCAL, signed manifest), the same pack downloaded from the evidence pages (``GET /pack``:
chain verify + ``build_pack`` + HTTP stream, against ``write_pack``) and ``verify_pack`` (offline), each against a baseline
measured in the same run: a bare ``COPY (SELECT * ... WHERE controls @> ...) TO STDOUT`` of the
same control's rows. Prints seconds, ratios and peak RSS before and after (reads stream: the
growth is what the pack holds in memory).

    python bench/evidence_pack.py [--rows 1000000]   # DRILLBOOK_TEST_PG_DSN or an embedded pgserver
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "plugins"))
_spec = importlib.util.spec_from_file_location("bench_ledger", HERE / "ledger.py")
assert _spec and _spec.loader
bench_ledger = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_ledger)

CONTROL = "SOC2:A1.2"


def catalogue():
    from drillbook.catalogue.models import Catalogue

    drills = [
        {
            "name": drill,
            "kind": "backup_restore",
            "schedule": "@hourly",
            "controls": controls,
            "source": {"connection": "drillbook_source"},
            "backup": {"location": f"backups/{drill}", "pattern": "*.dump"},
            "scratch": {"connection": "drillbook_scratch"},
            "objectives": {"rto": "15m", "rpo": "26h"},
        }
        for kind, drill, controls in bench_ledger.DRILLS
        if kind == "backup_restore"
    ]
    return Catalogue.model_validate({"drills": drills})


def download(dsn: str, cat, settings, *, start: datetime, end: datetime, into: Path) -> float:
    """Seconds for ``GET /pack`` through the evidence app (streamed to a file, as a browser saves it)."""
    from fastapi.testclient import TestClient

    from drillbook.web.app import create_app

    app = create_app(
        dsn_provider=lambda: dsn,
        user_dependency=lambda: "bench",
        catalogue=lambda: cat,
        pack_settings=lambda: settings,
    )
    params = {"control": CONTROL, "since": start.isoformat(), "until": end.isoformat()}
    t0 = time.perf_counter()
    with (
        TestClient(app) as client,
        client.stream("GET", "/pack", params=params) as answer,
        into.open("wb") as out,
    ):
        assert answer.status_code == 200, answer.read()[:500]
        for chunk in answer.iter_bytes():
            out.write(chunk)
    elapsed = time.perf_counter() - t0
    app.state.pool.close()
    return elapsed


def run(admin_dsn: str, rows: int) -> None:
    import psycopg
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    from drillbook.evidence.controls import control_rows
    from drillbook.evidence.pack import write_pack
    from drillbook.evidence.pack_verify import verify_pack
    from drillbook.ledger.canonical import COLUMNS
    from drillbook.ledger.checkpoint import CheckpointSettings
    from drillbook.ledger.store import Ledger
    from drillbook.resources.pg import with_dbname

    name = f"bench_pack_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_dbname(admin_dsn, name)
    tmp = Path(tempfile.mkdtemp(prefix="drillbook-bench-pack-"))
    try:
        ledger = Ledger(dsn)
        ledger.init_schema()
        end = datetime.now(UTC).replace(microsecond=0, second=0, minute=0)
        start = end - timedelta(days=365)
        t0 = time.perf_counter()
        with psycopg.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute("SET session_replication_role = replica")  # as bench/ledger.py: our own timestamps
            with cur.copy(f"COPY drillbook_evidence ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in bench_ledger.generate(rows, start, timedelta(days=365)):
                    copy.write_row(row)
            conn.commit()
            conn.execute("ANALYZE drillbook_evidence")
            conn.commit()
        print(f"loaded {rows} records in {time.perf_counter() - t0:.1f} s")
        seed = (
            Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
        )
        settings = CheckpointSettings(private_key=seed)
        ledger.checkpoint(source="bench", settings=settings)
        cat = catalogue()
        rss_before = bench_ledger.peak_mb()

        def baseline() -> None:
            with (
                ledger.connection.cursor() as cur,
                cur.copy(
                    "COPY (SELECT * FROM drillbook_evidence WHERE controls @> ARRAY[%s]::text[] AND recorded_at >= %s "
                    "AND recorded_at < %s) TO STDOUT",
                    (CONTROL, start, end),
                ) as copy,
            ):
                for _chunk in copy:
                    pass

        t_copy = bench_ledger.timed(baseline, repeat=3)
        t0 = time.perf_counter()
        (row,) = control_rows(ledger.connection, cat, start=start, end=end, as_of=end, only=CONTROL)
        t_controls = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = write_pack(
            ledger,
            cat,
            control=CONTROL,
            start=start,
            end=end,
            output=tmp / "pack.zip",
            settings=settings,
            seed=1,
            as_of=end,
        )
        t_pack = time.perf_counter() - t0
        rss_pack = bench_ledger.peak_mb()
        t_download = download(dsn, cat, settings, start=start, end=end, into=tmp / "downloaded.zip")
        t0 = time.perf_counter()
        report = verify_pack(tmp / "pack.zip")
        t_verify = time.perf_counter() - t0
        assert report.ok, report.problems[:3]
        size = (tmp / "pack.zip").stat().st_size / 1e6
        print(
            f"control {CONTROL}: {row.expected} expected occurrences, {row.runs} runs, {row.missed} missed, "
            f"{row.failed} FAIL/ERROR, status {row.status}; pack holds {result.records} records, {size:.1f} MB zipped"
        )
        print(f"baseline bare COPY of the control's rows:   {t_copy:7.2f} s")
        print(
            f"controls view (population + exceptions):    {t_controls:7.2f} s   ratio {t_controls / t_copy:5.2f}x vs COPY"
        )
        print(
            f"evidence pack (everything, signed):         {t_pack:7.2f} s   ratio {t_pack / t_copy:5.2f}x vs COPY"
        )
        print(
            f"download from the pages (GET /pack):        {t_download:7.2f} s   ratio {t_download / t_pack:5.2f}x vs "
            "the pack alone (adds the chain verify and the HTTP stream)"
        )
        print(
            f"verify --pack offline:                      {t_verify:7.2f} s   ratio {t_verify / t_copy:5.2f}x vs COPY"
        )
        print(
            f"peak RSS {rss_before:.0f} MB before, {rss_pack:.0f} MB after controls + pack "
            f"(growth {rss_pack - rss_before:.0f} MB), {bench_ledger.peak_mb():.0f} MB after verify"
        )
        ledger.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with bench_ledger.server() as dsn:
        run(dsn, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
