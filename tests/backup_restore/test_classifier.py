"""Every stderr line of pg_restore and psql gets a class; real lines from PostgreSQL 15/16 tools."""

from __future__ import annotations

import pytest

from drillbook.drills.backup_restore.restore import StderrClassifier

LINES = [
    (
        'pg_restore: error: could not execute query: ERROR:  role "app_owner" does not exist',
        "ROLE_ABSENT",
        "app_owner",
    ),
    ('psql:/tmp/shop.sql:45: ERROR:  role "reporting" does not exist', "ROLE_ABSENT", "reporting"),
    (
        'pg_restore: error: could not execute query: ERROR:  extension "postgis" is not available',
        "EXTENSION_ABSENT",
        "postgis",
    ),
    (
        'psql:<stdin>:12: ERROR:  could not open extension control file "/usr/share/postgresql/16/extension/pg_trgm.control": '
        "No such file or directory",
        "EXTENSION_ABSENT",
        "pg_trgm",
    ),
    ("pg_restore: error: could not read from input file: end of file", "ARCHIVE_TRUNCATED", None),
    (
        "pg_restore: error: could not find block ID 3391 in archive -- possibly corrupt archive",
        "ARCHIVE_TRUNCATED",
        None,
    ),
    ("pg_restore: error: could not uncompress data: incorrect data check", "RESTORE_FAILED", None),
    # The scratch server or the connection went away: not a verdict on the backup (issue 11 item 8).
    (
        'pg_restore: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  database "x" does not exist',
        "SCRATCH_UNREACHABLE",
        None,
    ),
    (
        'psql: error: connection to server on socket "/tmp/.s.PGSQL.5432" failed: No such file or directory',
        "SCRATCH_UNREACHABLE",
        None,
    ),
    (
        "pg_restore: error: error returned by PQputCopyData: server closed the connection unexpectedly",
        "SCRATCH_UNREACHABLE",
        None,
    ),
    (
        "pg_restore: error: could not execute query: FATAL:  terminating connection due to administrator command",
        "SCRATCH_UNREACHABLE",
        None,
    ),
    ("psql:/tmp/shop.sql:120: error: connection to server was lost", "SCRATCH_UNREACHABLE", None),
    ('psql:/tmp/shop.sql:6437: ERROR:  invalid input syntax for type bigint: "x000"', "RESTORE_ERROR", None),
    (
        'pg_restore: error: could not execute query: ERROR:  relation "public.orders" already exists',
        "RESTORE_ERROR",
        None,
    ),
    ("Command was: ALTER TABLE public.customers OWNER TO app_owner;", "context", None),
    ("pg_restore: from TOC entry 215; 1259 16390 TABLE customers app_owner", "context", None),
    ("pg_restore: while PROCESSING TOC:", "context", None),
    ("pg_restore: warning: errors ignored on restore: 3", "context", None),
    ("pg_restore: error: a worker process died unexpectedly", "context", None),
    ('CONTEXT:  COPY orders, line 1000, column id: "x000"', "context", None),
    ('DETAIL:  Key (order_id)=(1000) is not present in table "orders".', "context", None),
    ("psql:/tmp/shop.sql:10: WARNING:  nonstandard use of \\\\ in a string literal", "context", None),
    ("    RAISE EXCEPTION 'ERROR: order % has no items', p_id;", "context", None),  # SQL of a "Command was:"
    ("ERROR:  out of memory", "context", None),  # never printed bare by pg_restore/psql -f
]


@pytest.mark.parametrize(("line", "code", "subject"), LINES)
def test_line_classes(line, code, subject):
    assert StderrClassifier().classify(line) == (code, subject)


def test_samples_are_bounded_and_grouped_per_subject():
    c = StderrClassifier()
    for i in range(50):
        c.feed(f'pg_restore: error: could not execute query: ERROR:  role "r{i % 15}" does not exist\n')
        c.feed(f"Command was: ALTER TABLE t{i} OWNER TO r{i % 15};\n")
    roles = [g for g in c.groups.values() if g.code == "ROLE_ABSENT"]
    assert len(roles) == 11  # 10 named roles, the rest grouped under no subject
    assert all(len(g.sample) <= 5 for g in roles)
    assert sum(g.count for g in roles) == 50
    assert c.counts["context"] == 50 and c.error_lines == 50


def test_cut_gzip_data_file_of_a_directory_dump():
    line = 'pg_restore: error: could not close data file "/backups/shop.dir/3393.dat": Success'
    assert StderrClassifier().classify(line) == ("ARCHIVE_TRUNCATED", None)
