"""Phase 5, restore: load the dump into the scratch database and classify every stderr line.

Rules this module enforces:
- custom and directory dumps restore with ``pg_restore -j N``; tar with
  ``pg_restore`` (tar cannot be restored in parallel); plain with
  ``psql -v ON_ERROR_STOP=0 -f``; plain.gz is gunzipped in a thread straight
  into psql's stdin (a pipe, never a temporary copy of the whole dump);
- connection parameters and the password reach the tools through the
  environment (``drillbook.resources.pg.tool_env``), never argv;
- every stderr line is classified, streaming (stderr is never held whole):
  ``ROLE_ABSENT``, ``OWNERSHIP_NOT_RESTORABLE`` (the owner exists but the
  restoring role may not act as it), ``EXTENSION_ABSENT``, ``ARCHIVE_TRUNCATED``,
  ``SCRATCH_UNREACHABLE`` (the server or the connection went away: not the
  backup's fault), ``RESTORE_FAILED`` (the tool itself gave up), ``RESTORE_ERROR`` (any other
  error), or context (DETAIL/HINT/"Command was"/TOC lines, notices, warnings);
- exit 0 with error lines on stderr -> ``EXIT_CODE_LIED`` (psql does exactly
  that); a non-zero exit with no error line -> ``RESTORE_FAILED``;
- the restore timeout bounds the whole restore: the tool runs in its own
  process group (session) and the timeout kills the group, because
  ``pg_restore -j`` forks workers that keep stderr open and keep loading after
  their parent is killed; the same ``finally`` kills the group when a stop
  signal interrupts the drill (``lifetime.Interrupted``), and the tool dies
  with a SIGKILLed parent (``lifetime.die_with_parent``);
- findings keep a bounded, redacted sample of their stderr lines;
- a plain dump (and plain.gz) reaches psql only through the statement filter
  (sqlfilter.py), on stdin, with ``--no-psqlrc`` and ``PSQLRC=/dev/null``; the
  filter's first refusal ends the feed (``outcome.refusal``).
"""

from __future__ import annotations

import gzip
import re
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from drillbook.drills.backup_restore import lifetime
from drillbook.drills.backup_restore.sqlfilter import StatementFilter
from drillbook.drills.backup_restore.sqlrules import Refusal
from drillbook.drills.backup_restore.sqlstream import filter_stream
from drillbook.drills.backup_restore.tools import Tool
from drillbook.resources import pg

SAMPLE_LINES = 5
MAX_SUBJECTS = 10
LINE_MAX = 300

_ROLE_RE = re.compile(r'role "([^"]+)" does not exist')
# The owning role exists but the restoring role may not act as it (a CREATEDB scratch role
# restoring ``ALTER ... OWNER TO``): PostgreSQL <= 15 and >= 16 word it differently.
_OWNERSHIP_RE = re.compile(r'must be (?:a )?member of role "([^"]+)"|must be able to SET ROLE "([^"]+)"')
_EXTENSION_RES = [
    re.compile(r'extension "([^"]+)" is not available'),
    re.compile(r'could not open extension control file "[^"]*?/?([^/"]+)\.control"'),
    re.compile(r'extension "([^"]+)" does not exist'),
    re.compile(r'could not access file "\$libdir/([^"]+)"'),
]
_TRUNCATED_RE = re.compile(
    r"could not read from input file: end of file|unexpected end of file|could not find block ID"
    r"|could not find header for file|could not read input file: end of file|end of file reached|"
    r"possibly corrupt archive|could not read from input file: Success"
    # pg_restore 16 reports a cut .dat.gz of a directory dump only when closing it (gzclose's
    # buffer error, printed with errno "Success").
    r"|could not close data file",
    re.IGNORECASE,
)
# The scratch server went away under the restore (crash, restart, terminated session, network):
# nothing is known about the backup, so this is SCRATCH_UNREACHABLE, never a verdict on the dump.
_CONNECTION_LOST_RE = re.compile(
    r"server closed the connection unexpectedly|terminating connection due to|no connection to the server"
    r"|connection to server was lost"
    r"|connection to server .* failed|could not connect to server|the database system is shutting down"
    r"|the database system is in recovery mode|SSL SYSCALL error|connection not open",
    re.IGNORECASE,
)
_ERROR_RE = re.compile(r"\b(ERROR|FATAL|PANIC):\s")
_TOOL_ERROR_RE = re.compile(r"^(pg_restore|psql): (error|fatal): ")
_QUERY_FAILED = "could not execute query"
# Echoes of an error already reported on its own line (a parallel worker's
# failure is printed by the worker first); alone, the non-zero exit still counts.
_CONSEQUENCE_RE = re.compile(r"a worker process died unexpectedly|errors ignored on restore")


@dataclass
class Group:
    code: str
    subject: str | None
    count: int = 0
    sample: list[str] = field(default_factory=list)


class StderrClassifier:
    """Classifies stderr lines one at a time; keeps counts and a bounded sample per finding."""

    def __init__(self, expected: tuple[str, ...] = ()) -> None:
        self.expected = expected  # error texts that are no error here (the ephemeral cluster's own role)
        self.counts: Counter[str] = Counter()
        self.groups: dict[tuple[str, str | None], Group] = {}
        self.tail: list[str] = []

    def classify(self, line: str) -> tuple[str, str | None]:
        """(class, subject) of one stderr line; class is a finding code or ``context``."""
        text = line.strip()
        # Only the tool's own lines carry errors; anything else continues one (DETAIL, LINE n,
        # the SQL of "Command was:", which may itself contain the word ERROR).
        if (
            not text.startswith(("pg_restore:", "psql:"))
            or _CONSEQUENCE_RE.search(text)
            or any(e in text for e in self.expected)
        ):
            return "context", None
        if _CONNECTION_LOST_RE.search(text):  # psql words this one "file:line: error:", in lower case
            return "SCRATCH_UNREACHABLE", None
        tool_error = _TOOL_ERROR_RE.match(text)
        has_error = bool(_ERROR_RE.search(text)) or bool(tool_error)
        if not has_error:
            return "context", None
        m = _ROLE_RE.search(text)
        if m:
            return "ROLE_ABSENT", m.group(1)
        m = _OWNERSHIP_RE.search(text)
        if m:
            return "OWNERSHIP_NOT_RESTORABLE", m.group(1) or m.group(2)
        for rx in _EXTENSION_RES:
            m = rx.search(text)
            if m:
                return "EXTENSION_ABSENT", m.group(1)
        if _TRUNCATED_RE.search(text):
            return "ARCHIVE_TRUNCATED", None
        if tool_error and _QUERY_FAILED not in text:
            return "RESTORE_FAILED", None  # the tool gave up (connection, corrupt data, worker died)
        if re.search(r"\bFATAL:|\bPANIC:", text):
            return "RESTORE_FAILED", None
        return "RESTORE_ERROR", None

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        if not line.strip():
            return
        code, subject = self.classify(line)
        self.counts[code] += 1
        self.tail = [*self.tail, line[:LINE_MAX]][-SAMPLE_LINES:]
        if code == "context":
            return
        key = (code, subject)
        if key not in self.groups and len([k for k in self.groups if k[0] == code]) >= MAX_SUBJECTS:
            key = (code, None)
        group = self.groups.setdefault(key, Group(code=code, subject=key[1]))
        group.count += 1
        if len(group.sample) < SAMPLE_LINES:
            group.sample.append(line[:LINE_MAX])

    @property
    def error_lines(self) -> int:
        return sum(n for code, n in self.counts.items() if code != "context")


@dataclass
class RestoreOutcome:
    tool: Tool
    argv: list[str]
    exit_code: int | None
    seconds: float
    timed_out: bool
    classifier: StderrClassifier
    feed_error: str | None = None
    refusal: Refusal | None = None

    @property
    def fatal(self) -> bool:
        """The restore did not complete: timed out, the tool gave up, or the archive ended early."""
        codes = {g.code for g in self.classifier.groups.values()}
        if (
            self.timed_out
            or self.feed_error
            or self.refusal
            or codes & {"RESTORE_FAILED", "ARCHIVE_TRUNCATED", "SCRATCH_UNREACHABLE"}
        ):
            return True
        return bool(self.exit_code) and self.classifier.error_lines == 0

    @property
    def lied(self) -> bool:
        return self.exit_code == 0 and self.classifier.error_lines > 0


def restore_command(*, fmt: str, tool: Tool, path: Path, dbname: str, jobs: int, no_owner: bool) -> list[str]:
    """argv for the restore tool: no password, no host (they travel in the environment)."""
    if fmt in ("custom", "directory", "tar"):
        argv = [tool.path, "--no-password", "-d", dbname]
        if fmt != "tar" and jobs > 1:
            argv += ["-j", str(jobs)]
        if no_owner:
            argv += ["--no-owner"]
        return [*argv, str(path)]
    # Always stdin: the dump reaches psql only through the statement filter.
    return [tool.path, "--no-psqlrc", "-q", "--no-password", "-v", "ON_ERROR_STOP=0", "-d", dbname, "-f", "-"]


def _feed_plain(
    path: Path, gz: bool, proc: subprocess.Popen, errors: list[str], flt: StatementFilter
) -> None:
    assert proc.stdin is not None
    stdin = proc.stdin
    try:
        with gzip.open(path, "rb") if gz else path.open("rb") as src:
            filter_stream(src, stdin.write, flt)  # type: ignore[arg-type]
    except BrokenPipeError:
        pass  # psql stopped reading: its own stderr says why
    except (OSError, EOFError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass


def run_restore(
    *,
    fmt: str,
    tool: Tool,
    path: Path,
    scratch_db_dsn: str,
    jobs: int,
    no_owner: bool,
    timeout: float,
    scope: str = "shared",
    expected: tuple[str, ...] = (),
) -> RestoreOutcome:
    """Run the restore into the database of ``scratch_db_dsn``; never raises for tool failures."""
    dbname = pg.parse(scratch_db_dsn).get("dbname", "")
    argv = restore_command(fmt=fmt, tool=tool, path=path, dbname=dbname, jobs=jobs, no_owner=no_owner)
    env = pg.tool_env(scratch_db_dsn)
    # Restores print a NOTICE per object on some dumps; only warnings and errors are evidence.
    env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " -c client_min_messages=warning").strip()
    if fmt in ("plain", "plain.gz"):
        # The filter reads '...' strings as standard_conforming_strings=on does; make psql's session
        # agree whatever the server's default (a dump cannot SET it otherwise: sqlrules refuses that).
        env["PGOPTIONS"] += " -c standard_conforming_strings=on"
    env["PSQLRC"] = "/dev/null"
    plain = fmt in ("plain", "plain.gz")
    flt = StatementFilter(scope, pin_encoding=True)
    classifier = StderrClassifier(expected)
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.PIPE if plain else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=False,
        start_new_session=True,  # its own process group, so a kill reaches the -j workers too
        preexec_fn=lifetime.die_with_parent(),  # and a SIGKILLed drill takes the tool along
    )
    watchdog = lifetime.watch_group(proc.pid)  # the -j workers die with a SIGKILLed drill too
    timed_out = threading.Event()

    def _kill() -> None:
        if proc.returncode is not None:  # reaped already: its pid (= group id) may be reused
            return
        timed_out.set()
        lifetime.kill_group(proc)

    timer = threading.Timer(timeout, _kill)
    timer.daemon = True
    timer.start()
    feed_errors: list[str] = []
    feeder = None
    if plain:
        feeder = threading.Thread(
            target=_feed_plain, args=(path, fmt == "plain.gz", proc, feed_errors, flt), daemon=True
        )
        feeder.start()
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:
            classifier.feed(raw.decode("utf-8", "replace"))
        exit_code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            lifetime.kill_group(proc)
            proc.wait()
        lifetime.unwatch(watchdog)
        if feeder is not None:
            feeder.join(timeout=30)
    return RestoreOutcome(
        tool=tool,
        argv=[Path(argv[0]).name, *argv[1:]],
        exit_code=exit_code,
        seconds=time.monotonic() - start,
        timed_out=timed_out.is_set(),
        classifier=classifier,
        feed_error=feed_errors[0] if feed_errors else None,
        refusal=flt.refusal,
    )


_MESSAGES = {
    "ROLE_ABSENT": "the dump needs role {subject!r}, which does not exist on the restore target ({count} statement(s) failed)",
    "OWNERSHIP_NOT_RESTORABLE": "objects owned by role {subject!r} could not be given to it: the restoring role is not a "
    "member of it ({count} statement(s) failed); the data itself was restored",
    "EXTENSION_ABSENT": "the dump needs extension {subject!r}, which the restore target does not have ({count} line(s))",
    "ARCHIVE_TRUNCATED": "{tool} hit the end of the archive early: the dump was cut off ({count} line(s))",
    "RESTORE_FAILED": "{tool} gave up: the restore did not complete ({count} line(s))",
    "SCRATCH_UNREACHABLE": "{tool} lost its connection to the scratch server during the restore ({count} line(s)); "
    "this says nothing about the backup",
    "RESTORE_ERROR": "{tool} reported {count} error(s) while restoring",
}


def add_findings(builder, outcome: RestoreOutcome) -> None:  # type: ignore[no-untyped-def]
    """Turn a restore outcome into findings on ``builder`` (drillbook.drills.base.ResultBuilder)."""
    tool = Path(outcome.tool.path).name
    for group in outcome.classifier.groups.values():
        detail: dict[str, str | int | float | bool | None] = {"lines": group.count}
        for i, line in enumerate(group.sample, 1):
            detail[f"stderr_{i}"] = line
        builder.find(
            group.code,
            _MESSAGES[group.code].format(subject=group.subject, count=group.count, tool=tool),
            subject=group.subject,
            detail=detail,
        )
    codes = {g.code for g in outcome.classifier.groups.values()}
    if outcome.refusal is not None:
        r = outcome.refusal
        builder.find(
            "DUMP_LEAVES_DATABASE",
            f"the feed to psql stopped at {r.describe()}; nothing after it was restored",
            subject=r.statement[:120],
            detail={"line": r.line, "scope": r.scope, "statement": r.statement},
        )
    if outcome.timed_out:
        builder.find(
            "RESTORE_FAILED",
            f"{tool} was killed after the restore timeout of {outcome.seconds:.0f}s",
            detail={"exit_code": outcome.exit_code},
        )
    elif outcome.feed_error:
        builder.find("RESTORE_FAILED", f"feeding the decompressed dump to psql failed: {outcome.feed_error}")
    elif outcome.exit_code and outcome.classifier.error_lines == 0:
        detail = {f"stderr_{i}": line for i, line in enumerate(outcome.classifier.tail, 1)}
        builder.find(
            "RESTORE_FAILED",
            f"{tool} exited {outcome.exit_code} without an error message",
            detail={"exit_code": outcome.exit_code, **detail},
        )
    if outcome.lied:
        # Severity follows what was hidden: role-only noise is medium, anything else high.
        mild = codes <= {"ROLE_ABSENT", "OWNERSHIP_NOT_RESTORABLE"}
        builder.find(
            "EXIT_CODE_LIED",
            f"{tool} exited 0 but wrote {outcome.classifier.error_lines} error line(s) to stderr",
            severity="medium" if mild else None,
            detail={
                "error_lines": outcome.classifier.error_lines,
                **{k: v for k, v in outcome.classifier.counts.items()},
            },
        )
