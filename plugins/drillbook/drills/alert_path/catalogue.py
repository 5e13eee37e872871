"""Catalogue model of an ``alert_path`` drill: one entry per path to prove.

Rules: secrets never live here (tokens, routing keys and webhook URLs with a
secret path come from the Connection named by ``connection``); every path has a
delivery objective (its own or the drill's) and a give-up time that is at least
the objective, so a slow alert is told apart from a lost one. A paging path
names the far end that must see the canary: Alertmanager the ``receiver`` (and a
receiver-side ``readback_url``), PagerDuty the ``escalation_policy`` (read through
``api_connection``), Opsgenie the ``team``; an Alertmanager objective includes
the route's ``group_wait``, since no receiver is notified before it ends.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from drillbook.catalogue.common import ConnId, DrillBase, Duration, StrictModel


class PathBase(StrictModel):
    name: str
    delivery: Duration | None = None  # objective for this path; defaults to the drill's
    give_up: Duration | None = None  # stop looking after this long; defaults to the drill's

    @model_validator(mode="after")
    def _give_up_after_delivery(self) -> PathBase:
        if self.delivery is not None and self.give_up is not None and self.give_up < self.delivery:
            raise ValueError(f"give_up ({self.give_up}s) must be at least delivery ({self.delivery}s)")
        return self


class SlackPath(PathBase):
    type: Literal["slack"]
    channel: str  # channel id or name the canary is posted to and read back from
    connection: ConnId = "drillbook_slack"
    cleanup: Literal["delete", "mark", "keep"] = "mark"


class SnsSqsPath(PathBase):
    type: Literal["sns_sqs"]
    topic_arn: str
    queue_url: str  # a queue subscribed to the topic, used only by the drill (it deletes what it reads)
    connection: ConnId = "aws_default"
    region: str | None = None


PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")


class WebhookPath(PathBase):
    type: Literal["webhook"]
    connection: ConnId  # HTTP connection: host (or full URL) / schema / port, token in password or extras
    flavour: Literal["generic", "pagerduty", "opsgenie", "alertmanager"] = "generic"
    endpoint: str | None = None  # appended to the connection's base URL (Airflow HttpHook rules)
    # polled for the nonce; an absolute URL, or a path on the connection's host; ``{nonce}`` is substituted
    readback_url: str | None = None
    resolve: bool = True  # close the canary afterwards where the API allows it
    request_timeout: Duration = 10.0
    # canary labels (Alertmanager labels; ``severity`` is also PagerDuty's payload severity), merged over
    # the defaults so the route under test is the paging route: alertname=DrillbookTestAlert, severity=critical
    labels: dict[str, str] = Field(default_factory=dict)
    receiver: str | None = None  # alertmanager: the receiver that must be in the alert's ``receivers``
    group_wait: Duration = 30.0  # alertmanager: the route's group_wait (Alertmanager's default is 30s)
    api_connection: ConnId | None = (
        None  # pagerduty (required) / opsgenie (optional): the REST API to confirm with
    )
    escalation_policy: str | None = (
        None  # pagerduty: the escalation policy id the incident must be assigned to
    )
    service: str | None = (
        None  # pagerduty: service id, to name an ongoing maintenance window when nothing was created
    )
    team: str | None = None  # opsgenie: the team (id or name) that must be among the alert's teams/responders

    @model_validator(mode="after")
    def _far_end_named(self) -> WebhookPath:
        missing: list[str] = []
        if self.flavour == "alertmanager":
            missing = [k for k in ("receiver", "readback_url") if not getattr(self, k)]
            if self.delivery is not None and self.delivery < self.group_wait:
                raise ValueError(
                    f"path {self.name!r}: delivery ({self.delivery}s) is shorter than group_wait ({self.group_wait}s); "
                    "Alertmanager notifies no receiver before group_wait ends"
                )
        elif self.flavour == "pagerduty":
            missing = [k for k in ("api_connection", "escalation_policy") if not getattr(self, k)]
            if self.labels.get("severity", "critical") not in PAGERDUTY_SEVERITIES:
                raise ValueError(
                    f"path {self.name!r}: PagerDuty severity must be one of {list(PAGERDUTY_SEVERITIES)}, got {self.labels['severity']!r}"
                )
        elif self.flavour == "opsgenie":
            missing = [k for k in ("team",) if not getattr(self, k)]
        if missing:
            raise ValueError(
                f"path {self.name!r} ({self.flavour}) must name the far end that pages a person; missing: {missing} "
                "(see docs/alert_path.md)"
            )
        return self


AlertPath = Annotated[SlackPath | SnsSqsPath | WebhookPath, Field(discriminator="type")]


class AlertObjectives(StrictModel):
    delivery: Duration = 60.0
    give_up: Duration | None = None  # default: twice the delivery objective

    @model_validator(mode="after")
    def _give_up_after_delivery(self) -> AlertObjectives:
        if self.give_up is not None and self.give_up < self.delivery:
            raise ValueError(f"give_up ({self.give_up}s) must be at least delivery ({self.delivery}s)")
        return self


class AlertPathDrill(DrillBase):
    kind: Literal["alert_path"]
    paths: list[AlertPath]
    objectives: AlertObjectives = Field(default_factory=AlertObjectives)
    poll_interval: Duration = 1.0

    @model_validator(mode="after")
    def _paths(self) -> AlertPathDrill:
        if not self.paths:
            raise ValueError("an alert_path drill needs at least one path")
        names = [p.name for p in self.paths]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"path names must be unique within a drill; repeated: {dupes}")
        return self

    def path(self, name: str) -> SlackPath | SnsSqsPath | WebhookPath:
        for p in self.paths:
            if p.name == name:
                return p
        raise KeyError(f"drill {self.name!r} has no path {name!r}; paths: {[p.name for p in self.paths]}")

    def delivery_of(self, path: PathBase) -> float:
        """The delivery objective of ``path`` in seconds; by default an Alertmanager path's adds its group_wait."""
        if path.delivery is not None:
            return path.delivery
        if isinstance(path, WebhookPath) and path.flavour == "alertmanager":
            return self.objectives.delivery + path.group_wait
        return self.objectives.delivery

    def give_up_of(self, path: PathBase) -> float:
        """How long to keep looking for the canary on ``path``: never less than its objective."""
        delivery = self.delivery_of(path)
        give_up = path.give_up if path.give_up is not None else self.objectives.give_up
        return max(delivery, give_up if give_up is not None else 2 * delivery)
