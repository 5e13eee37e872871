"""pgBackRest as a ``PhysicalSource``: ``info`` to locate, ``repo-ls`` to list WAL, ``restore`` into a scratch directory.

Rules this module enforces:
- pgbackrest runs with an explicit ``--config`` and ``--stanza`` (validated
  names), a bare environment (PATH, HOME, C locale, UTC) plus only the
  ``PGBACKREST_*`` variables handed in (repository credentials come from the
  environment or a Connection, never from the catalogue), as the repository's
  OS user when drillbook runs as root, with a timeout, stdin closed;
- ``info --output=json`` is untrusted: every field used is validated (source.py);
  a backup set marked ``error`` is never chosen;
- WAL is listed per log directory (at most a few hundred names at a time), so
  memory stays flat whatever the archive's size;
- restore runs with ``--archive-mode=off`` (archiving is written off into the
  restored postgresql.auto.conf), ``--target-action=pause`` so replay stops
  at the target for the RPO reading, and ``--tablespace-map-all`` into the
  scratch directory so a tablespace never lands on its production path;
- a checksum mismatch reported by restore (``invalid checksum``, ``checksum
  … expected``) is ``BACKUP_CORRUPT``; any other failure ``RESTORE_FAILED``;
- the ``restore_command`` restore wrote (the last one in the restored
  postgresql.auto.conf: pgBackRest appends its own after commenting out the
  backup's) is the one command the scratch server will run, once per WAL
  segment, through a shell: it must be this very ``pgbackrest`` with
  ``--option[=value]`` words and ``archive-get %f "%p"``, nothing a shell could
  act on (``$``, backquotes, ``;``, ``|``, ``&``, redirections, globs, a
  backslash, a newline). A ``recovery-option=restore_command=...`` in the
  pgBackRest configuration can make it anything, so anything else is
  ``SCRATCH_UNSAFE``, refused before start; the accepted value is then pinned
  on the server's command line (cluster_safety.py), so no include can replace it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from drillbook.drills.backup_restore.lifetime import run_in_group
from drillbook.drills.backup_restore.physical import conf_scan
from drillbook.drills.backup_restore.physical import source as s
from drillbook.drills.backup_restore.physical.source import (
    BackupSet,
    Latest,
    PhysicalSourceError,
    RestoreInfo,
    Target,
    TargetLsn,
    TargetName,
    TargetTime,
    WalRange,
)

TOOL = "pgbackrest"
INFO_TIMEOUT_S = 300
MAX_INFO_BYTES = 64 * 1024 * 1024
_ARCHIVE_ID_RE = re.compile(r"^\d+-\d+$")
_LOG_DIR_RE = re.compile(r"^[0-9A-F]{16}$")
_WAL_FILE_RE = re.compile(r"^([0-9A-F]{24})-[0-9a-f]{40}(\.[a-z0-9]+)?$")
_CORRUPT_RE = re.compile(
    r"invalid checksum|checksum.*(?:expected|mismatch)|does not match.*checksum|ERROR: \[039\]|ERROR: \[095\]",
    re.IGNORECASE,
)


def run_as_user(os_user: str | None) -> pwd.struct_passwd | None:
    """The OS user pgbackrest (and the restored cluster) run as: none unless drillbook is root."""
    if os.geteuid() != 0:
        return None
    name = os_user or "postgres"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PhysicalSourceError(
            "RESTORE_FAILED",
            f"running as root and the OS user {name!r} pgbackrest should run as "
            "does not exist; set backup.pgbackrest.os_user",
        ) from None


#: a restore_command holding anything but these characters could make the shell do something: refused
_RESTORE_COMMAND_CHARS_RE = re.compile(r'[A-Za-z0-9_./:@,+=% "-]*')
_OPTION_RE = re.compile(r"--(?P<name>[a-z0-9][a-z0-9-]*)(?:=.*)?", re.DOTALL)
#: pgBackRest never puts a secure option (cipher pass, S3/Azure/GCS keys, tokens) on a command line: a
#: restore_command carrying one was written by hand, and its value must not reach the evidence
_HIDDEN_OPTION_PARTS = "pass|key|secret|token|credential"
_SECRET_OPTION_RE = re.compile(_HIDDEN_OPTION_PARTS, re.IGNORECASE)
_SECRET_VALUE_RE = re.compile(
    rf'(--[A-Za-z0-9-]*(?:{_HIDDEN_OPTION_PARTS})[A-Za-z0-9-]*=)(?:"[^"]*"?|\S+)', re.IGNORECASE
)


def written_restore_command(auto_conf: Path) -> str | None:
    """The last ``restore_command = '...'`` line of a restored postgresql.auto.conf (pgBackRest's own), unquoted."""
    return (conf_scan.quoted_settings(auto_conf) or {}).get("restore_command")


def restore_command_problem(value: str | None, binary: str) -> str | None:
    """Why ``value`` is not a restore_command drillbook lets the scratch server run (see the module rule); None if it is."""
    if value is None:
        return "restore wrote no restore_command into the restored postgresql.auto.conf"
    if not _RESTORE_COMMAND_CHARS_RE.fullmatch(value):
        bad = sorted({c for c in value if not _RESTORE_COMMAND_CHARS_RE.fullmatch(c)})
        return f"it holds {''.join(bad)!r}, which a shell would act on"
    try:
        words = shlex.split(value)
    except ValueError as exc:
        return f"it does not parse as shell words ({exc})"
    if (
        len(words) < 4
        or words[-3:] != ["archive-get", "%f", "%p"]
        or not value.endswith(' archive-get %f "%p"')
    ):
        return 'it does not end in archive-get %f "%p"'
    allowed = {binary, shutil.which(binary, path="/usr/bin:/bin") or binary}
    if words[0] not in allowed:
        return f"it runs {words[0]!r}, not the pgbackrest drillbook ran ({binary!r})"
    for word in words[1:-3]:
        option = _OPTION_RE.fullmatch(word)
        if option is None:
            return f"{word[:40]!r} is not a --option of pgbackrest"
        if _SECRET_OPTION_RE.search(option["name"]):
            return (
                f"--{option['name']} would put a secret on a command line (pgBackRest never writes one there)"
            )
    return None


def shown_restore_command(value: str | None) -> str:
    """``value`` for a message: at most 160 characters, the value of any secret-looking option masked."""
    if value is None:
        return "none"
    return repr(_SECRET_VALUE_RE.sub(r"\1***", value)[:160])


class PgBackRest:
    tool = TOOL

    def __init__(
        self,
        *,
        stanza: str,
        config: str,
        repo: int = 1,
        os_user: str | None = None,
        env: Mapping[str, str] | None = None,
        binary: str = "pgbackrest",
    ):
        self.stanza = s.require_str(stanza, tool=TOOL, key="stanza", pattern=s.SAFE_NAME_RE)
        self.config = config
        self.repo = repo
        self.os_user = os_user
        self.binary = binary
        self.passed_env = {k: v for k, v in (env or {}).items() if k.startswith("PGBACKREST_")}
        self._archive_id: str | None = None

    def describe(self) -> str:
        return f"pgbackrest stanza {self.stanza!r} repo {self.repo} ({self.config})"

    # -- running the tool --------------------------------------------------------------
    def _env(self, home: str) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "HOME": home,
            "LANG": "C",
            "LC_ALL": "C",
            "TZ": "UTC",
            **self.passed_env,
        }

    def _argv(self, *args: str) -> list[str]:
        return [
            self.binary,
            f"--config={self.config}",
            f"--stanza={self.stanza}",
            f"--repo={self.repo}",
            *args,
        ]

    def _kwargs(self, cwd: str = "/") -> dict[str, Any]:
        user = run_as_user(self.os_user)
        kw: dict[str, Any] = {
            "cwd": cwd,
            "env": self._env(user.pw_dir if user else os.environ.get("HOME", "/")),
            "stdin": subprocess.DEVNULL,
        }
        if user is not None:
            kw.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        return kw

    def _run(self, *args: str, timeout: float, code: str = "BACKUP_MISSING", cwd: str = "/") -> str:
        try:
            proc = run_in_group(self._argv(*args), timeout=timeout, **self._kwargs(cwd))
        except FileNotFoundError:
            raise PhysicalSourceError(
                code, f"{self.binary!r} is not installed (apt-get install pgbackrest)"
            ) from None
        except subprocess.TimeoutExpired:
            raise PhysicalSourceError(
                code, f"pgbackrest {args[-1]} did not finish within {timeout:.0f}s"
            ) from None
        if len(proc.stdout) > MAX_INFO_BYTES:
            raise PhysicalSourceError(
                code,
                f"pgbackrest {args[-1]} answered {len(proc.stdout)} bytes, more than "
                f"{MAX_INFO_BYTES}; refusing to parse it",
            )
        if proc.returncode != 0:
            err = (
                proc.stderr.decode("utf-8", "replace").strip()[-600:]
                or proc.stdout.decode("utf-8", "replace")[-600:]
            )
            raise PhysicalSourceError(
                code, f"pgbackrest {args[-1]} for stanza {self.stanza!r} exited {proc.returncode}: {err}"
            )
        return proc.stdout.decode("utf-8", "replace")

    # -- PhysicalSource ------------------------------------------------------------------
    def locate(self) -> BackupSet:
        raw = self._run("--output=json", "info", timeout=INFO_TIMEOUT_S)
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise PhysicalSourceError("BACKUP_MISSING", f"pgbackrest info is not JSON: {exc}") from None
        if not isinstance(doc, list):
            raise PhysicalSourceError(
                "BACKUP_MISSING", f"pgbackrest info: expected a JSON list, got {type(doc).__name__}"
            )
        stanza = next((x for x in doc if isinstance(x, dict) and x.get("name") == self.stanza), None)
        if stanza is None:
            raise PhysicalSourceError("BACKUP_MISSING", f"pgbackrest info lists no stanza {self.stanza!r}")
        backups = stanza.get("backup")
        if not isinstance(backups, list):
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"pgbackrest info key 'backup' of stanza {self.stanza!r}: expected "
                f"a list, got {type(backups).__name__}",
            )
        good = [b for b in backups if isinstance(b, dict) and b.get("error") is not True]
        if not good:
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"stanza {self.stanza!r} has no backup set without errors ({len(backups)} listed)",
            )
        b = good[-1]  # pgbackrest lists oldest first
        ts, arch, info, db = (
            b.get("timestamp") or {},
            b.get("archive") or {},
            b.get("info") or {},
            b.get("database") or {},
        )
        for key, val in (("timestamp", ts), ("archive", arch), ("info", info), ("database", db)):
            if not isinstance(val, dict):
                raise PhysicalSourceError(
                    "BACKUP_MISSING", f"pgbackrest info key 'backup[].{key}': expected an object"
                )
        label = s.require_str(b.get("label"), tool=TOOL, key="backup[].label", pattern=s.SAFE_NAME_RE)
        start_wal = s.require_wal(arch.get("start"), tool=TOOL, key="backup[].archive.start")
        stop_wal = s.require_wal(arch.get("stop"), tool=TOOL, key="backup[].archive.stop")
        db_id = s.require_int(db.get("id"), tool=TOOL, key="backup[].database.id", minimum=1)
        pg_major = None
        for entry in stanza.get("db") or []:
            if isinstance(entry, dict) and entry.get("id") == db_id and isinstance(entry.get("version"), str):
                m = re.match(r"^(\d{1,3})(?:\.\d+)?$", entry["version"])
                pg_major = int(m.group(1)) if m else None
                if pg_major is not None and pg_major < 10:
                    pg_major = None  # 9.x names are two-part; only 10+ is supported here
        for entry in stanza.get("archive") or []:
            if (
                isinstance(entry, dict)
                and isinstance(entry.get("database"), dict)
                and entry["database"].get("id") == db_id
            ):
                self._archive_id = s.require_str(
                    entry.get("id"), tool=TOOL, key="archive[].id", pattern=_ARCHIVE_ID_RE
                )
        if self._archive_id is None:
            raise PhysicalSourceError(
                "BACKUP_MISSING",
                f"pgbackrest info names no WAL archive for database id {db_id} of stanza {self.stanza!r}",
            )
        return BackupSet(
            label=label,
            start_time=s.require_epoch(ts.get("start"), tool=TOOL, key="backup[].timestamp.start"),
            stop_time=s.require_epoch(ts.get("stop"), tool=TOOL, key="backup[].timestamp.stop"),
            start_wal=start_wal,
            stop_wal=stop_wal,
            pg_major=pg_major,
            size_bytes=s.require_int(info.get("size"), tool=TOOL, key="backup[].info.size", optional=True),
            timeline=s.wal_timeline(start_wal),
        )

    def wal_segments_needed(self, backup: BackupSet, target: Target) -> WalRange:
        # which segment holds a time/name target is only known by replaying; check through the archive's end
        return WalRange(first=backup.start_wal, last=None, timeline=backup.timeline)

    def _ls(self, path: str) -> list[str]:
        out = self._run("--output=text", "repo-ls", path, timeout=INFO_TIMEOUT_S)
        return sorted(line for line in out.splitlines() if line and line != ".")

    def list_archived_wal(self, backup: BackupSet, after: str | None) -> Iterator[str]:
        if self._archive_id is None:
            self.locate()
        base = f"archive/{self.stanza}/{self._archive_id}"
        prefix = f"{backup.timeline:08X}"
        floor = (after or "")[:16]
        for log_dir in self._ls(base):
            if not _LOG_DIR_RE.match(log_dir) or not log_dir.startswith(prefix) or log_dir < floor:
                continue
            for name in self._ls(f"{base}/{log_dir}"):
                m = _WAL_FILE_RE.match(name)
                if m and (after is None or m.group(1) > after):
                    yield m.group(1)

    def restore(
        self, backup: BackupSet, target: Target, datadir: Path, *, env: Mapping[str, str], timeout_s: float
    ) -> RestoreInfo:
        args = [
            f"--pg1-path={datadir}",
            f"--set={backup.label}",
            "--archive-mode=off",
            f"--tablespace-map-all={datadir.parent / 'tablespaces'}",
        ]
        written = {"archive_mode": "off"}
        if isinstance(target, Latest):
            args.append("--type=default")
        else:
            kind, value = {
                TargetTime: ("time", lambda t: t.time.strftime("%Y-%m-%d %H:%M:%S.%f+00")),
                TargetName: ("name", lambda t: t.name),
                TargetLsn: ("lsn", lambda t: t.lsn),
            }[type(target)]
            args += [f"--type={kind}", f"--target={value(target)}", "--target-action=pause"]
            written.update({f"recovery_target_{kind}": value(target), "recovery_target_action": "pause"})
        self.passed_env.update({k: v for k, v in env.items() if k.startswith("PGBACKREST_")})
        began = time.monotonic()
        try:
            self._run(*args, "restore", timeout=timeout_s, code="RESTORE_FAILED", cwd=str(datadir.parent))
        except PhysicalSourceError as exc:
            if _CORRUPT_RE.search(exc.message):
                raise PhysicalSourceError("BACKUP_CORRUPT", exc.message) from None
            raise
        restore_command = written_restore_command(datadir / "postgresql.auto.conf")
        problem = restore_command_problem(restore_command, self.binary)
        if problem is not None:
            raise PhysicalSourceError(
                "SCRATCH_UNSAFE",
                f"the restore_command the restored cluster would run, {shown_restore_command(restore_command)}, is refused: "
                f"{problem} (a recovery-option in {self.config} can set it); refused before start",
            )
        assert restore_command is not None  # restore_command_problem refuses None
        written["restore_command"] = restore_command
        return RestoreInfo(datadir=datadir, recovery_conf_written=written, seconds=time.monotonic() - began)
