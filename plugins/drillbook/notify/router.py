"""Who is told about what: the routing rule of drillbook's Slack reports.

The rule:
- FAIL and ERROR go to the on-call channel (the drill's ``notify.channel`` or
  ``defaults.slack.oncall_channel``), with the mention (``notify.mention`` or
  ``defaults.slack.mention``) and the details as a thread reply; ERROR pages
  exactly like FAIL (principle 1);
- PASS and SKIPPED go nowhere by themselves: the digest counts them;
- a drill may change this with ``notify``: ``on`` may only ADD verdicts
  (PASS, SKIPPED) -- FAIL and ERROR are posted whatever ``on`` says (the
  catalogue refuses an ``on`` naming one without the other); only
  ``enabled: false`` silences the drill's own reports (the watchdog still
  pages about it and the digest still counts it); a mention is only ever
  added to FAIL and ERROR;
- watchdog incidents go to the on-call channel, digests to the digest channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from drillbook.result import DrillResult, Verdict

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue

PAGING = (Verdict.FAIL, Verdict.ERROR)


@dataclass(frozen=True)
class Route:
    channel: str
    mention: str | None = None
    thread_details: bool = True


def find_drill(catalogue: Catalogue, name: str):
    """The catalogue entry named ``name``, or None (a CLI run of a drill not in the catalogue)."""
    return next((d for d in catalogue.drills if d.name == name), None)


def route_result(result: DrillResult, *, catalogue: Catalogue) -> Route | None:
    """Where the report of ``result`` goes, or None when nobody is to be told."""
    slack = catalogue.defaults.slack
    drill = find_drill(catalogue, result.drill)
    spec = drill.notify if drill is not None else None
    if spec is not None and not spec.enabled:
        return None
    wanted = {v.value for v in PAGING} | set(spec.on if spec is not None else ())
    if result.verdict.value not in wanted:
        return None
    channel = (spec.channel if spec is not None else None) or slack.oncall_channel
    mention = None
    if result.verdict in PAGING:
        mention = (spec.mention if spec is not None else None) or slack.mention
    return Route(channel=channel, mention=mention, thread_details=True)


def route_incident(drill_name: str, *, catalogue: Catalogue) -> Route:
    """Watchdog incidents page like a failure: the drill's on-call channel and mention."""
    slack = catalogue.defaults.slack
    drill = find_drill(catalogue, drill_name)
    spec = drill.notify if drill is not None else None
    channel = (spec.channel if spec is not None else None) or slack.oncall_channel
    mention = (spec.mention if spec is not None else None) or slack.mention
    return Route(channel=channel, mention=mention, thread_details=False)


def route_task_failure(dag_id: str, *, catalogue: Catalogue) -> Route:
    """A crashed task of ``dr_<kind>__<drill>`` pages the drill's on-call channel."""
    name = dag_id.split("__", 1)[1] if "__" in dag_id else dag_id
    return route_incident(name, catalogue=catalogue)


def route_digest(*, catalogue: Catalogue) -> Route:
    return Route(channel=catalogue.defaults.slack.digest_channel, mention=None, thread_details=False)
