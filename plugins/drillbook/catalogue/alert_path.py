"""Catalogue model of an ``alert_path`` drill: one entry per path to prove."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from drillbook.catalogue.common import ConnId, DrillBase, Duration, StrictModel


class PathBase(StrictModel):
    name: str
    delivery: Duration | None = None  # objective for this path; defaults to the drill's


class SlackPath(PathBase):
    type: Literal["slack"]
    channel: str  # channel id or name the canary is posted to and read back from
    connection: ConnId = "drillbook_slack"
    cleanup: Literal["delete", "mark", "keep"] = "mark"


class SnsSqsPath(PathBase):
    type: Literal["sns_sqs"]
    topic_arn: str
    queue_url: str
    connection: ConnId = "aws_default"
    region: str | None = None


class WebhookPath(PathBase):
    type: Literal["webhook"]
    connection: ConnId  # HTTP connection: host/schema/port/path, token in password or extras
    flavour: Literal["generic", "pagerduty", "opsgenie", "alertmanager"] = "generic"
    readback_url: str | None = None  # polled for the nonce; may reference the same connection's host
    resolve: bool = True  # close the canary afterwards where the API allows it


AlertPath = Annotated[SlackPath | SnsSqsPath | WebhookPath, Field(discriminator="type")]


class AlertObjectives(StrictModel):
    delivery: Duration = 60.0


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
