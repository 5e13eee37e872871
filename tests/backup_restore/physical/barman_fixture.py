"""A real Barman server backing up a real PostgreSQL 15 cluster, for the Barman source tests.

Layout (one temporary directory, removed at the end of the session):
- ``source/``: the source cluster, initdb'd as the Barman OS user (PostgreSQL and
  Barman both refuse root), unix socket only in ``sock/``, ``wal_level=replica``,
  ``archive_mode=on`` with an ``archive_command`` that copies into Barman's
  ``incoming`` directory (the ``archiver = on`` path of Barman: no background
  ``receive-wal`` process to keep alive, and every step is a bounded command);
- ``barman_home/``, ``barman.log``, ``barman.conf``: one server ``pg`` with
  ``backup_method = postgres`` (pg_basebackup over the same socket).

The session fixture takes two full backups (locate must pick the newer), then writes two rows at known server
times with a named restore point between them and a third row after them,
switching and archiving one WAL segment per step, so that deleting the middle
segment from Barman's ``wals`` directory is a gap with segments after it. ``clone`` copies the Barman home into a new
directory with its own config, for tests that damage the repository.

With ``CI=true`` a missing Barman or PostgreSQL 15 is a failure, never a skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVER = "pg"
RUN_AS = "barman"  # the Debian package's user
TIMEOUT_S = 600  # a bound, not an expectation: the benchmark backs up millions of rows on a loaded machine


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"{what} is missing and CI=true: .ci/run installs it (apt-get install barman postgresql-15)"
        )
    pytest.skip(f"{what} is missing")


@dataclass(frozen=True)
class BarmanRepo:
    root: Path
    config: Path
    server: str
    user: str | None  # OS user to run barman and the source as (None: the current user)
    sock: Path
    row_before_at: datetime  # commit time of the row that a target between the rows keeps
    between_at: datetime  # a server time strictly between the two rows
    row_after_at: datetime  # commit time of the row that target must not keep
    restore_point: str  # pg_create_restore_point() name written between the rows

    @property
    def home(self) -> Path:
        return self.root / "barman_home"

    def wals_dir(self) -> Path:
        return self.home / self.server / "wals"

    def barman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_as(self.user, ["barman", "-c", str(self.config), *args], check=check)

    def psql(self, sql: str) -> str:
        out = run_as(
            self.user,
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-At",
                "-h",
                str(self.sock),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ],
        )
        return out.stdout.strip()

    def clone(self, dst: Path) -> BarmanRepo:
        """Copy the Barman home to ``dst`` with a config of its own (the source cluster is shared)."""
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.home, dst / "barman_home", symlinks=True)
        config = dst / "barman.conf"
        config.write_text(self.config.read_text().replace(str(self.root), str(dst)))
        # the clone archives nothing: its incoming dir is not the source's archive_command target
        _chown_tree(dst, self.user)
        return BarmanRepo(**{**self.__dict__, "root": dst, "config": config})


def run_as(
    user: str | None, argv: list[str], *, check: bool = True, timeout: float = TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": "UTC", "HOME": "/tmp"}
    group = pwd.getpwnam(user).pw_gid if user else None
    proc = subprocess.run(
        argv,
        user=user,
        group=group,
        extra_groups=[] if user else None,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/tmp",
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{argv[:4]} exited {proc.returncode}\nstdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
        )
    return proc


def _chown_tree(path: Path, user: str | None) -> None:
    if user is None:
        return
    pw = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)


def _write_config(root: Path, sock: Path, user: str) -> Path:
    home = root / "barman_home"
    conninfo = f"host={sock} port=5432 user=postgres dbname=postgres"
    config = root / "barman.conf"
    config.write_text(
        "[barman]\n"
        f"barman_home = {home}\n"
        f"barman_user = {user}\n"
        f"log_file = {root / 'barman.log'}\n"
        "log_level = INFO\n"
        "compression = gzip\n"
        "\n"
        f"[{SERVER}]\n"
        "description = drillbook test source\n"
        f"conninfo = {conninfo}\n"
        f"streaming_conninfo = {conninfo}\n"
        "backup_method = postgres\n"
        "archiver = on\n"
        f"path_prefix = {PG_BIN}\n"
        "minimum_redundancy = 0\n"
    )
    return config


def _server_now(repo_psql, sql: str) -> datetime:
    return datetime.fromisoformat(repo_psql(sql))


def make_barman_repo(root: Path, *, bulk_rows: int = 0) -> Iterator[BarmanRepo]:
    """Stand up source + Barman in ``root``, back up, write the known rows; yield; stop the source.

    ``bulk_rows`` (the benchmark's) fills ``public.bench`` before the backups.
    """
    if shutil.which("barman") is None:
        _missing("barman")
    if not (PG_BIN / "initdb").exists():
        _missing("PostgreSQL 15 (/usr/lib/postgresql/15/bin)")
    user = RUN_AS if os.geteuid() == 0 else None
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            _missing(f"OS user {user!r} (created by the barman package)")
    user_name = user or pwd.getpwuid(os.geteuid()).pw_name
    root.chmod(0o755)
    sock, pgdata, home = root / "sock", root / "source", root / "barman_home"
    incoming = home / SERVER / "incoming"
    for d in (sock, home, incoming):
        d.mkdir(parents=True)
    _chown_tree(root, user)
    run_as(
        user,
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ],
    )
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write(
            "listen_addresses = ''\n"
            f"unix_socket_directories = '{sock}'\n"
            "wal_level = replica\nmax_wal_senders = 4\nfsync = off\n"
            "archive_mode = on\n"
            f"archive_command = 'test ! -f {incoming}/%f && cp %p {incoming}/%f'\n"
        )
    run_as(
        user,
        [
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(pgdata),
            "-l",
            str(root / "source.log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
    )
    try:
        config = _write_config(root, sock, user_name)
        _chown_tree(root, user)
        probe = BarmanRepo(root, config, SERVER, user, sock, datetime.min, datetime.min, datetime.min, "")
        probe.psql(
            "CREATE TABLE drill_rows (id int PRIMARY KEY, label text, at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        probe.psql("INSERT INTO drill_rows (id, label) VALUES (0, 'in_backup')")
        if bulk_rows:
            probe.psql("CREATE TABLE bench (id bigint PRIMARY KEY, payload text NOT NULL)")
            probe.psql(
                f"INSERT INTO bench SELECT g, md5(g::text) FROM generate_series(1, {int(bulk_rows)}) g"
            )
        probe.barman("switch-wal", "--force", "--archive", "--archive-timeout", "60", SERVER)
        # two full backups: locate must pick the newer one (Barman backup ids are per second)
        probe.barman("backup", "--wait", "--wait-timeout", "90", SERVER)
        time.sleep(1.1)
        probe.psql("INSERT INTO drill_rows (id, label) VALUES (10, 'between_backups')")
        probe.barman("backup", "--wait", "--wait-timeout", "90", SERVER)
        # one WAL segment per step, so that deleting the middle one is a gap with segments after it
        before = _server_now(
            probe.psql, "INSERT INTO drill_rows (id, label) VALUES (1, 'before_target') RETURNING at"
        )
        time.sleep(1.2)
        between = _server_now(probe.psql, "SELECT clock_timestamp()")
        probe.psql("SELECT pg_create_restore_point('drillbook_between')")
        time.sleep(1.2)
        probe.barman("switch-wal", "--force", "--archive", "--archive-timeout", "60", SERVER)
        after = _server_now(
            probe.psql, "INSERT INTO drill_rows (id, label) VALUES (2, 'after_target') RETURNING at"
        )
        probe.barman("switch-wal", "--force", "--archive", "--archive-timeout", "60", SERVER)
        probe.psql("INSERT INTO drill_rows (id, label) VALUES (3, 'tail')")
        probe.barman("switch-wal", "--force", "--archive", "--archive-timeout", "60", SERVER)
        yield BarmanRepo(root, config, SERVER, user, sock, before, between, after, "drillbook_between")
    finally:
        run_as(
            user, [str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"], check=False
        )


@pytest.fixture(scope="session")
def barman_repo() -> Iterator[BarmanRepo]:
    root = Path(tempfile.mkdtemp(prefix="drillbook_barman_"))
    try:
        yield from make_barman_repo(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
