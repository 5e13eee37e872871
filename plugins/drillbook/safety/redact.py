"""Redact secrets: every report, log line, finding and ledger row passes through here.

The rule: a string leaves drillbook (terminal, task log, ledger, Slack, outbox)
only after ``redact``. Secrets are known two ways: values registered at run time
with ``register_secret`` (passwords and tokens read from Connections or the
environment) and patterns that look like credentials wherever they appear
(URL user-info, ``password=`` pairs, Slack tokens, bearer tokens, AWS keys,
query-string tokens and the path of Slack/webhook URLs).

Exceptions take the same path: ``register_dsn`` learns a DSN's password
without parsing it strictly (a malformed DSN is exactly the one a parser
echoes back in its error), and ``describe_exception`` / ``format_exception``
are the only ways an exception's text or traceback is shown.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # before the key=value rule, which would otherwise take "Bearer" as the value
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{6,}"), "Bearer " + MASK),
    # scheme://user:password@host -> scheme://user:***@host
    (
        re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)(?P<secret>[^@\s/]+)(?=@)"),
        r"\g<pre>" + MASK,
    ),
    # password=..., PGPASSWORD=..., token: ..., api_key=...; not a path's last component
    # (/etc/passwd:1, /run/secrets/token:3 are file:line, not key: value)
    (
        re.compile(
            r"(?i)(?P<pre>(?<![/\\])\b(?:pg)?(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
            r"secret[_-]?access[_-]?key|routing[_-]?key|authorization)[\"']?\s*[=:]\s*[\"']?)(?P<secret>[^\s\"'&,;}]+)"
        ),
        r"\g<pre>" + MASK,
    ),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{6,}"), "xox?-" + MASK),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "AKIA" + MASK),
    (re.compile(r"(https://hooks\.slack\.com/services/)[^\s\"']+"), r"\g<1>" + MASK),
]

_MIN_SECRET_LEN = 4  # shorter values would redact ordinary words


def register_secret(value: str | None) -> None:
    """Remember a secret value so that every later ``redact`` masks it."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


_URL_PASSWORD = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#@]*?:(?P<pw>[^/?#]*)@")
_KV_PASSWORD = re.compile(r"""(?i)\b(?:ssl)?password\s*=\s*(?:'(?P<q>(?:[^'\\]|\\.)*)'|(?P<bare>\S+))""")
_QUERY_PASSWORD = re.compile(r"(?i)[?&](?:ssl)?password=(?P<pw>[^&#\s]+)")


def register_dsn(dsn: str | None) -> None:
    """Register the password(s) a DSN or URI carries, however malformed it is; never raises.

    Both the text as written and its percent-decoded form are registered: a
    parser's error quotes the former, a library that decoded it may log the latter.
    """
    if not dsn or not isinstance(dsn, str):
        return
    from urllib.parse import unquote

    found: list[str] = []
    text = dsn.strip()
    url = _URL_PASSWORD.match(text)
    if url:
        # user-info ends at the LAST '@' before the host: a password may itself contain '@'
        head = text.split("://", 1)[1].split("/", 1)[0]
        userinfo = head.rsplit("@", 1)[0] if "@" in head else ""
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
        found.append(url.group("pw"))
    for match in _KV_PASSWORD.finditer(text):
        found.append(match.group("q") if match.group("q") is not None else match.group("bare"))
    for match in _QUERY_PASSWORD.finditer(text):
        found.append(match.group("pw"))
    for secret in found:
        register_secret(secret)
        try:
            register_secret(unquote(secret, errors="strict"))
        except UnicodeDecodeError:
            pass


def describe_exception(exc: BaseException) -> str:
    """One redacted line for an exception: ``TypeName: message`` (first line of the message)."""
    text = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__)


def format_exception(exc: BaseException) -> str:
    """The full traceback of ``exc``, redacted line by line (for a debug file or ``DRILLBOOK_DEBUG=1``)."""
    import traceback

    return redact("".join(traceback.format_exception(exc)))


def forget_secrets() -> None:
    """Forget registered secrets (tests use this between cases)."""
    with _lock:
        _secrets.clear()


def redact(text: str) -> str:
    """Return ``text`` with registered secrets and credential-shaped substrings masked."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_url(url: str) -> str:
    """Keep scheme, host and port of a URL; mask user-info, path secrets and query values."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = parts.path
    # Webhook URLs carry their secret in the path (Slack, Teams, generic tokens):
    # keep the first segment so a reader can still tell which endpoint it was.
    segments = [s for s in path.split("/") if s]
    if len(segments) > 1:
        path = "/" + segments[0] + "/" + MASK
    query = MASK if parts.query else ""
    return redact(urlunsplit((parts.scheme, host, path, query, "")))


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like structure (dicts, lists, scalars)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): redact_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    return value


_factory_installed = False


def install_log_redaction() -> None:
    """Route every log record created in this process through ``redact`` (idempotent).

    A filter on the ``drillbook`` logger would not see records of its children, of
    Airflow's task logger or of libraries (httpx logs full request URLs, botocore
    logs endpoints); a record factory sees every record at creation, once.
    """
    import logging

    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
    previous = logging.getLogRecordFactory()

    def redacting_factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem to report, not ours
            return record
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(redacting_factory)
