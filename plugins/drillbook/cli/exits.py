"""Exit codes of every ``drillbook`` command, and the one handler that turns an exception into one.

Rules this module enforces:
- the codes below are the only ones a command returns; 1 means only "ran and
  found a problem" (a FAIL verdict, a broken chain, a missed drill), so a
  crash or a configuration mistake can never look like tampering;
- no Python traceback reaches the terminal for bad input: a drillbook error,
  an unreachable server or an unreadable file is one redacted line and exit 2;
- an unexpected exception (a defect in drillbook) is one redacted line naming
  where the full, redacted traceback was written, and exit 4;
  ``DRILLBOOK_DEBUG=1`` prints that traceback (redacted) as well;
- before any command runs, the passwords of every DSN on the command line or
  in the environment drillbook reads are registered with ``redact``, so a
  parser that echoes a malformed DSN cannot print one.
"""

from __future__ import annotations

import enum
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class ExitCode(enum.IntEnum):
    OK = 0  # PASS, chain intact, command done
    FAIL = 1  # the check ran and found a problem: FAIL verdict, chain broken, drill missed
    ERROR = 2  # could not verify: ERROR verdict, bad input or usage, configuration, unreachable server
    SKIPPED = 3  # nothing configured to check
    INTERNAL = 4  # a defect in drillbook: an unexpected exception (traceback written to a file)
    INTERRUPTED = 130  # Ctrl-C


HELP = """\
exit codes (every command):
  0  PASS / OK: every check ran and held; the chain is intact; the command did its job
  1  FAIL: ran and found a problem (FAIL verdict, evidence chain broken, a drill missed)
  2  ERROR: could not verify (ERROR verdict, bad input or usage, a configuration
     problem, a server or file that cannot be reached); one line on stderr says why
  3  SKIPPED: nothing is configured to check
  4  internal error: a defect in drillbook; stderr names the file holding the
     redacted traceback (DRILLBOOK_DEBUG=1 prints it)
  130  interrupted (Ctrl-C)
"""

#: environment variables whose values may be DSNs or connection URIs
_DSN_ENV = re.compile(r"^(?:DRILLBOOK_.*(?:DSN|URI|CONN.*)|AIRFLOW_CONN_.*|DATABASE_URL|PGPASSWORD)$")


def register_secrets(argv: Sequence[str], environ: Mapping[str, str]) -> None:
    """Register the passwords in every DSN-like argument and DSN-carrying environment variable."""
    from drillbook.safety.redact import register_dsn, register_secret

    for value in argv:
        if "://" in value or "password" in value.lower():
            register_dsn(value.split("=", 1)[1] if value.startswith("--") and "=" in value else value)
    for key, value in environ.items():
        if _DSN_ENV.match(key):
            if key == "PGPASSWORD":
                register_secret(value)
            elif value.lstrip().startswith("{"):  # AIRFLOW_CONN_* as JSON: password and secret-looking extras
                _register_json_secrets(value)
            else:
                register_dsn(value)


_SECRET_KEY = re.compile(r"(?i)password|passwd|secret|token|api[_-]?key|private[_-]?key")


def _register_json_secrets(value: str) -> None:
    import json

    from drillbook.safety.redact import register_dsn, register_secret

    try:
        data = json.loads(value)
    except ValueError:  # not JSON after all: take what a DSN parser would
        register_dsn(value)
        return
    stack = [data]
    while stack:  # iterative: an environment variable is input too
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(child, str) and _SECRET_KEY.search(str(key)):
                    register_secret(child)
                elif isinstance(child, str) and "://" in child:
                    register_dsn(child)
                elif isinstance(child, dict | list):
                    stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def _is_environment_problem(exc: BaseException) -> bool:
    """Errors of the world rather than of drillbook: unreachable servers, unreadable files, timeouts."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


def _write_traceback(text: str) -> Path | None:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = Path(tempfile.gettempdir()) / f"drillbook-crash-{stamp}-{os.getpid()}.txt"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError:
        return None
    return path


def handle(exc: BaseException, *, debug: bool = False) -> int:
    """Print one redacted line for ``exc`` and return its exit code."""
    from drillbook.errors import DrillbookError
    from drillbook.safety.redact import describe_exception, format_exception, redact

    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, DrillbookError):
        print(f"drillbook: error: {redact(str(exc))}", file=sys.stderr)
        return ExitCode.ERROR
    if _is_environment_problem(exc):
        print(f"drillbook: error: could not run: {describe_exception(exc)}", file=sys.stderr)
        return ExitCode.ERROR
    trace = format_exception(exc)
    where = _write_traceback(trace)
    print(f"drillbook: internal error: {describe_exception(exc)}", file=sys.stderr)
    if debug:
        print(trace, file=sys.stderr, end="")
    elif where is not None:
        print(f"  the full traceback (redacted) is in {where}; DRILLBOOK_DEBUG=1 prints it", file=sys.stderr)
    return ExitCode.INTERNAL
