"""The canary: a labelled test alert carrying a unique nonce, in each path's wire format.

Rules this module enforces:
- every canary says what it is (``LABEL``) so nobody acts on it, and carries a
  fresh random nonce so the read-back can only be satisfied by *this* alert,
  never by an older canary or a real alert;
- a payload holds the label, the drill, the path and the nonce — nothing from
  the connection (tokens and routing keys are added by the sender, never kept
  in the canary or the evidence);
- a paging canary carries labels that select the paging route (default
  ``severity: critical``; the catalogue's ``labels`` override them) and links to
  the run that sent it (``generatorURL``: the Airflow task log, else a
  ``drillbook:`` URN naming drill, path and nonce).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

LABEL = "drillbook test alert — no action needed"
#: SNS subjects must be ASCII; the same words without the em dash.
ASCII_LABEL = "drillbook test alert - no action needed"
#: Every canary carries this marker, so another run's canary on a shared path is recognised (and left alone).
MARKER = "drillbook-canary"
SOURCE = "drillbook"
#: Labels that select a paging route in a typical Alertmanager setup (``severity: none`` often does not).
DEFAULT_LABELS = {"alertname": "DrillbookTestAlert", "severity": "critical"}


@dataclass(frozen=True)
class Canary:
    """One test alert for one path of one drill run."""

    drill: str
    path: str
    nonce: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    labels: dict[str, str] = field(default_factory=dict)  # the catalogue's, over DEFAULT_LABELS
    run_url: str | None = None  # the Airflow task log of the run that sent it

    @classmethod
    def new(
        cls, *, drill: str, path: str, labels: dict[str, str] | None = None, run_url: str | None = None
    ) -> Canary:
        """A canary with a fresh 64-bit random nonce."""
        return cls(
            drill=drill,
            path=path,
            nonce=f"{MARKER}-{secrets.token_hex(8)}",
            labels=dict(labels or {}),
            run_url=run_url,
        )

    @property
    def link(self) -> str:
        """Where the canary came from: the run's log under Airflow, else a URN a person can search for."""
        return self.run_url or f"urn:drillbook:alert_path:{self.drill}:{self.path}:{self.nonce}"

    @property
    def severity(self) -> str:
        return self.labels.get("severity", DEFAULT_LABELS["severity"])

    # -- human text ------------------------------------------------------------------
    @property
    def summary(self) -> str:
        return f"[{LABEL}] drill {self.drill} / path {self.path}"

    @property
    def text(self) -> str:
        """One line for chat paths: label first, nonce last (what the read-back looks for)."""
        return f"{self.summary} · nonce {self.nonce}"

    def verified_text(self, *, latency: float | None) -> str:
        """The text a Slack canary is updated to once it has been seen ("mark" cleanup)."""
        took = f" in {latency:.1f}s" if latency is not None else ""
        return f"[{LABEL} · verified by drillbook{took}] drill {self.drill} / path {self.path} · nonce {self.nonce}"

    def found_in(self, text: str | None) -> bool:
        return bool(text) and self.nonce in text  # type: ignore[operator]

    # -- machine payloads ------------------------------------------------------------
    def details(self) -> dict[str, str]:
        return {
            "label": LABEL,
            "drill": self.drill,
            "path": self.path,
            "nonce": self.nonce,
            "sent_at": self.created_at.isoformat(),
            "run": self.link,
        }

    def generic_payload(self) -> dict[str, Any]:
        """A plain JSON body for generic webhooks."""
        return {"text": self.text, "source": SOURCE, "test": True, **self.details()}

    def sns_message(self) -> str:
        """The SNS message body: JSON, so subscribers that parse alerts can tell it is a test."""
        return json.dumps(self.generic_payload(), ensure_ascii=False)

    def pagerduty_event(self, *, routing_key: str, action: str = "trigger") -> dict[str, Any]:
        """A PagerDuty Events API v2 event; the nonce is the dedup_key, so resolve closes this canary."""
        event: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": self.nonce}
        if action == "trigger":
            event["links"] = [{"href": self.link, "text": "drillbook run"}] if self.run_url else []
            event["payload"] = {
                "summary": self.summary,
                "source": SOURCE,
                "severity": self.severity,
                "component": self.path,
                "group": "drillbook",
                "class": "test alert",
                "custom_details": self.details(),
            }
        return event

    def opsgenie_alert(self) -> dict[str, Any]:
        """An Opsgenie create-alert body; the nonce is the alias, so close-by-alias closes this canary."""
        return {
            "message": self.summary[:130],
            "alias": self.nonce,
            "description": self.text,
            "source": SOURCE,
            "priority": self.labels.get("priority", "P3"),  # P5 is informational and pages nobody
            "tags": ["drillbook", "test-alert"],
            "details": self.details(),
        }

    def opsgenie_close(self) -> dict[str, Any]:
        return {"source": SOURCE, "note": "drillbook test alert verified; closed automatically"}

    def alertmanager_alerts(
        self, *, ends_at: datetime | None = None, starts_at: datetime | None = None
    ) -> list[dict[str, Any]]:
        """An Alertmanager /api/v2/alerts body; sending it again with endsAt=now resolves it.

        ``startsAt`` must be the send time: Alertmanager flushes a new group at once, skipping
        ``group_wait``, when startsAt + group_wait is already past.
        """
        alert: dict[str, Any] = {
            "labels": {
                **DEFAULT_LABELS,
                **self.labels,
                "drillbook_drill": self.drill,
                "drillbook_path": self.path,
                "drillbook_nonce": self.nonce,
            },
            "annotations": {"summary": self.summary, "description": LABEL},
            "startsAt": (starts_at or self.created_at).isoformat(),
            "generatorURL": self.link,
        }
        if ends_at is not None:
            alert["endsAt"] = ends_at.isoformat()
        return [alert]
