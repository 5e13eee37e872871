"""Deliver messages to Slack with the real slack_sdk WebClient, or fail loudly.

Rules this module enforces:
- the client is built lazily (``cached_property``) with retry handlers for
  rate limits (429, honouring Retry-After), server errors (500/503) and
  connection errors; passing ``retry_handlers`` replaces slack_sdk's defaults,
  so all three are listed here;
- when the retries are exhausted, or Slack refuses (``invalid_auth``,
  ``not_in_channel``...), ``post`` raises ``NotificationFailed`` whose message
  has been through ``redact``; the token is registered as a secret before the
  first request, so it never reaches a log line, a ledger row or a message;
- this module never imports airflow: the Airflow layer hands over a ready
  WebClient, the CLI reads ``AIRFLOW_CONN_DRILLBOOK_SLACK`` with
  ``connection_from_env`` (JSON or URI form).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from drillbook.errors import NotificationFailed
from drillbook.notify.blocks import Message
from drillbook.redact import redact, register_secret

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://slack.com/api/"
MAX_RETRIES = 2  # per kind of failure; with a 10 s timeout a dead Slack fails the task in well under a minute


@dataclass(frozen=True)
class SlackConnection:
    """The parts of a Slack connection drillbook uses (token is a secret: never log it)."""

    token: str
    base_url: str = DEFAULT_BASE_URL
    timeout: int = 10

    def __repr__(self) -> str:  # a stray log of the object must not print the token
        return f"SlackConnection(base_url={self.base_url!r}, timeout={self.timeout})"


@dataclass(frozen=True)
class Delivery:
    """Where a message went: ``transport`` is "slack" or "outbox"; ``ts`` identifies it for threads."""

    transport: str
    channel: str
    ts: str
    thread_ts: str | None = None
    delivered: bool = True


def env_var_of(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def connection_from_env(conn_id: str = "drillbook_slack", *, environ: dict[str, str] | None = None) -> SlackConnection | None:
    """Parse ``AIRFLOW_CONN_<ID>`` (JSON or URI) the way Airflow would; None when it is not set."""
    raw = (environ if environ is not None else os.environ).get(env_var_of(conn_id), "").strip()
    if not raw:
        return None
    extra: dict[str, Any]
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise NotificationFailed(f"{env_var_of(conn_id)} is not valid JSON ({exc.msg}); expected an Airflow connection") from None
        token = data.get("password") or ""
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra or "{}")
    else:
        parts = urlsplit(raw)
        token = unquote(parts.password or "")
        extra = dict(parse_qsl(parts.query))
        if "__extra__" in extra:
            extra = json.loads(extra["__extra__"])
    if not token:
        raise NotificationFailed(f"{env_var_of(conn_id)} has no password: put the Slack bot token in the connection's password")
    register_secret(token)
    base_url = str(extra.get("base_url") or DEFAULT_BASE_URL)
    if not base_url.endswith("/"):
        base_url += "/"  # slack_sdk joins method names onto it
    return SlackConnection(token=token, base_url=base_url, timeout=int(extra.get("timeout") or 10))


class SlackSender:
    """Post messages with chat.postMessage; raise NotificationFailed when Slack cannot be told."""

    transport = "slack"

    def __init__(self, *, client: Any = None, connection: SlackConnection | None = None):
        if client is None and connection is None:
            raise ValueError("SlackSender needs a WebClient or a SlackConnection")
        self._given_client = client
        self._connection = connection
        token = getattr(client, "token", None) if client is not None else connection.token  # type: ignore[union-attr]
        register_secret(token)

    @cached_property
    def client(self) -> Any:
        from slack_sdk import WebClient

        client = self._given_client
        if client is None:
            conn = self._connection
            assert conn is not None
            client = WebClient(token=conn.token, base_url=conn.base_url, timeout=conn.timeout)
        client.retry_handlers = retry_handlers()
        return client

    def post(self, *, channel: str, message: Message, thread_ts: str | None = None) -> Delivery:
        """Post ``message`` (in the thread of ``thread_ts`` if given) after slack_sdk's retries."""
        from slack_sdk.errors import SlackApiError, SlackClientError

        kwargs: dict[str, Any] = {"channel": channel, "text": message.text, "blocks": message.blocks}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        try:
            response = self.client.chat_postMessage(**kwargs)
        except SlackApiError as exc:
            status = getattr(exc.response, "status_code", "?")
            error = exc.response.get("error") if exc.response is not None else None
            raise NotificationFailed(
                redact(f"Slack refused chat.postMessage to {channel!r}: HTTP {status}, error {error!r}; check the token, "
                       f"the channel name and that the bot is a member of the channel")
            ) from None
        except (SlackClientError, OSError) as exc:
            raise NotificationFailed(
                redact(f"Slack could not be reached for chat.postMessage to {channel!r} after retries: {type(exc).__name__}: {exc}")
            ) from None
        return Delivery(transport="slack", channel=str(response.get("channel") or channel), ts=str(response.get("ts")), thread_ts=thread_ts)


def retry_handlers() -> list[Any]:
    """Rate limits (honour Retry-After), server errors and connection errors, each retried a bounded number of times."""
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    return [
        RateLimitErrorRetryHandler(max_retry_count=MAX_RETRIES),
        ServerErrorRetryHandler(max_retry_count=MAX_RETRIES),
        ConnectionErrorRetryHandler(max_retry_count=MAX_RETRIES),
    ]
