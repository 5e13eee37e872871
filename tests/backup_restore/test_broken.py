"""Every broken backup of the issue, built from the seeded shop, turns the drill red with its exact finding."""

from __future__ import annotations

import gzip
import os
import time
from datetime import UTC, datetime, timedelta

from drillbook.sample.shop import make_matview_unpopulated, make_sequence_behind, seed_shop
from tests.backup_restore.conftest import codes, make_drill, serious


def _copy(src, dst, *, size=None, flip_at=None):
    data = bytearray(src.read_bytes())
    if size is not None:
        data = data[:size]
    if flip_at is not None:
        data[flip_at] ^= 0xFF
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(data))
    return dst


def _verdict(result):
    return result.verdict.value


def test_truncated_custom_dump(dumps, tmp_path, drill_runner):
    src = dumps["custom"]
    bad = _copy(src, tmp_path / "b" / "shop.dump", size=src.stat().st_size * 2 // 3)
    result = drill_runner(make_drill(str(bad.parent)))
    assert "ARCHIVE_TRUNCATED" in codes(result)
    assert _verdict(result) == "FAIL"
    restore = next(p for p in result.phases if p.name == "restore")
    assert restore.status == "failed"
    assert not any(p.name.startswith("verify.") for p in result.phases), (
        "verify must not run on a partial restore"
    )
    truncated = next(f for f in result.findings if f.code == "ARCHIVE_TRUNCATED")
    assert truncated.detail["stderr_1"].startswith("pg_restore: error:")


def test_plain_dump_cut_mid_table_psql_would_exit_0(dumps, tmp_path, drill_runner):
    text = dumps["plain"].read_bytes()
    cut = text.index(b"COPY public.orders") + 5000  # inside the orders data
    bad = tmp_path / "b" / "shop.sql"
    bad.parent.mkdir()
    bad.write_bytes(text[:cut])
    result = drill_runner(make_drill(str(bad.parent)))
    assert serious(result) == ["ARCHIVE_TRUNCATED"]
    assert _verdict(result) == "FAIL"


def test_gzip_plain_dump_cut_short(dumps, tmp_path, drill_runner):
    src = dumps["plain.gz"]
    bad = _copy(src, tmp_path / "b" / "shop.sql.gz", size=src.stat().st_size - 200)
    result = drill_runner(make_drill(str(bad.parent)))
    assert serious(result) == ["ARCHIVE_TRUNCATED"]
    assert "gzip" in next(f for f in result.findings if f.code == "ARCHIVE_TRUNCATED").message


def test_one_byte_flipped_in_compressed_table_data(dumps, tmp_path, drill_runner):
    src = dumps["custom"]
    bad = _copy(src, tmp_path / "b" / "shop.dump", flip_at=src.stat().st_size // 2)
    result = drill_runner(make_drill(str(bad.parent)))
    assert "RESTORE_FAILED" in codes(result)
    assert any("uncompress" in str(f.detail.get("stderr_1", "")) for f in result.findings)
    assert _verdict(result) == "FAIL"


def test_one_byte_flipped_in_plain_table_data_psql_exits_0(dumps, tmp_path, drill_runner):
    text = bytearray(dumps["plain"].read_bytes())
    start = text.index(b"COPY public.orders")
    row = text.index(b"\n1000\t", start) + 1  # the id column of order 1000
    text[row] = ord("x")  # '1000' -> 'x000': not a bigint any more
    bad = tmp_path / "b" / "shop.sql"
    bad.parent.mkdir()
    bad.write_bytes(bytes(text))
    result = drill_runner(make_drill(str(bad.parent)))
    assert {"RESTORE_ERROR", "EXIT_CODE_LIED"} <= set(codes(result)), [
        (f.code, f.message, f.detail) for f in result.findings
    ]
    error = next(f for f in result.findings if f.code == "RESTORE_ERROR")
    assert "invalid input syntax" in error.detail["stderr_1"]
    lied = next(f for f in result.findings if f.code == "EXIT_CODE_LIED")
    assert lied.severity.value == "high"
    assert _verdict(result) == "FAIL"


def test_empty_file(tmp_path, drill_runner):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "shop.dump").write_bytes(b"")
    result = drill_runner(make_drill(str(tmp_path / "b")))
    assert serious(result) == ["ARCHIVE_UNREADABLE"]
    assert "empty" in next(f for f in result.findings if f.code == "ARCHIVE_UNREADABLE").message


def test_random_bytes_named_dump(tmp_path, drill_runner):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "shop.dump").write_bytes(os.urandom(64 * 1024))
    result = drill_runner(make_drill(str(tmp_path / "b")))
    assert serious(result) == ["ARCHIVE_UNREADABLE"]
    assert _verdict(result) == "FAIL"


def dump_owned_by_missing_role(pg, variant, *, role: str, table: str):
    """A dump in which ``table`` is owned by ``role``, a role that no longer exists afterwards."""
    pg.execute("postgres", f"drop role if exists {role}")
    pg.execute("postgres", f"create role {role}")

    def own(dsn):
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"alter table {table} owner to {role}")

    try:
        return variant(own)
    finally:
        for db in pg.databases("variant_"):
            pg.execute(db, f"reassign owned by {role} to postgres")
        pg.execute("postgres", f"drop role if exists {role}")


def test_dump_owned_by_role_missing_on_target(pg, variant, drill_runner):
    role = "drillbook_ghost_owner"
    path = dump_owned_by_missing_role(pg, variant, role=role, table="public.customers")
    result = drill_runner(make_drill(str(path.parent)))
    absent = [f for f in result.findings if f.code == "ROLE_ABSENT"]
    assert [f.subject for f in absent] == [role]
    # one statement failed (the ALTER TABLE ... OWNER TO), and the sample kept is pg_restore's line naming the role
    assert absent[0].detail["lines"] == 1
    assert absent[0].detail["stderr_1"].endswith(f'ERROR:  role "{role}" does not exist')
    assert f"needs role '{role}', which does not exist on the restore target" in absent[0].message
    # The data still came back: the ladder ran and held, only the ownership is lost.
    assert {c for c in codes(result) if c not in {"ROLE_ABSENT", "ARTEFACT_UNVERIFIED"}} == set()
    assert result.verdict.value == "PASS"


def test_role_missing_is_not_a_finding_with_no_owner(pg, variant, drill_runner):
    path = dump_owned_by_missing_role(pg, variant, role="drillbook_ghost_owner2", table="public.orders")
    result = drill_runner(make_drill(str(path.parent), restore={"no_owner": True}))
    assert "ROLE_ABSENT" not in codes(result)
    assert result.verdict.value == "PASS"


def test_dump_of_database_with_no_tables(variant, drill_runner):
    path = variant(None, template=False)
    result = drill_runner(make_drill(str(path.parent), verify={"min_rows": {}, "rpo_probe": None}))
    assert "EMPTY_RESTORE" in codes(result)
    assert result.verdict.value == "FAIL"


def test_sequence_behind_its_column(variant, drill_runner):
    path = variant(make_sequence_behind)
    result = drill_runner(make_drill(str(path.parent)))
    assert "SEQUENCE_BEHIND" in codes(result)
    assert result.verdict.value == "FAIL"


def test_unpopulated_materialized_view(variant, drill_runner):
    path = variant(make_matview_unpopulated)
    result = drill_runner(make_drill(str(path.parent)))
    assert "MATVIEW_UNPOPULATED" in codes(result)


def test_stale_newest_backup(dumps, tmp_path, drill_runner):
    folder = tmp_path / "b"
    old = _copy(dumps["custom"], folder / "shop-old.dump")
    three_days = time.time() - 3 * 86400
    os.utime(old, (three_days, three_days))
    result = drill_runner(make_drill(str(folder), backup={"location": str(folder), "pattern": "shop-*.dump"}))
    assert "BACKUP_STALE" in codes(result)
    stale = next(f for f in result.findings if f.code == "BACKUP_STALE")
    assert stale.subject == str(old)
    assert result.verdict.value == "FAIL"


def test_newest_backup_is_chosen_by_time_and_pattern(dumps, tmp_path, drill_runner):
    folder = tmp_path / "b"
    old = _copy(dumps["custom"], folder / "shop-1.dump")
    _copy(dumps["custom"], folder / "shop-2.dump")
    (folder / "notes.txt").write_text("not a backup")
    (folder / "shop-2.dump.sha256").write_text("0" * 64)  # a sidecar is never a candidate
    os.utime(old, (time.time() + 60, time.time() + 60))  # newer by mtime despite its name
    result = drill_runner(make_drill(str(folder), backup={"location": str(folder), "pattern": "shop-*.dump"}))
    assert result.details["artefact"]["name"] == "shop-1.dump"
    assert result.verdict.value == "PASS"


def test_nothing_found(tmp_path, drill_runner):
    (tmp_path / "b").mkdir()
    result = drill_runner(
        make_drill(str(tmp_path / "b"), backup={"location": str(tmp_path / "b"), "pattern": "*.dump"})
    )
    assert serious(result) == ["BACKUP_MISSING"]
    assert result.verdict.value == "FAIL"


def test_rto_objective_exceeded(dumps, drill_runner):
    result = drill_runner(make_drill(str(dumps["custom"].parent), objectives={"rto": 0.01, "rpo": "26h"}))
    assert "RTO_EXCEEDED" in codes(result)
    assert result.verdict.value == "FAIL"


def test_rpo_objective_exceeded_measured_on_the_data(pg, tmp_path, drill_runner):
    db = pg.create_database("shop_old")
    try:
        seed_shop(pg.dsn(db), customers=200, orders=2000, until=datetime.now(UTC) - timedelta(days=3))
        from tests.backup_restore.conftest import pg_dump

        (tmp_path / "b").mkdir()
        path = pg_dump(pg, pg.dsn(db), tmp_path / "b" / "shop.dump", "-Fc")
    finally:
        pg.drop_database(db)
    result = drill_runner(make_drill(str(path.parent)))
    assert "RPO_EXCEEDED" in codes(result)
    assert "BACKUP_STALE" not in codes(result)  # the file is fresh; the data in it is not
    assert result.measurements.values["rpo_source"] == "rpo_probe"
    assert result.measurements.rpo_seconds > 3 * 86400 - 60


def test_broken_rpo_probe(dumps, drill_runner):
    drill = make_drill(
        str(dumps["custom"].parent), verify={"rpo_probe": "select max(nope) from public.orders"}
    )
    result = drill_runner(drill)
    assert "RPO_PROBE_FAILED" in codes(result)
    assert result.measurements.values["rpo_source"] == "dump timestamp"


def test_gzip_plain_dump_stays_green_with_digest(dumps, tmp_path, drill_runner):
    import hashlib

    folder = tmp_path / "b"
    dst = _copy(dumps["plain.gz"], folder / "shop.sql.gz")
    (folder / "shop.sql.gz.sha256").write_text(
        hashlib.sha256(dst.read_bytes()).hexdigest() + "  shop.sql.gz\n"
    )
    result = drill_runner(make_drill(str(folder)))
    assert codes(result) == []
    assert result.verdict.value == "PASS"


def test_local_digest_mismatch(dumps, tmp_path, drill_runner):
    folder = tmp_path / "b"
    _copy(dumps["custom"], folder / "shop.dump")
    (folder / "shop.dump.sha256").write_text("ab" * 32 + "  shop.dump\n")
    result = drill_runner(make_drill(str(folder)))
    assert serious(result) == ["FETCH_FAILED"]


def test_gzip_without_trailer_inside(dumps, tmp_path, drill_runner):
    text = dumps["plain"].read_bytes()
    cut = text.index(b"COPY public.orders") + 5000
    folder = tmp_path / "b"
    folder.mkdir()
    with gzip.open(folder / "shop.sql.gz", "wb") as fh:  # a whole gzip of a cut dump
        fh.write(text[:cut])
    result = drill_runner(make_drill(str(folder)))
    assert serious(result) == ["ARCHIVE_TRUNCATED"]


def test_truncated_tar_dump_is_caught_before_pg_restore_spins(dumps, tmp_path, drill_runner):
    src = dumps["tar"]
    bad = _copy(src, tmp_path / "b" / "shop.tar", size=src.stat().st_size * 2 // 3)
    result = drill_runner(make_drill(str(bad.parent)))
    assert serious(result) == ["ARCHIVE_TRUNCATED"]
    assert not any(p.name == "restore" for p in result.phases)


def test_directory_dump_with_a_cut_data_file(dumps, tmp_path, drill_runner):
    import shutil

    folder = tmp_path / "b" / "shop.dir"
    shutil.copytree(dumps["directory"], folder)
    biggest = max((p for p in folder.iterdir() if p.name != "toc.dat"), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
    result = drill_runner(make_drill(str(folder.parent)))
    assert "ARCHIVE_TRUNCATED" in codes(result), [(f.code, f.message, f.detail) for f in result.findings]
    assert result.verdict.value == "FAIL"


def test_dump_needs_an_extension_the_target_lacks(dumps, tmp_path, drill_runner):
    text = dumps["plain"].read_bytes()
    at = text.index(b"CREATE TABLE")
    patched = (
        text[:at]
        + b"CREATE EXTENSION IF NOT EXISTS drillbook_missing_ext WITH SCHEMA public;\n\n"
        + text[at:]
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "shop.sql").write_bytes(patched)
    result = drill_runner(make_drill(str(tmp_path / "b")))
    absent = [f for f in result.findings if f.code == "EXTENSION_ABSENT"]
    assert [f.subject for f in absent] == ["drillbook_missing_ext"]
    assert "EXIT_CODE_LIED" in codes(result)  # psql exited 0 regardless
    assert result.verdict.value == "FAIL"
