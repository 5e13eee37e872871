"""A real source cluster with WAL archived into a real pgBackRest repository (shared by the pgBackRest and Barman tests).

``pg_source`` (function scope) hands out ``SourceCluster`` objects: a PostgreSQL 15
cluster initdb'd in a temporary directory as the ``postgres`` OS user (PostgreSQL
refuses root), listening only on a unix socket in that directory, with
``archive_command`` pushing into a posix pgBackRest repository in the same
directory. ``full_backup()`` runs ``stanza-create`` and a full backup;
``insert_marker(name)`` writes a row and returns the commit time; ``switch_wal()``
forces the current segment into the archive. Everything is removed at teardown.
Missing pgbackrest or PostgreSQL 15 is a skip, except under ``CI=true`` where it is
a failure (CI installs them).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
STANZA = "main"


def _require_tools() -> None:
    missing = [
        what
        for what, ok in (
            ("pgbackrest", shutil.which("pgbackrest")),
            ("PostgreSQL 15 server", (PG15_BIN / "postgres").exists()),
        )
        if not ok
    ]
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        missing.append(f"OS user {OS_USER!r}")
    if missing:
        message = (
            f"physical-backup tests need {', '.join(missing)} (apt-get install pgbackrest postgresql-15)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class SourceCluster:
    root: Path
    user: pwd.struct_passwd
    port: int = 5432
    markers: dict[str, datetime] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def config(self) -> Path:
        return self.root / "pgbackrest.conf"

    def run(self, argv: list[str], timeout: float = 120) -> str:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=str(self.root),
            user=self.user.pw_uid,
            group=self.user.pw_gid,
            stdin=subprocess.DEVNULL,
            env={"PATH": f"{PG15_BIN}:/usr/bin:/bin", "HOME": str(self.root), "LANG": "C", "TZ": "UTC"},
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"{argv[0]} exited {proc.returncode}: {proc.stderr[-1500:]} {proc.stdout[-500:]}"
            )
        return proc.stdout

    def pgbackrest(self, *args: str, timeout: float = 300) -> str:
        return self.run(
            ["pgbackrest", f"--config={self.config}", f"--stanza={STANZA}", *args], timeout=timeout
        )

    def sql(self, sql: str, db: str = "postgres") -> str:
        return self.run(
            [
                str(PG15_BIN / "psql"),
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.root),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ]
        ).strip()

    def full_backup(self) -> None:
        self.pgbackrest("stanza-create")
        self.pgbackrest("--type=full", "backup")

    def insert_marker(self, name: str) -> datetime:
        """Insert row ``name`` in its own transaction; return its commit time (the server's clock)."""
        out = self.sql(
            f"insert into public.pitr_marker(name) values ('{name}') returning to_char(now() at time zone 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')'
        )
        stamp = datetime.fromisoformat(out.splitlines()[0].replace("Z", "+00:00"))
        self.markers[name] = stamp
        return stamp

    def switch_wal(self) -> str:
        """Close the current segment and wait until it is archived; return its name."""
        seg = self.sql("select pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            last = self.sql("select coalesce(last_archived_wal, '') from pg_stat_archiver")
            if last >= seg:
                return seg
            time.sleep(0.2)
        raise AssertionError(f"segment {seg} was not archived within 60 s")

    def archived_segments(self) -> list[Path]:
        return sorted(
            p
            for p in (self.repo / "archive").rglob("*")
            if p.is_file() and len(p.name) > 24 and p.name[:24].isalnum() and "-" in p.name
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(
                [str(PG15_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], timeout=60
            )


def make_source(tmp_root: str | None = None) -> SourceCluster:
    _require_tools()
    user = pwd.getpwnam(OS_USER)
    root = Path(tempfile.mkdtemp(prefix="drillbook-pgsrc-", dir=tmp_root))
    os.chown(root, user.pw_uid, user.pw_gid)
    src = SourceCluster(root=root, user=user)
    for sub in ("repo", "log", "lock", "spool"):
        (root / sub).mkdir()
        os.chown(root / sub, user.pw_uid, user.pw_gid)
    src.config.write_text(
        f"[global]\nrepo1-path={root / 'repo'}\nrepo1-retention-full=2\nlog-path={root / 'log'}\n"
        f"lock-path={root / 'lock'}\nspool-path={root / 'spool'}\nlog-level-console=warn\nlog-level-file=info\n"
        f"start-fast=y\ncompress-type=none\n\n[{STANZA}]\npg1-path={src.data}\npg1-socket-path={root}\npg1-port={src.port}\n"
    )
    os.chown(src.config, user.pw_uid, user.pw_gid)
    src.run(
        [
            str(PG15_BIN / "initdb"),
            "-D",
            str(src.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--data-checksums",
        ]
    )
    with open(src.data / "postgresql.conf", "a") as conf:
        conf.write(
            f"\nlisten_addresses = ''\nunix_socket_directories = '{root}'\nport = {src.port}\n"
            "wal_level = replica\narchive_mode = on\nmax_wal_senders = 2\nfsync = off\n"
            f"archive_command = 'pgbackrest --config={src.config} --stanza={STANZA} archive-push %p'\n"
        )
    src.run(
        [str(PG15_BIN / "pg_ctl"), "-D", str(src.data), "-w", "-l", str(root / "server.log"), "start"],
        timeout=120,
    )
    src.sql(
        "create table public.pitr_marker(id serial primary key, name text unique not null, "
        "at timestamptz not null default now())"
    )
    src.sql("create extension if not exists amcheck")
    return src


@pytest.fixture
def pg_source() -> Iterator[SourceCluster]:
    made: list[SourceCluster] = []

    def factory() -> SourceCluster:
        src = make_source()
        made.append(src)
        return src

    first = factory()
    yield first
    for src in made:
        try:
            src.stop()
        finally:
            shutil.rmtree(src.root, ignore_errors=True)


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Clusters of this test only: the drill and the reaper both use tempfile's directory.

    A test that compares listings of the shared temporary directory sees the clusters of every other
    test running at the same time (another pytest, a benchmark); in its own directory it sees only its own.
    """
    tmp_path_factory.getbasetemp()  # pytest's own temp root is fixed before tempfile's directory is redirected and removed
    d = Path(tempfile.mkdtemp(prefix="drillbook-physical-tests-"))
    d.chmod(0o711)  # the cluster's OS user must reach its directory inside
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    yield d
    monkeypatch.undo()
    from drillbook.drills.backup_restore.ephemeral_reap import reap

    uids = {os.geteuid()}
    for name in (OS_USER, "barman"):  # the users pgBackRest and Barman clusters run as
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pass
    reap(uids, str(d))
    shutil.rmtree(d, ignore_errors=True)
