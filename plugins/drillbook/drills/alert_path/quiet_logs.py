"""Route third-party log lines through ``redact`` before any handler sees them.

httpx logs every request at INFO as ``HTTP Request: POST <full URL> ...`` and a
webhook URL often *is* the credential (the token is in its path). Airflow's
task log would keep it forever. Rule: before drillbook makes a request with a
library that logs URLs, a ``RedactingFilter`` is on that library's logger, so
its messages pass through the same ``redact`` as everything else.
"""

from __future__ import annotations

import logging

from drillbook.safety.redact import redact


class RedactingFilter(logging.Filter):
    """Rewrite a record's message with secrets masked; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the library's bug; leave it as it is
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def redact_logger(name: str) -> None:
    """Put one ``RedactingFilter`` on logger ``name`` (idempotent)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
