"""``drillbook reference write --from-backup`` on plain dumps: the same reference as ``--dsn`` on the source.

Each dump is written by the pg fixture's own tools (pg_dump -Fp, the same gzipped,
pg_dump -C -Fp, pg_dumpall limited to the scenario database) from one pagila-style
database (sequences by DEFAULT, a trigger, an RLS policy, an enum, grants), and the
reference built from it is compared with the one read live from the source. A
hostile plain file is refused before anything runs, naming the line.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from drillbook.cli import main as drillbook
from drillbook.drills.backup_restore.verify.reference_plain import plain_roles
from drillbook.resources.pg import tool_env
from tests.backup_restore.conftest import pg_dump
from tests.backup_restore.test_verify_scenarios import PAGILA_STYLE, ROLE


@pytest.fixture(scope="module")
def source(pg, tmp_path_factory):
    """A pagila-style database, its live reference and one plain dump of each kind."""
    tmp = tmp_path_factory.mktemp("plainref")
    db = f"plainref_{uuid.uuid4().hex[:8]}"
    pg.execute("postgres", f'create database "{db}"')
    dsn = pg.dsn(db)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PAGILA_STYLE)
    live = tmp / "live.json"
    assert drillbook(["reference", "write", "--dsn", dsn, "-o", str(live)]) == 0
    dumps = {
        "plain": pg_dump(pg, dsn, tmp / "shop.sql", "-Fp"),
        "create": pg_dump(pg, dsn, tmp / "shop_c.sql", "-Fp", "-C"),
    }
    with (tmp / "shop.sql").open("rb") as src, gzip.open(tmp / "shop.sql.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    dumps["plain.gz"] = tmp / "shop.sql.gz"
    dumps["custom"] = pg_dump(pg, dsn, tmp / "shop.dump", "-Fc")
    others = [d for d in pg.databases() if d not in (db, "postgres", "template0", "template1")]
    subprocess.run(
        [
            str(Path(pg.bin_dir) / "pg_dumpall"),
            *(f"--exclude-database={d}" for d in others),
            "-f",
            str(tmp / "all.sql"),
        ],
        env=tool_env(pg.dsn("postgres")),
        check=True,
        capture_output=True,
        timeout=120,
    )
    dumps["dumpall"] = tmp / "all.sql"
    yield db, json.loads(live.read_text()), dumps, tmp
    pg.drop_database(db)


def _same(live: dict, built: dict, *, without: tuple[str, ...] = ()) -> None:
    skip = {"server_major_version", *without}
    assert {k: v for k, v in built.items() if k not in skip} == {
        k: v for k, v in live.items() if k not in skip
    }


@pytest.mark.parametrize("kind", ["plain", "plain.gz"])
def test_a_single_database_plain_dump_gives_the_live_reference(source, kind, capsys):
    _, live, dumps, tmp = source
    out = tmp / f"{kind}.json"
    assert drillbook(["reference", "write", "--from-backup", str(dumps[kind]), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "restored the whole of" in said and "collation is not recorded" in said
    built = json.loads(out.read_text())
    assert "database" not in built  # the throwaway cluster's collation is not the source's
    _same(live, built, without=("database",))
    assert (
        built["grants"]["table public.actor"] == f"{ROLE}:SELECT {ROLE}:UPDATE*"
    )  # the grantee role was created
    assert built["triggers"] and built["policies"]


@pytest.mark.parametrize("kind", ["create", "dumpall"])
def test_a_dump_that_creates_its_database_gives_the_live_reference_with_collation(source, kind, capsys):
    db, live, dumps, tmp = source
    out = tmp / f"{kind}.json"
    assert drillbook(["reference", "write", "--from-backup", str(dumps[kind]), "-o", str(out)]) == 0
    assert f"described database {db!r}" in capsys.readouterr().out
    built = json.loads(out.read_text())
    assert built["database"] == live["database"]
    _same(live, built)


def test_database_option_picks_and_checks_the_database(source, capsys):
    db, live, dumps, tmp = source
    out = tmp / "picked.json"
    assert (
        drillbook(
            ["reference", "write", "--from-backup", str(dumps["dumpall"]), "--database", db, "-o", str(out)]
        )
        == 0
    )
    _same(live, json.loads(out.read_text()))
    capsys.readouterr()
    assert (
        drillbook(
            [
                "reference",
                "write",
                "--from-backup",
                str(dumps["dumpall"]),
                "--database",
                "nosuch",
                "-o",
                str(tmp / "none.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "'nosuch' is not created by this dump" in err and repr(db) in err and "Traceback" not in err
    assert not (tmp / "none.json").exists()
    assert (
        drillbook(
            [
                "reference",
                "write",
                "--from-backup",
                str(dumps["custom"]),
                "--database",
                db,
                "-o",
                str(tmp / "none.json"),
            ]
        )
        == 2
    )
    assert "--database applies to plain dumps only" in capsys.readouterr().err


def test_a_corrupt_plain_gz_is_a_clear_error(source, tmp_path, capsys):
    _, _, dumps, _ = source
    data = dumps["plain.gz"].read_bytes()
    cut = tmp_path / "cut.sql.gz"
    cut.write_bytes(data[: len(data) // 2])
    bad = tmp_path / "bad.sql.gz"
    bad.write_bytes(data[:200] + bytes(b ^ 0xFF for b in data[200:400]) + data[400:])
    for path in (cut, bad):
        assert (
            drillbook(["reference", "write", "--from-backup", str(path), "-o", str(tmp_path / "x.json")]) == 2
        )
        err = capsys.readouterr().err
        assert repr(str(path)) in err and "Traceback" not in err, err
    assert not (tmp_path / "x.json").exists()


def test_a_hostile_plain_file_is_refused_naming_the_line_and_nothing_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "marker"
    plain = tmp_path / "hostile.sql"
    plain.write_text(
        "-- PostgreSQL database dump\nCREATE TABLE t (id int);\n"
        f"\\! touch {marker}\n-- PostgreSQL database dump complete\n"
    )
    for fmt_path in (plain, tmp_path / "hostile.sql.gz"):
        if fmt_path.suffix == ".gz":
            fmt_path.write_bytes(gzip.compress(plain.read_bytes()))
        assert (
            drillbook(["reference", "write", "--from-backup", str(fmt_path), "-o", str(tmp_path / "x.json")])
            == 2
        )
        err = capsys.readouterr().err
        assert "refused at line 3" in err and "nothing of it was run" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "x.json").exists()


def test_role_pass_skips_copy_rows_and_reads_owners_and_grantees(tmp_path):
    dump = tmp_path / "d.sql"
    dump.write_text(
        "ALTER TABLE public.t OWNER TO app_owner;\nCOPY public.t (a) FROM stdin;\n"
        'ALTER TABLE x OWNER TO not_a_role;\n\\.\nGRANT SELECT ON TABLE public.t TO "Reader";\n'
        "ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA public GRANT SELECT ON TABLES TO PUBLIC;\n"
    )
    assert plain_roles(dump, gz=False) == {"app_owner", "Reader"}
