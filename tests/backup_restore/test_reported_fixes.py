"""Reported defects of backup-restore (issue 10 items 5-8, issue 11 item 8), each reproduced red first.

Real parts only: the test PostgreSQL server with a real non-superuser CREATEDB
role, real dumps, moto's server, a loopback proxy that cuts a body mid-stream.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from drillbook.cli import main
from tests.backup_restore.conftest import codes, make_drill


# --- 10.6 and 10.7: ownership errors under a CREATEDB scratch role ---------------------------
@pytest.fixture
def createdb_role(pg):
    """A real LOGIN CREATEDB role (not a superuser) and an existing role that will own objects."""
    suffix = uuid.uuid4().hex[:8]
    drill_role, owner = f"drill_creator_{suffix}", f"app_owner_{suffix}"
    pg.execute("postgres", f"create role {drill_role} login createdb password 'drill-pw-{suffix}'")
    pg.execute("postgres", f"create role {owner}")
    # its own maintenance database: the scratch registry there belongs to this role (one role per registry)
    maint = f"maint_{suffix}"
    pg.execute("postgres", f"create database {maint} owner {drill_role}")
    dsn = pg.admin_dsn
    from drillbook.resources.pg import parse

    params = parse(dsn)
    params.update(user=drill_role, password=f"drill-pw-{suffix}", dbname=maint)
    scratch_dsn = " ".join(f"{k}='{v}'" for k, v in params.items())
    yield scratch_dsn, owner
    for db in pg.databases("variant_"):
        pg.execute(db, f"reassign owned by {owner} to postgres")
    pg.drop_database(maint)
    pg.execute("postgres", f"drop role if exists {owner}")
    pg.execute("postgres", f"drop role if exists {drill_role}")


def dump_owned_by(variant, owner: str):
    def own(dsn):
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in ("public.customers", "public.orders"):
                conn.execute(f"alter table {table} owner to {owner}")

    return variant(own)


def test_ownership_errors_under_a_createdb_role_are_classified_with_the_no_owner_hint(
    pg, variant, createdb_role, drill_runner
):
    scratch_dsn, owner = createdb_role
    path = dump_owned_by(variant, owner)
    result = drill_runner(make_drill(str(path.parent)), scratch_dsn=scratch_dsn)
    found = [f for f in result.findings if f.code == "OWNERSHIP_NOT_RESTORABLE"]
    assert owner in {f.subject for f in found}, codes(result)
    assert all("restore.no_owner: true" in f.hint for f in found)
    assert "RESTORE_ERROR" not in codes(result)
    # The data came back; only ownership was lost: the same verdict as a missing role.
    assert result.verdict.value == "PASS", codes(result)
    # 10.6: pg_restore exited 1 with error lines, so the restore phase line is not green.
    phase = next(p for p in result.phases if p.name == "restore")
    assert phase.status == "failed" and "exit 1" in phase.detail and "error line(s)" in phase.detail
    # The hint reaches on-call: the Slack report renders it.
    from drillbook.notify.render import RenderOptions, render_result

    report = render_result(result, None, None, options=RenderOptions(max_findings=5))
    assert "restore.no_owner: true" in json.dumps(report.main.blocks)
    # ... and the same dump restores cleanly with the option the hint names.
    clean = drill_runner(make_drill(str(path.parent), restore={"no_owner": True}), scratch_dsn=scratch_dsn)
    assert clean.verdict.value == "PASS" and "OWNERSHIP_NOT_RESTORABLE" not in codes(clean), codes(clean)
    assert next(p for p in clean.phases if p.name == "restore").status == "ok"


def test_cli_shows_the_failed_restore_phase_and_the_no_owner_hint(pg, variant, createdb_role, capsys):
    scratch_dsn, owner = createdb_role
    path = dump_owned_by(variant, owner)
    code = main(["run", "backup-restore", "--backup", str(path), "--scratch-dsn", scratch_dsn])
    out = capsys.readouterr().out
    assert code == 0, out
    restore_line = next(line for line in out.splitlines() if "] restore" in line)
    assert "[FAILED]" in restore_line and "exit 1" in restore_line, restore_line
    assert "OWNERSHIP_NOT_RESTORABLE" in out and "restore.no_owner: true" in out
    assert "drill-pw-" not in out


# --- 10.5: a relative --backup is relative to the working directory ------------------------
def test_relative_backup_on_the_command_line_is_relative_to_the_working_directory(
    pg, dumps, tmp_path, monkeypatch, capsys
):
    import shutil

    import yaml

    (tmp_path / "dumps").mkdir()
    shutil.copy(dumps["custom"], tmp_path / "dumps" / "x.dump")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "x.yaml").write_text(yaml.safe_dump({"objectives": {"rto": "15m", "rpo": "26h"}}))
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "run",
            "backup-restore",
            "--backup",
            "dumps/x.dump",
            "--config",
            "cfg/x.yaml",
            "--scratch-dsn",
            pg.admin_dsn,
            "--json",
        ]
    )
    payload = json.loads(capsys.readouterr().out)
    assert code == 0, [f["code"] for f in payload["findings"]]
    assert "BACKUP_MISSING" not in [f["code"] for f in payload["findings"]]


def test_backup_missing_names_the_absolute_path_tried(pg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(
        ["run", "backup-restore", "--backup", "dumps/none.dump", "--scratch-dsn", pg.admin_dsn, "--json"]
    )
    payload = json.loads(capsys.readouterr().out)
    missing = [f for f in payload["findings"] if f["code"] == "BACKUP_MISSING"]
    assert code == 1 and missing
    assert str(tmp_path / "dumps" / "none.dump") in missing[0]["message"]


def test_a_catalogue_location_is_relative_to_the_catalogue_and_the_message_says_where(drill_runner, tmp_path):
    result = drill_runner(make_drill("backups/none"), base_dir=tmp_path / "cat")
    missing = [f for f in result.findings if f.code == "BACKUP_MISSING"]
    assert missing and str(tmp_path / "cat" / "backups" / "none") in missing[0].message


# --- 11.8 (S3) and 10.8: broken transfers and directory dumps on S3 ---------------------------
BUCKET = "reported"


class CuttingProxy:
    """A loopback HTTP proxy in front of moto that cuts the body of GETs of one key after ``keep`` bytes."""

    def __init__(self, upstream: str, *, cut_key: str, keep: int = 4096):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        up = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in {"transfer-encoding", "connection", "content-length"}:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                cut = (
                    self.command == "GET"
                    and self.path.split("?")[0].endswith(proxy.cut_key)
                    and len(data) > proxy.keep
                )
                if cut:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data[: proxy.keep] if cut else data)
                self.wfile.flush()
                if cut:
                    proxy.cuts += 1
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.cut_key = cut_key
        self.keep = keep
        self.cuts = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bucket(boto):
    client = boto("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def _s3_drill(prefix: str):
    location = f"s3://{BUCKET}/{prefix}"
    return make_drill(location, backup={"location": location, "connection": "aws_default"})


def test_a_body_cut_mid_download_is_fetch_failed_and_leaves_no_partial(
    aws, bucket, dumps, drill_runner, tmp_path
):
    import boto3
    from botocore.config import Config

    with dumps["custom"].open("rb") as fh:
        bucket.put_object(Bucket=BUCKET, Key="shop/shop.dump", Body=fh)
    proxy = CuttingProxy(aws, cut_key="/shop/shop.dump")
    try:
        client = boto3.client(
            "s3",
            endpoint_url=proxy.url,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=10),
        )
        work = tmp_path / "kept"
        result = drill_runner(_s3_drill("shop/"), s3_client=client, work_dir=work)
    finally:
        proxy.stop()
    assert proxy.cuts >= 1, "the proxy must have cut the body"
    assert "DRILL_CRASHED" not in codes(result)
    assert codes(result) == ["FETCH_FAILED"], [(f.code, f.message) for f in result.findings]
    assert result.verdict.value == "FAIL"
    leftovers = [p for p in (work / "fetch").rglob("*")] if (work / "fetch").exists() else []
    assert leftovers == [], f"partial downloads left in --work-dir: {leftovers}"


def test_an_s3_endpoint_that_is_gone_is_fetch_failed_not_a_crash(drill_runner, tmp_path):
    import socket

    import boto3
    from botocore.config import Config

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2),
    )
    result = drill_runner(_s3_drill("shop/"), s3_client=client)
    assert codes(result) == ["FETCH_FAILED"], [(f.code, f.message) for f in result.findings]


def _upload_directory(client, folder, prefix: str, *, metadata: bool) -> None:
    import hashlib

    for member in sorted(folder.iterdir()):
        data = member.read_bytes()
        meta = {"sha256": hashlib.sha256(data).hexdigest()} if metadata else {}
        client.put_object(Bucket=BUCKET, Key=f"{prefix}{member.name}", Body=data, Metadata=meta)


def test_a_directory_dump_on_s3_is_one_artefact_and_restores(bucket, dumps, drill_runner, tmp_path):
    _upload_directory(bucket, dumps["directory"], "dirs/shop.dir/", metadata=True)
    work = tmp_path / "work"
    result = drill_runner(_s3_drill("dirs/"), s3_client=bucket, work_dir=work)
    assert "ARCHIVE_UNREADABLE" not in codes(result)
    assert codes(result) == [], [(f.code, f.message) for f in result.findings]
    assert result.verdict.value == "PASS"
    assert result.details["artefact"]["name"] == "shop.dir"
    assert result.details["archive"]["format"] == "directory"
    assert "sha256 matches" in next(p for p in result.phases if p.name == "fetch").detail
    assert not list((work / "fetch").glob("*")), "the downloaded directory must be removed"


def test_a_directory_dump_prefix_as_the_location_and_a_corrupt_member(bucket, dumps, drill_runner, tmp_path):
    _upload_directory(bucket, dumps["directory"], "one/shop.dir/", metadata=False)
    result = drill_runner(_s3_drill("one/shop.dir/"), s3_client=bucket)
    assert codes(result) == ["ARTEFACT_UNVERIFIED"], [(f.code, f.message) for f in result.findings]
    assert result.verdict.value == "PASS"
    # A member whose bytes differ from its recorded digest: FETCH_FAILED, never ARCHIVE_UNREADABLE of a member.
    _upload_directory(bucket, dumps["directory"], "bad/shop.dir/", metadata=True)
    member = next(
        k["Key"]
        for k in bucket.list_objects_v2(Bucket=BUCKET, Prefix="bad/")["Contents"]
        if k["Key"].endswith(".dat.gz")
    )
    head = bucket.head_object(Bucket=BUCKET, Key=member)
    body = bucket.get_object(Bucket=BUCKET, Key=member)["Body"].read()
    bucket.put_object(
        Bucket=BUCKET, Key=member, Body=body[:-1] + bytes([body[-1] ^ 1]), Metadata=head["Metadata"]
    )
    bad = drill_runner(_s3_drill("bad/"), s3_client=bucket)
    assert codes(bad) == ["FETCH_FAILED"], [(f.code, f.message) for f in bad.findings]


# --- 11.8: the scratch connection lost mid-restore is not a bad backup --------------------------
def _terminate_restore_sessions(pg, stop, hits):
    """Terminate the restore's sessions on a drillbook scratch database as soon as one is loading data."""
    import time

    deadline = time.monotonic() + 120
    while not stop.is_set() and time.monotonic() < deadline:
        rows = pg.execute(
            "postgres",
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where datname like 'drillbook_scratch_shop_test_%' and query ilike 'copy %'",
        )
        if rows:
            hits.append(len(rows))
            return
        time.sleep(0.02)


def test_scratch_connection_lost_mid_restore_is_scratch_unreachable_not_a_bad_backup(
    pg, variant, drill_runner
):
    import threading

    def big(dsn):
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "create table public.ballast as select g as id, md5(g::text) as pad from generate_series(1, 400000) g"
            )

    path = variant(big)
    stop, hits = threading.Event(), []
    watcher = threading.Thread(target=_terminate_restore_sessions, args=(pg, stop, hits), daemon=True)
    watcher.start()
    try:
        result = drill_runner(make_drill(str(path.parent), restore={"jobs": 1}))
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert hits, "the restore's session was never seen loading data"
    unreachable = [f for f in result.findings if f.code == "SCRATCH_UNREACHABLE"]
    assert unreachable, [(f.code, f.message) for f in result.findings]
    assert "cannot be restored as is" not in " ".join(f.hint for f in result.findings)
    assert "RESTORE_FAILED" not in codes(result) and "ARCHIVE_TRUNCATED" not in codes(result)
    assert result.verdict.value == "ERROR"


def test_scratch_server_killed_mid_restore_is_scratch_unreachable(pg, variant, tmp_path):
    """A private scratch server (its own data directory) is shut down hard while pg_restore loads data."""
    import os
    import signal
    import threading
    import time

    import pgserver

    from drillbook.drills.backup_restore.drill import run_backup_restore

    def big(dsn):
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "create table public.ballast as select g as id, md5(g::text) as pad from generate_series(1, 400000) g"
            )

    path = variant(big)
    import shutil
    import tempfile

    import psycopg

    data = Path(tempfile.mkdtemp(prefix="drillbook-test-scratch-"))  # pgserver's own user must reach it
    server = pgserver.get_server(data, cleanup_mode="stop")
    scratch_dsn = server.get_uri("postgres")
    killed: list[int] = []

    def kill_when_loading():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            try:
                with psycopg.connect(scratch_dsn, connect_timeout=5, autocommit=True) as conn:
                    loading = conn.execute(
                        "select count(*) from pg_stat_activity where query ilike 'copy %'"
                        " and pid <> pg_backend_pid()"
                    ).fetchone()[0]
            except psycopg.Error:
                return
            if loading:
                pid = server.get_pid()
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown: every backend dies at once
                killed.append(pid)
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_when_loading, daemon=True)
    watcher.start()
    try:
        result = run_backup_restore(
            drill=make_drill(str(path.parent), restore={"jobs": 1}),
            scratch_dsn=scratch_dsn,
            work_dir=tmp_path / "work",
        )
    finally:
        watcher.join(timeout=10)
        try:
            server.cleanup()
        except Exception:
            pass
        shutil.rmtree(data, ignore_errors=True)
    assert killed, "the scratch server was never seen loading data"
    found = codes(result)
    assert "SCRATCH_UNREACHABLE" in found, [(f.code, f.message) for f in result.findings]
    assert "DRILL_CRASHED" not in found and "RESTORE_FAILED" not in found and "ARCHIVE_TRUNCATED" not in found
    assert "cannot be restored as is" not in " ".join(f.hint for f in result.findings)
    assert result.verdict.value == "ERROR"
