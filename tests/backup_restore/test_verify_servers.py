"""Collation and server major across two real servers: PostgreSQL 15 (127.0.0.1:5432, Debian, with ICU)
and the embedded pgserver 16 (libc C.UTF-8 only, built without ICU).

Each case dumps from one server and restores into the other (or the same) with the whole drill.
The PG15 server is the machine's; the tests skip, saying so, when it is not running.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from drillbook.resources.pg import tool_env
from tests.backup_restore.conftest import codes, make_drill, pg_dump

PG15_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
PG15_BIN = Path("/usr/lib/postgresql/15/bin")
WORDS = (
    "create table public.words (id serial primary key, w text not null); "
    "insert into public.words (w) values ('cherry'), ('Banana'), ('apple');"
)


@pytest.fixture(scope="module")
def pg15() -> str:
    try:
        with psycopg.connect(PG15_DSN) as conn:
            major = conn.execute("select current_setting('server_version_num')::int / 10000").fetchone()[0]
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL 15 is not running on 127.0.0.1:5432: {exc}")
    if major != 15 or not (PG15_BIN / "pg_dump").exists():
        pytest.skip(f"127.0.0.1:5432 is PostgreSQL {major}, or {PG15_BIN} is missing")
    return PG15_DSN


@pytest.fixture
def pg15_db(pg15):
    """Make databases on PG15 (``make(create_options)`` -> DSN); all are dropped afterwards."""
    made: list[str] = []

    def make(options: str = "") -> str:
        name = f"dbk_verify_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg15, autocommit=True) as conn:
            conn.execute(f'create database "{name}" {options}')
        made.append(name)
        return pg15.replace("dbname=postgres", f"dbname={name}")

    yield make
    with psycopg.connect(pg15, autocommit=True) as conn:
        for name in made:
            conn.execute(f'drop database if exists "{name}" with (force)')
        left = conn.execute(
            "select datname from pg_database where datname like 'drillbook_scratch_%'"
        ).fetchall()
    assert not [r for r in left if "words" in r[0]], left


def _dump15(dsn: str, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(PG15_BIN / "pg_dump"), "-Fc", "-f", str(out)],
        env=tool_env(dsn),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def _reference(dsn: str, out: Path) -> Path:
    from drillbook.cli import main as drillbook

    assert drillbook(["reference", "write", "--dsn", dsn, "-o", str(out)]) == 0
    return out


def _drill(dump: Path, ref: Path, scratch: str, runner) -> Any:
    drill = make_drill(
        str(dump.parent),
        name="words",
        verify={"min_rows": {}, "rpo_probe": None, "amcheck": False, "reference": str(ref)},
    )
    return runner(drill, scratch_dsn=scratch, base_dir=ref.parent)


def _sorted_words(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("select w from public.words order by w").fetchall()]


def test_icu_source_restored_into_libc_server_is_a_collation_mismatch(pg, pg15_db, tmp_path, drill_runner):
    source = pg15_db("locale_provider icu icu_locale 'en-US' template template0")
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(WORDS)
    dump = _dump15(source, tmp_path / "icu" / "words.dump")
    # the reference is built from the backup itself, in a throwaway PG15 cluster (ICU, the source's CREATE DATABASE)
    from drillbook.cli import main as drillbook

    ref = tmp_path / "icu.json"
    assert drillbook(["reference", "write", "--from-backup", str(dump), "-o", str(ref)]) == 0
    # what the users saw: the same rows sort differently on the two servers
    copy = pg.create_database("words")
    try:
        subprocess.run(
            [str(Path(pg.bin_dir) / "pg_restore"), "-d", copy, str(dump)],
            env=tool_env(pg.dsn(copy)),
            check=False,
            capture_output=True,
            timeout=120,
        )
        assert _sorted_words(source) == ["apple", "Banana", "cherry"]
        assert _sorted_words(pg.dsn(copy)) == ["Banana", "apple", "cherry"]
    finally:
        pg.drop_database(copy)

    result = _drill(dump, ref, pg.admin_dsn, drill_runner)
    mismatch = [f for f in result.findings if f.code == "COLLATION_MISMATCH"]
    assert len(mismatch) == 1 and mismatch[0].severity.value == "high"
    assert (
        "icu" in mismatch[0].message
        and "en-US" in mismatch[0].message
        and "libc C.UTF-8" in mismatch[0].message
    )
    major = [f for f in result.findings if f.code == "SERVER_MAJOR_MISMATCH"]
    assert len(major) == 1 and major[0].severity.value == "medium"  # scratch 16 is newer than the source's 15
    assert "15." in major[0].message and "16." in major[0].message
    assert result.verdict.value == "FAIL"


def test_pg15_reference_restored_into_pg15_is_green(pg15, pg15_db, tmp_path, drill_runner):
    source = pg15_db()
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(WORDS)
    ref = _reference(source, tmp_path / "libc.json")
    dump = _dump15(source, tmp_path / "libc" / "words.dump")
    result = _drill(dump, ref, pg15, drill_runner)
    assert "COLLATION_MISMATCH" not in codes(result) and "SERVER_MAJOR_MISMATCH" not in codes(result)
    assert "COLLATION_UNVERIFIABLE" not in codes(result)
    assert result.verdict.value == "PASS", [(f.code, f.message) for f in result.findings]
    server = next(p for p in result.phases if p.name == "verify.server")
    assert server.status == "ok" and "matches the reference" in server.detail


def test_pg16_dump_restored_into_pg15_is_a_high_server_major_mismatch(pg, pg15, tmp_path, drill_runner):
    name = pg.create_database("words16")
    try:
        with psycopg.connect(pg.dsn(name), autocommit=True) as conn:
            conn.execute(WORDS)
        ref = _reference(pg.dsn(name), tmp_path / "pg16.json")
        dump = pg_dump(
            pg, pg.dsn(name), (tmp_path / "pg16").mkdir() or tmp_path / "pg16" / "words.dump", "-Fc"
        )
    finally:
        pg.drop_database(name)
    result = _drill(dump, ref, pg15, drill_runner)
    (f,) = [f for f in result.findings if f.code == "SERVER_MAJOR_MISMATCH"]
    assert f.severity.value == "high"
    assert "PostgreSQL 16." in f.message and "PostgreSQL 15." in f.message
    assert f.detail["source_server_version"].startswith("16.") and f.detail[
        "scratch_server_version"
    ].startswith("15.")
    assert result.verdict.value == "FAIL"


def test_a_target_without_a_collation_version_is_unverifiable(pg, fresh_db):
    """pgserver's C.UTF-8 is byte order (no version needed); a libc en_US target without a version is flagged."""
    from drillbook.drills.backup_restore.catalogue import VerifySpec
    from drillbook.drills.backup_restore.verify.ladder import Ladder, ScratchSession
    from drillbook.drills.backup_restore.verify.server import check_collation
    from drillbook.drills.base import ResultBuilder

    builder = ResultBuilder(kind="backup_restore", drill="t", target="scratch")
    ladder = Ladder(
        builder=builder,
        session=ScratchSession(dsn=pg.dsn(fresh_db)),
        verify=VerifySpec(),
        base_dir=Path("."),
        previous=None,
    )
    byte_order = {
        "collation_provider": "libc",
        "collate": "C.UTF-8",
        "ctype": "C.UTF-8",
        "icu_locale": None,
        "collation_version": None,
    }
    check_collation(ladder, byte_order, {"database": byte_order})
    assert builder.findings == []
    versionless = {**byte_order, "collate": "en_US.UTF-8", "ctype": "en_US.UTF-8"}
    check_collation(ladder, versionless, {"database": byte_order})
    assert sorted(f.code for f in builder.findings) == ["COLLATION_MISMATCH", "COLLATION_UNVERIFIABLE"]


def test_doctor_warns_when_scratch_and_source_majors_differ(pg, pg15, tmp_path, monkeypatch, capsys):
    import yaml

    from drillbook.cli import main as drillbook

    doc = {
        "drills": [
            {
                "name": "shop",
                "kind": "backup_restore",
                "schedule": "@daily",
                "source": {"connection": "doctor_source"},
                "backup": {"location": str(tmp_path)},
                "scratch": {"connection": "doctor_scratch16"},
                "objectives": {"rto": "1h", "rpo": "26h"},
            }
        ]
    }
    catalogue = tmp_path / "drills.yaml"
    catalogue.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("DRILLBOOK_CONN_DOCTOR_SOURCE", pg15)
    monkeypatch.setenv("DRILLBOOK_CONN_DOCTOR_SCRATCH16", pg.admin_dsn)
    drillbook(["doctor", "--catalogue", str(catalogue), "--ledger-dsn", pg.admin_dsn])
    out = capsys.readouterr().out
    assert "warn  drill shop server major: scratch is PostgreSQL 16, source 15" in out
    assert "ok    drill shop source: 127.0.0.1:5432/postgres reachable, PostgreSQL 15." in out

    monkeypatch.setenv("DRILLBOOK_CONN_DOCTOR_SCRATCH16", pg15)  # same major: no warning
    drillbook(["doctor", "--catalogue", str(catalogue), "--ledger-dsn", pg.admin_dsn])
    assert "server major" not in capsys.readouterr().out
