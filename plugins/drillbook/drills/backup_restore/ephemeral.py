"""A private, throwaway PostgreSQL cluster for dumps that must not touch a shared server.

Rules this module enforces:
- the cluster is initdb'd in a fresh temporary directory with binaries of the
  dump's major version or newer (``tools.choose``: PATH,
  /usr/lib/postgresql/*/bin, pgserver's bundled 16);
- it listens on no TCP address (``listen_addresses=''``), only on a unix
  socket inside that directory (mode 0700), with trust authentication for
  its single bootstrap superuser ``drillbook_ephemeral`` (a name no dump
  creates) or, for a pg_dumpall file, the dump's first superuser role: role
  grants ``GRANTED BY postgres`` need that role to be the bootstrap
  superuser, and the one expected error, ``role "postgres" already exists``,
  is not counted (restore.py);
- PostgreSQL refuses to run as root: as root, the cluster runs as an
  unprivileged OS user (``pgserver``, the user the pgserver package itself
  creates, else ``postgres``, else ``nobody``) and its directory is chowned to
  it, as pgserver does; drillbook never creates OS users;
- the server runs in a network namespace of its own (``unshare``; only a
  down loopback) where the kernel allows it, else on the host network, and
  ``network`` says which;
- initdb, pg_ctl and so the server get a bare environment (PATH, HOME set to
  the cluster's directory, C locale, UTC): a superuser in the cluster must
  not find the drill's connection strings, cloud keys or tokens there;
- archive_mode, fsync and every command hook are off; the cluster is stopped
  (immediate) and its directory removed in ``close``, whatever happened;
  ``close`` is idempotent and also runs on garbage collection of the object;
- a drill killed before ``close`` leaves its cluster running: the cluster's
  directory holds ``owner.lock``, flock'ed for the cluster's life, and the
  next ``start`` reaps clusters nobody holds (ephemeral_reap.py), as do
  ``drillbook scratch reap`` and the Airflow ``reap_scratch`` task of an
  ephemeral drill (``reap_left_clusters``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from drillbook.drills.backup_restore import ephemeral_reap, tools
from drillbook.drills.backup_restore.tree_removal import remove_tree, remove_tree_later
from drillbook.errors import DrillbookError

SUPERUSER = "drillbook_ephemeral"
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60
_RUN_AS = ("pgserver", "postgres", "nobody")


class EphemeralUnavailable(DrillbookError):
    """The cluster could not be created or started; the message says why."""


def _run_as_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in _RUN_AS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise EphemeralUnavailable(
        f"running as root and none of the users {', '.join(_RUN_AS)} exists to run PostgreSQL as"
    )


def reap_left_clusters(tmp: str | None = None) -> list[str]:
    """Stop and remove this machine's clusters left by killed drills; return the directories removed.

    The clusters' owners are this user and, as root, the OS user clusters run as
    (the same set ``EphemeralCluster.start`` reaps); a cluster a live drill holds is left.
    """
    uids = {os.geteuid()}
    if os.geteuid() == 0:
        # every user a cluster may run as: dump clusters run as the first of _RUN_AS, physical-backup
        # clusters (physical/cluster.py) as the repository's user, ``postgres`` by default
        for name in _RUN_AS:
            try:
                uids.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                continue
    return ephemeral_reap.reap(uids, tmp)


class EphemeralCluster:
    """``EphemeralCluster(min_major=16).start()``; ``dsn(db)``; ``close()``."""

    def __init__(self, *, min_major: int | None, bin_dir: str | None = None, superuser: str = SUPERUSER):
        self.superuser = superuser
        self.min_major = min_major
        self.bin_dir = bin_dir
        self.root: Path | None = None
        self.version = ""
        self._user: pwd.struct_passwd | None = None
        self._pg_ctl = ""
        self._running = False
        self._lock_fd: int | None = None
        self.network = ""  # "private network namespace", or why the server shares the host's network
        self.reaped: list[str] = []  # left-over clusters of dead drills removed before this one started

    def _cmd(self, argv: list[str], timeout: float, prefix: list[str] | None = None) -> None:
        self._run(argv, timeout, prefix)

    def _run(
        self,
        argv: list[str],
        timeout: float,
        prefix: list[str] | None = None,
        *,
        fail: Callable[[str], Exception] = EphemeralUnavailable,
    ) -> str:
        """Run a server binary as the cluster's OS user, in its directory, with the server's bare environment.

        Returns its stdout; not starting, a timeout or a non-zero exit raises ``fail(message)`` naming the binary.
        """
        # as root, a prefix (unshare ... setpriv) starts as root and drops to the cluster's user itself
        kwargs: dict = (
            {"user": self._user.pw_uid, "group": self._user.pw_gid} if self._user and not prefix else {}
        )
        try:
            proc = subprocess.run(
                (prefix or []) + argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
                cwd=str(self.root),
                env=self._env(argv[0]),
                **kwargs,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise fail(f"{Path(argv[0]).name}: {type(exc).__name__}: {exc}") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-400:]
            raise fail(f"{Path(argv[0]).name} exited {proc.returncode}: {tail}")
        return proc.stdout

    def _env(self, tool: str) -> dict[str, str]:
        """The server's whole environment: nothing of the drill's (connection strings, cloud keys, tokens).

        A dump restores as the cluster's superuser, which can read its server's environment
        (COPY ... FROM PROGRAM 'env' built by dynamic SQL the filter cannot read).
        """
        assert self.root is not None
        return {
            "PATH": f"{Path(tool).parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.root),
            "LANG": "C",
            "LC_ALL": "C",
            "TZ": "UTC",
            "PGTZ": "UTC",
        }

    def _private_network(self) -> list[str]:
        """An argv prefix that runs the server in a network namespace of its own (only a down loopback).

        A superuser in the cluster can run programs (dynamic SQL); without a network they
        reach no other host or service. As root: ``unshare --net`` then ``setpriv`` to the
        cluster's user; otherwise a user namespace mapping the user to itself. When the
        kernel or container refuses, the server runs on the host network and ``network`` says so.
        """
        unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
        if unshare is None or (self._user and setpriv is None):
            self.network = "host network (unshare/setpriv not installed)"
            return []
        if self._user:
            prefix = [
                unshare,
                "--net",
                "--",
                str(setpriv),
                f"--reuid={self._user.pw_uid}",
                f"--regid={self._user.pw_gid}",
                "--clear-groups",
                "--",
            ]
        else:
            prefix = [unshare, "--map-current-user", "--net", "--"]
        try:
            self._cmd(["/bin/true"], timeout=30, prefix=prefix)
        except EphemeralUnavailable as exc:
            self.network = f"host network (a network namespace was refused: {exc})"[:300]
            return []
        self.network = "private network namespace"
        return prefix

    def start(self) -> EphemeralCluster:
        initdb, seen = tools.choose("initdb", min_major=self.min_major, bin_dir=self.bin_dir)
        if initdb is None:
            raise EphemeralUnavailable(
                f"no initdb of major version >= {self.min_major} found (found: {tools.describe(seen)})"
            )
        bindir = Path(initdb.path).parent
        self._pg_ctl = str(bindir / "pg_ctl")
        if not (bindir / "postgres").exists() or not Path(self._pg_ctl).exists():
            raise EphemeralUnavailable(f"{bindir} has initdb but no pg_ctl/postgres")
        self.version = initdb.version
        self._user = _run_as_user()
        uids = {os.geteuid()} | ({self._user.pw_uid} if self._user else set())
        self.reaped = ephemeral_reap.reap(uids)
        self.root = Path(tempfile.mkdtemp(prefix=ephemeral_reap.PREFIX))
        try:
            # held for the cluster's whole life; the kernel drops it when this process dies (the reaper's proof)
            self._lock_fd = ephemeral_reap.hold_lock(self.root)
            if self._user:
                os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
            self._cmd(
                [
                    initdb.path,
                    "-D",
                    str(self.root / "data"),
                    "-U",
                    self.superuser,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ],
                timeout=START_TIMEOUT_S,
            )
            opts = (
                f"-c listen_addresses='' -c unix_socket_directories='{self.root}' -c port=5432 -c fsync=off "
                "-c archive_mode=off -c full_page_writes=off -c max_connections=20"
            )
            self._start_server(opts, timeout_s=START_TIMEOUT_S)
            self._running = True
        except BaseException:
            self.close()
            raise
        return self

    def _start_server(self, opts: str, *, timeout_s: int) -> None:
        """``pg_ctl start`` of ``root/data`` with server options ``opts`` (one string: pg_ctl hands it to a
        shell), its log in ``root/server.log``, in a private network namespace where the kernel allows.

        The one place both kinds of cluster start: dump clusters here, physical-backup clusters in
        physical/cluster.py.
        """
        assert self.root is not None
        self._cmd(
            [
                self._pg_ctl,
                "-D",
                str(self.root / "data"),
                "-w",
                "-t",
                str(timeout_s),
                "-o",
                opts,
                "-l",
                str(self.root / "server.log"),
                "start",
            ],
            timeout=timeout_s + 10,
            prefix=self._private_network(),
        )

    def dsn(self, dbname: str = "postgres") -> str:
        assert self.root is not None
        return f"host={self.root} port=5432 user={self.superuser} dbname={dbname}"

    def close(self, *, remove_now: bool = True) -> None:
        """Stop the server (always, before returning) and remove the directory.

        ``remove_now=False``: once the server is stopped, the directory is renamed to
        ``drillbook-removing-*`` (instant) and removed on a thread of its own (``tree_removal.remove_tree_later``;
        the lock is held until it is gone); a process that dies first leaves it to the reaper, which removes it
        without reporting a killed drill. A server that did not stop is removed here, as before.
        """
        if self.root is None:
            return
        if self._running:
            try:
                self._cmd(
                    [
                        self._pg_ctl,
                        "-D",
                        str(self.root / "data"),
                        "-m",
                        "immediate",
                        "-W",
                        "stop",
                    ],
                    timeout=70,
                )
                self._wait_stopped(STOP_TIMEOUT_S)
            except EphemeralUnavailable:
                pass
            self._running = False
        root, lock_fd = self.root, self._lock_fd
        self.root, self._lock_fd = None, None
        if not remove_now and not ephemeral_reap.postmaster_alive(root / "data"):
            removing = ephemeral_reap.removing_name(root)
            try:
                os.rename(root, removing)
                renamed = True
            except OSError:
                renamed = False
            if renamed:
                # the data directory first: killed meanwhile, the lock file is still there for the reaper
                remove_tree_later(
                    [removing / "data", removing],
                    then=lambda: os.close(lock_fd) if lock_fd is not None else None,
                )
                return
        remove_tree(root)  # unlinks in parallel: a serial rmtree of fsync'd files was most of teardown
        if lock_fd is not None:
            os.close(lock_fd)

    def _wait_stopped(self, timeout_s: float) -> None:
        """Wait until the postmaster removed its pid file (what ``pg_ctl -w`` waits for), polling every 10 ms.

        ``pg_ctl stop -w`` looks every 100 ms, and an immediate stop takes a few: most of its 0.12 s was waiting.
        After ``timeout_s`` the directory is removed anyway, as when ``pg_ctl -w -t`` gave up.
        """
        assert self.root is not None
        pid_file = self.root / "data" / "postmaster.pid"
        deadline = time.monotonic() + timeout_s
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: S110 - best effort at interpreter exit
            pass
