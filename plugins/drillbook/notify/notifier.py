"""The Notifier: route a recorded result, render it, deliver it (Slack or the outbox).

Rules this module enforces (principle 3, evidence first, nothing lost):
- ``notify`` is called after the ledger row exists (``pipeline.record_and_report``);
  when Slack cannot be told it raises ``NotificationFailed`` (redacted), and
  the pipeline records ``NOTIFY_FAILED`` and fails the task;
- every report of a ledger record carries that record's report id
  (``drillbook.notify.history``); a retried task whose report was already
  re-sent, or is found in the channel history, does not post it again, and a
  retry that delivers a report whose earlier try failed writes
  ``NOTIFY_REDELIVERED`` so the watchdog does not re-send it too;
- the main message is what pages on-call; if only the thread reply with the
  details fails, the notification counts as delivered (re-running would post
  a duplicate page) and the failure is logged and returned;
- without a Slack connection every message goes to the outbox and the log,
  and, when a ledger is at hand, a ``notification`` row with
  ``NOTIFY_NOT_CONFIGURED`` records that nobody was told.

The ``notification`` row describes the delivery, not the drill. Like
``Ledger.record_notify_failure`` (the ``NOTIFY_FAILED`` row, verdict FAIL), it is
built with ``ResultBuilder`` so its verdict is derived, never copied: the drill's
verdict and codes go in ``details["reported_verdict"]`` / ``["reported_codes"]``.
An outbox-only delivery counts no check (nothing confirmed that anyone was
told), so the row's derived verdict is ERROR -- "could not verify that on-call
was told" -- and never a green PASS for a page that nobody saw.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from drillbook.notify.blocks import Message
from drillbook.notify.history import report_id_of
from drillbook.notify.outbox import OutboxSender
from drillbook.notify.render import (
    IncidentView,
    RenderOptions,
    Report,
    render_incident,
    render_result,
    render_task_failure,
)
from drillbook.notify.router import Route, route_digest, route_incident, route_result, route_task_failure
from drillbook.notify.slack import Delivery, SlackConnection, SlackSender, connection_from_env
from drillbook.safety.redact import redact

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.ledger.store import Ledger, LedgerRecord
    from drillbook.result import DrillResult
    from drillbook.run.context import RunContext

log = logging.getLogger(__name__)


class Sender(Protocol):
    transport: str

    def post(
        self, *, channel: str, message: Message, thread_ts: str | None = None, report_id: str | None = None
    ) -> Delivery: ...


@dataclass
class Outcome:
    """What ``Notifier.notify`` did: nothing (route None), or the deliveries it made."""

    route: Route | None
    main: Delivery | None = None
    thread: Delivery | None = None
    thread_error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.main is not None and self.main.delivered


class Notifier:
    """Implements ``drillbook.run.pipeline.Notifier`` for Slack and the local outbox."""

    def __init__(self, *, catalogue: Catalogue, sender: Sender, ledger: Ledger | None = None):
        self.catalogue = catalogue
        self.sender = sender
        self.ledger = ledger

    def options(self, route: Route | None = None) -> RenderOptions:
        d = self.catalogue.defaults
        return RenderOptions(
            max_findings=d.slack.max_findings,
            airflow_base_url=d.airflow_base_url,
            mention=route.mention if route else None,
        )

    @property
    def delivers(self) -> bool:
        """True when the sender reaches people (Slack), False for the outbox."""
        return getattr(self.sender, "transport", "slack") != "outbox"

    def channel_of(self, record: LedgerRecord) -> str:
        """Where the report of ``record`` goes (the on-call channel when routing says nobody)."""
        route = (
            route_result(record.drill_result(), catalogue=self.catalogue)
            if record.record_type == "drill"
            else None
        )
        return route.channel if route is not None else self.catalogue.defaults.slack.oncall_channel

    # -- drill results ---------------------------------------------------------------
    def notify(self, result: DrillResult, record: LedgerRecord | None, ctx: RunContext) -> Outcome:
        """Report ``result`` where the routing rule says; raise NotificationFailed when Slack cannot be told.

        A retried task (its record was already in the ledger: ``record.created``
        is False) may have been told before: when the watchdog re-sent the
        report, or Slack's history holds its report id, it is not posted again.
        """
        route = route_result(result, catalogue=self.catalogue)
        if route is None:
            log.info("%s of %s is not posted (routing: digest only)", result.verdict.value, result.drill)
            return Outcome(route=None)
        report_id = report_id_of(record) if record is not None else None
        retried = record is not None and not record.created and self.ledger is not None and self.delivers
        failures = 0
        if retried:
            assert record is not None
            done, failures = self._told_before(record, route, ctx, report_id=str(report_id))
            if done is not None:
                return done
        report = render_result(result, record, ctx, options=self.options(route))
        outcome = self.deliver(route, report, report_id=report_id, drill=result.drill)
        main = outcome.main
        assert main is not None
        if not main.delivered:
            self._record_not_delivered(result, ctx, channel=route.channel, record=record)
        elif retried and failures and record is not None and self.ledger is not None:
            self._record_late(
                record,
                ctx,
                channel=main.channel,
                ts=main.ts,
                how="was re-sent by a retry of its task",
                failures=failures,
            )
        return outcome

    def deliver(self, route: Route, report: Report, *, report_id: str | None, drill: str) -> Outcome:
        """Post the main message, then its details as a thread reply (a failed reply is logged, not raised)."""
        main = self.sender.post(channel=route.channel, message=report.main, report_id=report_id)
        outcome = Outcome(route=route, main=main)
        if route.thread_details and report.thread is not None and report.thread.blocks:
            try:
                outcome.thread = self.sender.post(
                    channel=main.channel, message=report.thread, thread_ts=main.ts
                )
            except Exception as exc:
                outcome.thread_error = redact(f"{type(exc).__name__}: {exc}")
                log.warning(
                    "the report of %s was posted but its details thread failed: %s",
                    drill,
                    outcome.thread_error,
                )
        return outcome

    def _told_before(
        self, record: LedgerRecord, route: Route, ctx: RunContext, *, report_id: str
    ) -> tuple[Outcome | None, int]:
        """(an Outcome when this record's report already reached Slack, failed deliveries so far)."""
        from drillbook.notify.history import find_report
        from drillbook.notify.owed import delivered_or_failed

        assert self.ledger is not None
        delivered, failures = delivered_or_failed(self.ledger, record)
        if delivered:
            log.info("the report of ledger #%s was already re-sent: not posting it again", record.seq)
            return Outcome(
                route=route,
                main=Delivery(
                    transport="slack",
                    channel=route.channel,
                    ts="",
                    report_id=report_id,
                    how="already re-sent",
                ),
            ), failures
        if not hasattr(self.sender, "client"):
            return None, failures
        check = find_report(
            self.sender, channel=route.channel, report_id=report_id, oldest=record.recorded_at.timestamp()
        )
        if check.ts is None:
            return None, failures
        log.info(
            "the report of ledger #%s is already in %s (ts %s): not posting it again",
            record.seq,
            route.channel,
            check.ts,
        )
        if failures:
            self._record_late(
                record,
                ctx,
                channel=check.channel or route.channel,
                ts=check.ts,
                how="was found already stored",
                failures=failures,
            )
        return Outcome(
            route=route,
            main=Delivery(
                transport="slack",
                channel=check.channel or route.channel,
                ts=check.ts,
                report_id=report_id,
                how="found in history",
            ),
        ), failures

    def _record_late(
        self, record: LedgerRecord, ctx: RunContext, *, channel: str, ts: str, how: str, failures: int
    ) -> None:
        from drillbook.notify.owed import redelivered_row

        assert self.ledger is not None
        row = redelivered_row(
            [record],
            channel=channel,
            ts=ts,
            how=how,
            attempts=failures,
            kind=record.kind,
            drill=record.drill,
            what=f"the {record.verdict} report of {record.drill!r}",
        )
        self.ledger.record_event("notification", row, ctx)

    def _record_not_delivered(
        self, result: DrillResult, ctx: RunContext, *, channel: str, record: LedgerRecord | None = None
    ) -> None:
        """Write the ``notification`` row saying the report went to the outbox only."""
        if self.ledger is None:
            return
        row = not_delivered_row(result, channel=channel, sender=self.sender)
        if record is not None:  # names the record it reports, so the re-send finds it without a search
            row.details["report_of"] = {"seq": record.seq, "hash": record.hash}
        self.ledger.record_event("notification", row, ctx)

    # -- watchdog, digest, crashed tasks ----------------------------------------------
    def notify_incident(self, incident: IncidentView) -> Delivery:
        route = route_incident(incident.drill, catalogue=self.catalogue)
        return self.sender.post(
            channel=route.channel, message=render_incident(incident, options=self.options(route))
        )

    def post_digest(self, message: Message) -> Delivery:
        return self.sender.post(channel=route_digest(catalogue=self.catalogue).channel, message=message)

    def notify_task_failure(self, *, dag_id: str, **details: Any) -> Delivery:
        route = route_task_failure(dag_id, catalogue=self.catalogue)
        return self.sender.post(
            channel=route.channel,
            message=render_task_failure(dag_id=dag_id, options=self.options(route), **details),
        )


def not_delivered_row(
    result: DrillResult, *, channel: str, sender: Any, what: str | None = None
) -> DrillResult:
    """The ``notification`` row of a report that went to the outbox only (verdict derived: ERROR, see the docstring)."""
    from drillbook.drills.base import ResultBuilder

    where = getattr(sender, "path", "the outbox")
    what = what or f"the {result.verdict.value} report of {result.drill!r}"
    builder = ResultBuilder(
        kind=result.kind, drill=result.drill, target=result.target, controls=list(result.controls)
    )
    # no builder.checked(): no delivery to anyone was confirmed, so nothing was verified
    builder.find(
        "NOTIFY_NOT_CONFIGURED",
        f"{what} for {channel} was written to {where}; nobody was told",
        subject=channel,
        detail={
            "transport": getattr(sender, "transport", "outbox"),
            "channel": channel,
            "drill_verdict": result.verdict.value,
        },
    )
    builder.details["reported_verdict"] = result.verdict.value
    builder.details["reported_codes"] = result.codes()
    builder.details["notification"] = {
        "delivered": False,
        "transport": getattr(sender, "transport", "outbox"),
        "channel": channel,
    }
    return builder.finish(nothing_checked=False)  # ERROR; the finding is the reason


def notifier_from_env(
    catalogue: Catalogue, *, outbox: str | os.PathLike[str], ledger: Ledger | None = None
) -> Notifier:
    """Slack when ``DRILLBOOK_CONN_`` / ``AIRFLOW_CONN_<slack connection>`` is set, else the outbox ``outbox``
    (the caller's setting DRILLBOOK_OUTBOX).

    The CLI goes through ``Resolver.notifier`` (environment backend); this is the same reading
    (``parse_slack_connection``) for callers that hold no resolver.
    """
    conn = connection_from_env(catalogue.defaults.slack.connection)
    sender: Sender = SlackSender(connection=conn) if conn is not None else OutboxSender(path=outbox)
    return Notifier(catalogue=catalogue, sender=sender, ledger=ledger)


def build_notifier(
    *,
    catalogue: Catalogue,
    drill: Any = None,
    client: Any = None,
    ledger: Ledger | None = None,
    outbox: str | os.PathLike[str],
    connection: SlackConnection | None = None,
) -> Notifier:
    """For the Airflow layer: Slack through a parsed Slack connection (or a ready WebClient), else the outbox.

    ``connection`` comes from ``parse_slack_connection`` (the parser the CLI uses),
    so its ``max_retry_after`` and other extras hold under Airflow too. ``drill`` is
    accepted for symmetry with the callers; routing reads the drill's ``notify``
    spec from the catalogue by the result's drill name. ``outbox`` is the entry point's setting DRILLBOOK_OUTBOX.
    """
    del drill
    sender: Sender
    if connection is not None:
        sender = SlackSender(connection=connection)
    elif client is not None:
        sender = SlackSender(client=client)
    else:
        sender = OutboxSender(path=outbox)
    return Notifier(catalogue=catalogue, sender=sender, ledger=ledger)
