"""Foreign errors become drillbook's at the boundary (httpx's ``map_exceptions`` is the model).

Rules this module enforces:
- a resource or drill boundary wraps its calls into a foreign library in ``map_exceptions``; an
  exception of psycopg, botocore, slack_sdk, PyYAML or the OS that escapes it is re-raised as the
  class of ``drillbook.errors`` the mapping names, its message saying what failed (``what``), the
  foreign class and its text after ``redact`` (a DSN or token in a driver's message never leaks);
- the foreign exception stays the ``__cause__`` for a debugging traceback (which is redacted too);
- drillbook's own errors and ``BaseException``s (a stop signal) pass through untouched;
- the mappings are looked up lazily: naming botocore here never imports it.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping

from drillbook.errors import (
    ConfigurationError,
    DrillbookError,
    NotificationFailed,
    ResourceError,
    ResourceUnavailable,
)
from drillbook.safety.redact import describe_exception

#: foreign class (module, name) -> drillbook class; the first match in this order wins (most specific first)
POSTGRES: dict[tuple[str, str], type[DrillbookError]] = {
    ("psycopg", "OperationalError"): ResourceUnavailable,  # refused, timed out, authentication, server gone
    ("psycopg", "ProgrammingError"): ConfigurationError,  # a malformed DSN or option
    ("psycopg", "Error"): ResourceError,
}
AWS: dict[tuple[str, str], type[DrillbookError]] = {
    ("botocore.exceptions", "EndpointConnectionError"): ResourceUnavailable,
    ("botocore.exceptions", "ConnectTimeoutError"): ResourceUnavailable,
    ("botocore.exceptions", "ReadTimeoutError"): ResourceUnavailable,
    ("botocore.exceptions", "NoCredentialsError"): ConfigurationError,
    ("botocore.exceptions", "NoRegionError"): ConfigurationError,
    ("botocore.exceptions", "ProfileNotFound"): ConfigurationError,  # profile_name names no profile
    ("botocore.exceptions", "ClientError"): ResourceError,
    ("botocore.exceptions", "BotoCoreError"): ResourceError,
}
SLACK: dict[tuple[str, str], type[DrillbookError]] = {
    ("slack_sdk.errors", "SlackApiError"): NotificationFailed,
    ("slack_sdk.errors", "SlackClientError"): NotificationFailed,
    ("urllib.error", "URLError"): NotificationFailed,  # slack_sdk lets urllib's refusal out unwrapped
}
YAML: dict[tuple[str, str], type[DrillbookError]] = {
    ("yaml", "YAMLError"): ConfigurationError,
}
OS: dict[tuple[str, str], type[DrillbookError]] = {
    ("builtins", "ConnectionError"): ResourceUnavailable,
    ("builtins", "TimeoutError"): ResourceUnavailable,
    ("builtins", "FileNotFoundError"): ConfigurationError,
    ("builtins", "PermissionError"): ConfigurationError,
    ("builtins", "OSError"): ResourceError,
}


def _foreign_class(module: str, name: str) -> type[BaseException] | None:
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):  # the library is not installed here: nothing of it can be raised
        return None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def mapped(
    exc: BaseException, mapping: Mapping[tuple[str, str], type[DrillbookError]], *, what: str
) -> DrillbookError | None:
    """The drillbook error ``exc`` maps to under ``mapping`` (message redacted), or None when it is not mapped."""
    if isinstance(exc, DrillbookError):
        return None
    for (module, name), ours in mapping.items():
        foreign = _foreign_class(module, name)
        if foreign is not None and isinstance(exc, foreign):
            return ours(f"{what}: {describe_exception(exc)}")
    return None


@contextlib.contextmanager
def map_exceptions(*mappings: Mapping[tuple[str, str], type[DrillbookError]], what: str) -> Iterator[None]:
    """Re-raise a foreign exception from the block as the drillbook error ``mappings`` name (see the module docstring)."""
    try:
        yield
    except Exception as exc:
        for mapping in mappings:
            ours = mapped(exc, mapping, what=what)
            if ours is not None:
                raise ours from exc
        raise
