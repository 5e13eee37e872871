"""Where a webhook path sends, and with which headers: the target, built once, its secrets kept out of sight.

Rules this module enforces:
- every field of a ``WebhookTarget`` but ``shown`` (the URL with its secrets redacted) is secret
  and kept out of ``repr``; the full URL, the token and every secret header are registered with
  ``redact`` when the target is built;
- URLs are joined like Airflow's HttpHook (one slash between base and endpoint), and a connection
  without a schema is ``http`` (HttpHook's rule);
- a read-back carries the send headers minus ``Content-Type``.
It holds no I/O, so the send (``webhook_path``) and the resolve (``resolve``) both import it and
not each other.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from drillbook.drills.alert_path.catalogue import WebhookPath
from drillbook.errors import ConfigurationError
from drillbook.resources.connections import Connection
from drillbook.safety.redact import redact_url, register_secret

DEFAULT_BASE = {"pagerduty": "https://events.pagerduty.com", "opsgenie": "https://api.opsgenie.com"}
DEFAULT_ENDPOINT = {
    "pagerduty": "/v2/enqueue",
    "opsgenie": "/v2/alerts",
    "alertmanager": "/api/v2/alerts",
    "generic": "",
}
_SECRET_HEADER = re.compile(r"(?i)auth|token|key|secret|signature|session|cookie")
_TOKENISH = re.compile(r"^(?=.*\d)[A-Za-z0-9_\-]{16,}$")  # a path segment that looks like a token


@dataclass(frozen=True)
class WebhookTarget:
    """Where and how to send: built from a Connection; every field but ``shown`` is secret."""

    flavour: str
    url: str = field(repr=False)
    origin: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    readback_headers: dict[str, str] | None = field(default=None, repr=False)
    routing_key: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        return redact_url(self.url)


def join_url(base: str, endpoint: str) -> str:
    """Join like Airflow's HttpHook: one slash between base URL and endpoint."""
    if base and endpoint and not base.endswith("/") and not endpoint.startswith("/"):
        return f"{base}/{endpoint}"
    if base.endswith("/") and endpoint.startswith("/"):
        return base + endpoint[1:]
    return base + endpoint


def am_root(target: WebhookTarget) -> str:
    """Alertmanager's base URL (with its --web.route-prefix), where /metrics and /api/v2/* live."""
    return (
        target.url.removesuffix("/api/v2/alerts") if target.url.endswith("/api/v2/alerts") else target.origin
    )


def read_headers(target: WebhookTarget) -> dict[str, str]:
    """The send headers minus Content-Type: what a GET on the same API carries."""
    return {k: v for k, v in target.headers.items() if k != "Content-Type"}


def _secret_headers(raw: Any) -> dict[str, str]:
    headers = {str(k): str(v) for k, v in (raw or {}).items()} if isinstance(raw, dict) else {}
    for name, value in headers.items():
        if _SECRET_HEADER.search(name) or _TOKENISH.match(value):
            register_secret(value)
    return headers


def webhook_target(conn: Connection, *, path: WebhookPath) -> WebhookTarget:
    """Build the send target from an HTTP Connection (HttpHook's base-URL rules); register its secrets."""
    extra = conn.extra or {}
    host = conn.host or DEFAULT_BASE.get(path.flavour, "")
    if not host:
        raise ConfigurationError(
            f"webhook connection {conn.conn_id!r} has no host; set it to the endpoint's base URL"
        )
    base = host if "://" in host else f"{conn.schema or 'http'}://{host}"  # HttpHook: http when no schema
    if conn.port:
        base = f"{base}:{conn.port}"
    parts = urlsplit(base)
    endpoint = (
        path.endpoint
        or extra.get("endpoint")
        or ("" if parts.path.strip("/") else DEFAULT_ENDPOINT[path.flavour])
    )
    url = join_url(base, endpoint)
    # the URL itself may be the credential (token in the path, as Slack and many webhooks do)
    register_secret(url)
    for segment in urlsplit(url).path.split("/"):
        if _TOKENISH.match(segment):
            register_secret(segment)
    headers = {"Content-Type": "application/json", "User-Agent": "drillbook-alert-drill"}
    headers.update(_secret_headers(extra.get("headers")))
    secret = conn.password or extra.get("token") or extra.get("api_key") or extra.get("routing_key")
    register_secret(secret)
    routing_key = None
    if path.flavour == "pagerduty":
        routing_key = extra.get("routing_key") or conn.password
        if not routing_key:
            raise ConfigurationError(
                f"PagerDuty connection {conn.conn_id!r} has no routing key (password or extra 'routing_key')"
            )
    elif path.flavour == "opsgenie" and secret:
        headers["Authorization"] = f"GenieKey {secret}"
    elif conn.login and conn.password:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{conn.login}:{conn.password}".encode()).decode()
        )
    elif secret:
        headers["Authorization"] = f"Bearer {secret}"
    if "Authorization" in headers:
        register_secret(headers["Authorization"])
    readback_headers = _secret_headers(extra.get("readback_headers")) or None
    return WebhookTarget(
        flavour=path.flavour,
        url=url,
        origin=f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}",
        headers=headers,
        readback_headers=readback_headers,
        routing_key=routing_key,
    )
