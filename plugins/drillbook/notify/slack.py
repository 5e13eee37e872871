"""Deliver messages to Slack with the real slack_sdk WebClient, or fail loudly.

Rules this module enforces:
- the client is built lazily (``cached_property``) with retry handlers for
  rate limits (429, honouring Retry-After up to a cap, ``MAX_RETRY_AFTER``
  = 60 s by default, configurable with the connection extra
  ``max_retry_after``; a longer Retry-After fails fast with
  ``NotificationFailed`` naming it, so a task never sleeps for an hour on
  Slack's say-so), server errors (500/503) and
  connection errors; passing ``retry_handlers`` replaces slack_sdk's defaults,
  so all three are listed here;
- a connection error *before* the request was sent (refused, connect timeout)
  is retried; one *after* it was sent (a timeout waiting for the answer, a
  reset) is ambiguous -- Slack may have stored the post -- so the channel
  history is searched for the message's report id (``drillbook.notify.history``)
  and the post is repeated only when it is not there: a slow answer never
  pages twice;
- when the retries are exhausted, or Slack refuses (``invalid_auth``,
  ``not_in_channel``...), ``post`` raises ``NotificationFailed`` whose message
  has been through ``redact``; the token is registered as a secret before the
  first request, so it never reaches a log line, a ledger row or a message;
- one function, ``parse_slack_connection``, turns a Slack connection's fields
  (password and extras) into a ``SlackConnection``: token, ``base_url``,
  ``timeout``, ``proxy``, ``max_retry_after``, ``channel``; the CLI (through
  ``connection_from_env``: ``DRILLBOOK_CONN_<ID>`` / ``AIRFLOW_CONN_<ID>``, JSON
  or URI) and the Airflow layer (an Airflow Connection resolved by
  ``BaseHook``) both call it, so an extra means the same on every path;
- this module never imports airflow.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from drillbook.errors import ConnectionNotConfigured, NotificationFailed
from drillbook.notify.blocks import Message
from drillbook.safety.redact import redact, register_secret

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://slack.com/api/"
MAX_RETRIES = 2  # per kind of failure; with a 10 s timeout a dead Slack fails the task in well under a minute
MAX_RETRY_AFTER = 60.0  # seconds a 429's Retry-After may make us wait; beyond it the post fails fast


@dataclass(frozen=True)
class SlackConnection:
    """The parts of a Slack connection drillbook uses (token is a secret: never log it)."""

    token: str
    base_url: str = DEFAULT_BASE_URL
    timeout: int = 10
    max_retry_after: float = MAX_RETRY_AFTER
    proxy: str | None = None
    channel: str | None = None  # a default channel named in the connection (alert paths may use it)

    def __repr__(self) -> str:  # a stray log of the object must not print the token
        return (
            f"SlackConnection(base_url={self.base_url!r}, timeout={self.timeout}, "
            f"max_retry_after={self.max_retry_after}, proxy={'set' if self.proxy else None})"
        )

    def web_client(self, *, retry_server_errors: bool = True, connection_retries: int | None = None) -> Any:
        """A slack_sdk WebClient with drillbook's bounded retry handlers (429 capped at ``max_retry_after``).

        The alert-path drill counts its own attempts at 5xx answers, so it asks for a
        client that leaves server errors to it (``retry_server_errors=False``).
        """
        from slack_sdk import WebClient

        handlers = retry_handlers(
            max_retry_after=self.max_retry_after,
            server_errors=retry_server_errors,
            connection_retries=MAX_RETRIES if connection_retries is None else connection_retries,
        )
        return WebClient(
            token=self.token,
            base_url=self.base_url,
            timeout=self.timeout,
            proxy=self.proxy,
            retry_handlers=handlers,
        )


def _extra(extra: Mapping[str, Any], key: str) -> Any:
    """An extra by its plain name or Airflow's older ``extra__slack__<name>`` form."""
    value = extra.get(key)
    return value if value not in (None, "") else extra.get(f"extra__slack__{key}")


def _number(conn_id: str, extra: Mapping[str, Any], key: str, default: float) -> float:
    value = _extra(extra, key)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number <= 0:
        raise ConnectionNotConfigured(
            f"Slack connection {conn_id!r}: extra {key!r} must be a positive number of seconds, got {value!r}"
        )
    return number


def parse_slack_connection(
    conn_id: str, *, password: str | None, extra: Mapping[str, Any] | None
) -> SlackConnection:
    """The one reading of a Slack connection's fields, for the CLI and for Airflow alike."""
    extra = dict(extra or {})
    token = password or _extra(extra, "token")
    if not token:
        raise ConnectionNotConfigured(
            f"Slack connection {conn_id!r} has no password: put the Slack bot token (xoxb-...) in the connection's password"
        )
    register_secret(str(token))
    base_url = str(_extra(extra, "base_url") or DEFAULT_BASE_URL)
    if not base_url.endswith("/"):
        base_url += "/"  # slack_sdk joins method names onto it
    proxy = _extra(extra, "proxy")
    if proxy:
        from urllib.parse import urlsplit

        register_secret(urlsplit(str(proxy)).password)  # a proxy URL may carry credentials
    channel = _extra(extra, "channel")
    return SlackConnection(
        token=str(token),
        base_url=base_url,
        timeout=max(1, round(_number(conn_id, extra, "timeout", 10))),
        max_retry_after=_number(conn_id, extra, "max_retry_after", MAX_RETRY_AFTER),
        proxy=str(proxy) if proxy else None,
        channel=str(channel) if channel else None,
    )


@dataclass(frozen=True)
class Delivery:
    """Where a message went: ``transport`` is "slack" or "outbox"; ``ts`` identifies it for threads."""

    transport: str
    channel: str
    ts: str
    thread_ts: str | None = None
    delivered: bool = True
    report_id: str | None = None  # the marker carried by the message (metadata and context line)
    how: str = "posted"  # or "found in history": Slack stored it although it did not answer


def env_var_of(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def connection_from_env(
    conn_id: str = "drillbook_slack", *, environ: Mapping[str, str] | None = None
) -> SlackConnection | None:
    """The Slack connection ``conn_id`` from ``DRILLBOOK_CONN_<ID>`` / ``AIRFLOW_CONN_<ID>``; None when neither is set."""
    from drillbook.resources.connections import connection_from_env as generic_from_env

    try:
        conn = generic_from_env(conn_id, environ=environ)
        if conn is None:
            return None
        return parse_slack_connection(conn_id, password=conn.password, extra=conn.extra)
    except ConnectionNotConfigured as exc:
        raise NotificationFailed(str(exc)) from None


class SlackSender:
    """Post messages with chat.postMessage; raise NotificationFailed when Slack cannot be told."""

    transport = "slack"

    def __init__(
        self,
        *,
        client: Any = None,
        connection: SlackConnection | None = None,
        max_retry_after: float | None = None,
    ):
        if client is None and connection is None:
            raise ValueError("SlackSender needs a WebClient or a SlackConnection")
        self._given_client = client
        self._connection = connection
        if max_retry_after is None:
            max_retry_after = connection.max_retry_after if connection is not None else MAX_RETRY_AFTER
        self.max_retry_after = float(max_retry_after)
        token = getattr(client, "token", None) if client is not None else connection.token  # type: ignore[union-attr]
        register_secret(token)
        self._channel_ids: dict[
            str, str
        ] = {}  # "#name" -> channel ID, learnt from answers (history wants the ID)

    @cached_property
    def client(self) -> Any:
        from slack_sdk import WebClient

        client = self._given_client
        if client is None:
            conn = self._connection
            assert conn is not None
            client = WebClient(
                token=conn.token, base_url=conn.base_url, timeout=conn.timeout, proxy=conn.proxy
            )
        client.retry_handlers = retry_handlers(max_retry_after=self.max_retry_after)
        return client

    def post(
        self, *, channel: str, message: Message, thread_ts: str | None = None, report_id: str | None = None
    ) -> Delivery:
        """Post ``message`` (in the thread of ``thread_ts`` if given) after slack_sdk's retries.

        A top-level message carries ``report_id`` (one is made up when none is
        given) in its metadata and a context line; after an ambiguous failure
        the channel history is searched for it before the message is posted again
        (see ``drillbook.notify.history``).
        """
        from slack_sdk.errors import SlackApiError, SlackClientError

        from drillbook.notify.history import AMBIGUOUS, find_report, with_marker

        kwargs: dict[str, Any] = {"channel": channel, "text": message.text, "blocks": message.blocks}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        else:
            report_id = report_id or f"msg-{uuid.uuid4().hex[:16]}"
            kwargs.update(with_marker(message, report_id))
        started = time.time()
        for attempt in range(1, MAX_RETRIES + 2):
            try:
                response = self.client.chat_postMessage(**kwargs)
                break
            except SlackApiError as exc:
                raise NotificationFailed(self._refusal(exc, channel)) from None
            except AMBIGUOUS as exc:
                what = f"{type(exc).__name__}: {exc}"
                if thread_ts or report_id is None:
                    raise NotificationFailed(
                        redact(
                            f"Slack did not answer chat.postMessage to {channel!r} ({what}); the thread "
                            "reply may or may not have been stored, so it is not posted again"
                        )
                    ) from None
                check = find_report(self, channel=channel, report_id=report_id, oldest=started)
                if check.ts is not None:
                    log.warning(
                        "Slack did not answer the post of report %s (%s) but stored it: found in %s's history, not posted again",
                        report_id,
                        redact(what),
                        channel,
                    )
                    return Delivery(
                        transport="slack",
                        channel=check.channel or channel,
                        ts=check.ts,
                        report_id=report_id,
                        how="found in history",
                    )
                if check.error is not None:
                    raise NotificationFailed(
                        redact(
                            f"Slack did not answer chat.postMessage to {channel!r} ({what}) and its history could not be searched for "
                            f"report {report_id} ({check.error}): not posted again, it could page twice; the next run checks the history "
                            "and re-sends it if it is not there"
                        )
                    ) from None
                log.warning(
                    "Slack did not answer the post of report %s (%s) and it is not in %s's history: posting again (%d/%d)",
                    report_id,
                    redact(what),
                    channel,
                    attempt,
                    MAX_RETRIES + 1,
                )
            except (SlackClientError, OSError) as exc:
                raise NotificationFailed(
                    redact(
                        f"Slack could not be reached for chat.postMessage to {channel!r} after retries: {type(exc).__name__}: {exc}"
                    )
                ) from None
        else:
            raise NotificationFailed(
                redact(
                    f"Slack did not answer chat.postMessage to {channel!r} in {MAX_RETRIES + 1} attempts and "
                    f"report {report_id} is not in its history; it is re-sent by the next run"
                )
            ) from None
        channel_id = str(response.get("channel") or channel)
        self._channel_ids[channel] = channel_id
        return Delivery(
            transport="slack",
            channel=channel_id,
            ts=str(response.get("ts")),
            thread_ts=thread_ts,
            report_id=report_id,
        )

    def _refusal(self, exc: Any, channel: str) -> str:
        """The redacted message of a SlackApiError from chat.postMessage (429 beyond the cap or retries, or a refusal)."""
        status = getattr(exc.response, "status_code", "?")
        error = exc.response.get("error") if exc.response is not None else None
        if status == 429:
            return redact(self._rate_limited(channel, exc))
        return redact(
            f"Slack refused chat.postMessage to {channel!r}: HTTP {status}, error {error!r}; check the token, "
            f"the channel name and that the bot is a member of the channel"
        )

    def _rate_limited(self, channel: str, exc: Any) -> str:
        wait = retry_after_of(getattr(exc.response, "headers", None) or {})
        return rate_limit_message(channel, retry_after=wait, max_retry_after=self.max_retry_after)


def rate_limit_message(channel: str, *, retry_after: float | None, max_retry_after: float) -> str:
    """Why a 429 ended the post: a wait beyond the cap (not slept on), or retries used up; never both at once."""
    head = f"Slack rate-limited chat.postMessage to {channel!r}: HTTP 429"
    tail = "; it is retried by the task's retry or the next run"
    if retry_after is not None and retry_after > max_retry_after:
        return (
            f"{head} with Retry-After {retry_after:g} s, more than drillbook waits (max_retry_after "
            f"{max_retry_after:g} s); the post failed fast instead of sleeping{tail}"
        )
    after = f" (last Retry-After {retry_after:g} s)" if retry_after is not None else " (no Retry-After given)"
    return f"{head} still, after {MAX_RETRIES} retries that waited as asked{after}{tail}"


def retry_after_of(headers: Any) -> float | None:
    """The Retry-After of a response's headers (any case; a list or a string value), or None."""
    for key in list(headers.keys()):
        if str(key).lower() == "retry-after":
            value = headers[key]
            value = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


def capped_rate_limit_handler(
    *, max_retry_count: int = MAX_RETRIES, max_retry_after: float = MAX_RETRY_AFTER
) -> Any:
    """slack_sdk's RateLimitErrorRetryHandler that refuses to wait longer than ``max_retry_after``.

    slack_sdk sleeps for whatever Retry-After says; a Retry-After of 3600 would
    hold the task (and the on-call page) for an hour. Beyond the cap the 429 is
    not retried, so ``chat_postMessage`` raises at once and ``SlackSender.post``
    turns it into ``NotificationFailed`` naming the Retry-After.
    """
    from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

    class CappedRateLimitErrorRetryHandler(RateLimitErrorRetryHandler):
        def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
            if not super()._can_retry(state=state, request=request, response=response, error=error):
                return False
            wait = retry_after_of(response.headers or {})
            if wait is not None and wait > max_retry_after:
                log.warning(
                    "Slack asked to retry after %s s, more than max_retry_after %s s: failing fast",
                    wait,
                    max_retry_after,
                )
                return False
            return True

    return CappedRateLimitErrorRetryHandler(max_retry_count=max_retry_count)


def retry_handlers(
    *,
    max_retry_after: float = MAX_RETRY_AFTER,
    server_errors: bool = True,
    connection_retries: int = MAX_RETRIES,
) -> list[Any]:
    """Rate limits (honour Retry-After up to ``max_retry_after``), server errors and connection errors, each retried a bounded number of times."""
    from urllib.error import URLError

    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    # Only URLError is retried blindly: urllib raises it when the request could not be sent (connection
    # refused, connect timeout). A reset or a timeout while waiting for the answer comes out unwrapped and
    # is ambiguous -- Slack may have stored the post -- so SlackSender.post searches the history first.
    handlers = [capped_rate_limit_handler(max_retry_count=MAX_RETRIES, max_retry_after=max_retry_after)]
    if server_errors:
        handlers.append(ServerErrorRetryHandler(max_retry_count=MAX_RETRIES))
    handlers.append(ConnectionErrorRetryHandler(max_retry_count=connection_retries, error_types=[URLError]))
    return handlers
