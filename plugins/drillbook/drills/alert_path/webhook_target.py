"""Where a webhook path sends, and with which headers: the target, built once, its secrets kept out of sight.

Rule this module enforces: every field of a ``WebhookTarget`` but ``shown`` (the URL with its
secrets redacted) is secret and kept out of ``repr``; URLs are joined like Airflow's HttpHook (one
slash between base and endpoint); a read-back carries the send headers minus ``Content-Type``.
It holds no I/O, so the send (``webhook_path``) and the resolve (``resolve``) both import it and
not each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drillbook.safety.redact import redact_url


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
