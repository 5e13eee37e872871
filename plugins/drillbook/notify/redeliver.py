"""Re-send the reports that never reached Slack, each at most once (principle 3: nothing is lost).

Rules this module enforces (the state comes from ``drillbook.notify.owed``):
- nothing is re-sent through the outbox: without a Slack connection the
  reports stay owed, and the first run that has one (``dr_watchdog`` every
  hour, ``drillbook outbox flush``) sends them;
- FAIL and ERROR drill reports are re-sent one by one, oldest first, as the
  full report rendered from the ledger record with a *late delivery* line
  (when it was recorded, why it was not delivered, how many attempts); at most
  ``MAX_PAGES_PER_RUN`` per run, the rest in the next run, so the flood after
  a long outage is bounded;
- PASS / SKIPPED reports (posted only for drills whose ``notify.on`` asks for
  them) and digests are not re-sent one by one: they go in one summary
  message per channel (at most ``SUMMARY_LINES`` lines, then "and N more"),
  which delivers them all; the summary lists each report id, so a later
  search finds them in it;
- before a report is re-sent or summarised, the channel history is searched
  for its report id since the record was written (``drillbook.notify.history``): a post that
  Slack stored but never answered is found and counted as delivered, not
  posted again. When the history cannot be read because Slack is down, the
  report is not posted (it stays owed); when it cannot be read for good
  (a missing scope), it is posted -- a possible duplicate beats a lost page;
- every outcome is a ``notification`` row written right after the attempt:
  ``NOTIFY_REDELIVERED`` (verdict PASS: someone was told) naming every report
  it delivered, or ``NOTIFY_FAILED`` with ``details.redelivery`` (the report
  stays owed, the attempt is counted). The first failure stops the run's
  re-sends: Slack is down, the next run tries again;
- rows are keyed per report: task ``<task_id>.redeliver``, map_index = the
  reported record's seq, so one run writes at most one row per report.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from drillbook.notify.blocks import MAX_FALLBACK_TEXT, Message, clip, context, esc, fit, header, section
from drillbook.notify.history import find_report, find_reports, report_id_of
from drillbook.notify.owed import Owed, delivery_state, redelivered_row, resend_failed_row
from drillbook.safety.redact import redact

if TYPE_CHECKING:
    from drillbook.ledger.records import LedgerRecord
    from drillbook.ledger.store import Ledger
    from drillbook.notify.notifier import Notifier, Outcome
    from drillbook.run.context import RunContext

log = logging.getLogger(__name__)

MAX_PAGES_PER_RUN = 20  # FAIL/ERROR reports re-sent one by one per run; the rest wait for the next run
SUMMARY_LINES = 25  # lines of a summary message before "and N more"


@dataclass
class RedeliveryRun:
    """What one run did: seqs of the reports re-sent, found already in Slack, summarised; what is left."""

    owed: int = 0
    resent: list[int] = field(default_factory=list)
    found: list[int] = field(default_factory=list)
    summarised: list[int] = field(default_factory=list)
    unrouted: list[int] = field(
        default_factory=list
    )  # routing now says nobody is to be told (notify.enabled false)
    left: int = 0
    error: str | None = None

    @property
    def delivered(self) -> int:
        return len(self.resent) + len(self.found) + len(self.summarised)


def context_of(record: LedgerRecord) -> RunContext:
    """The run context of the task that wrote ``record`` (for the log link of a late report)."""
    from drillbook.run.context import RunContext

    return RunContext(
        dag_id=record.dag_id,
        run_id=record.run_id,
        task_id=record.task_id,
        map_index=record.map_index,
        try_number=record.try_number,
        trigger=record.trigger,
    )


def resend_context(ctx: RunContext, seq: int) -> RunContext:
    """The key of the row about one re-sent report: one per report per run attempt."""
    from drillbook.run.context import RunContext

    return RunContext(
        dag_id=ctx.dag_id,
        run_id=ctx.run_id,
        task_id=f"{ctx.task_id}.redeliver",
        map_index=seq,
        try_number=ctx.try_number,
        trigger=ctx.trigger,
    )


def late_banner(item: Owed, *, by: str) -> str:
    """The line that says a report is late, and why."""
    reasons = " / ".join(item.reasons) or "not delivered"
    return esc(
        f":hourglass: Late delivery by {by}: recorded {item.record.recorded_at:%Y-%m-%d %H:%M} UTC (ledger #{item.record.seq}) "
        f"and not delivered then ({reasons}, {item.attempts} failed attempt(s): {clip(item.last_error, 200)})"
    )


def with_banner(message: Message, banner: str) -> Message:
    """``message`` with the late-delivery line under its header and "[late]" in its fallback text."""
    blocks = list(message.blocks)
    blocks.insert(1 if blocks and blocks[0].get("type") == "header" else 0, context(banner))
    return Message(text=clip(f"[late] {message.text}", MAX_FALLBACK_TEXT), blocks=fit(blocks))


def resend_report(notifier: Notifier, item: Owed, *, by: str) -> Outcome | None:
    """Re-send one FAIL/ERROR report (history checked first); None when routing now says nobody is told."""
    from drillbook.errors import NotificationFailed
    from drillbook.notify.notifier import Outcome
    from drillbook.notify.render import render_result
    from drillbook.notify.router import route_result
    from drillbook.notify.slack import Delivery

    result = item.record.drill_result()
    route = route_result(result, catalogue=notifier.catalogue)
    if route is None:
        return None
    report_id = report_id_of(item.record)
    if hasattr(notifier.sender, "client"):  # Slack: look before posting again
        check = find_report(
            notifier.sender,
            channel=route.channel,
            report_id=report_id,
            oldest=item.record.recorded_at.timestamp(),
        )
        if check.ts is not None:
            return Outcome(
                route=route,
                main=Delivery(
                    transport="slack",
                    channel=check.channel or route.channel,
                    ts=check.ts,
                    report_id=report_id,
                    how="found in history",
                ),
            )
        if check.error is not None and check.transient:
            raise NotificationFailed(
                f"could not search {route.channel}'s history for report {report_id} before re-sending it: {check.error}"
            )
        if check.error is not None:
            log.warning(
                "cannot search %s's history for report %s (%s): re-sending it, which may duplicate it",
                route.channel,
                report_id,
                check.error,
            )
    report = render_result(result, item.record, context_of(item.record), options=notifier.options(route))
    report.main = with_banner(report.main, late_banner(item, by=by))
    return notifier.deliver(route, report, report_id=report_id, drill=result.drill)


def summary_message(items: list[Owed], *, by: str) -> Message:
    """One message for many quiet reports (PASS, SKIPPED, digests) that were never delivered."""
    lines = []
    for item in items[:SUMMARY_LINES]:
        r = item.record
        what = (
            f"{r.record_type} scorecard {r.drill}"
            if r.record_type == "digest"
            else f"{r.verdict} {r.drill} ({r.kind})"
        )
        lines.append(
            esc(
                f"• {what} · recorded {r.recorded_at:%Y-%m-%d %H:%M} UTC · ledger #{r.seq} · report {report_id_of(r)}"
            )
        )
    more = len(items) - SUMMARY_LINES
    if more > 0:
        lines.append(
            esc(
                f"… and {more} more: drillbook evidence list --since {items[SUMMARY_LINES].record.recorded_at:%Y-%m-%d}"
            )
        )
    title = f":hourglass: {len(items)} report{'s' if len(items) != 1 else ''} not delivered at the time"
    lead = esc(
        f"These reports were recorded as evidence but never reached Slack (no Slack connection, or Slack failed). "
        f"None of them is a FAIL or ERROR. Sent by {by}; details: drillbook evidence show <seq>."
    )
    body = "\n".join(lines)
    blocks = [header(title), section(lead), section(clip(body, 2900))]
    return Message(
        text=clip(
            f"{len(items)} reports not delivered at the time (PASS, SKIPPED, digests)", MAX_FALLBACK_TEXT
        ),
        blocks=fit(blocks),
    )


def redeliver(
    ledger: Ledger,
    notifier: Notifier,
    *,
    ctx: RunContext,
    limit: int = MAX_PAGES_PER_RUN,
    now: datetime | None = None,
) -> RedeliveryRun:
    """Re-send what is owed (see the module docstring); never raises for a Slack failure, it records it."""
    from drillbook.notify.router import route_digest, route_result

    del now  # the ledger's own clock dates every row; kept for symmetry with run_watchdog
    owed = delivery_state(ledger).owed
    run = RedeliveryRun(owed=len(owed))
    if not notifier.delivers:
        run.left = len(owed)
        return run
    by = ctx.dag_id
    pages = [o for o in owed if o.pages]
    for item in pages[:limit]:
        rec = item.record
        try:
            outcome = resend_report(notifier, item, by=by)
        except Exception as exc:
            run.error = redact(f"{type(exc).__name__}: {exc}")
            ledger.record_event(
                "notification",
                resend_failed_row(rec, channel=notifier.channel_of(rec), error=run.error),
                resend_context(ctx, rec.seq),
            )
            log.warning(
                "re-sending the %s report of %s (ledger #%s) failed: %s",
                rec.verdict,
                rec.drill,
                rec.seq,
                run.error,
            )
            break
        if outcome is None or outcome.main is None:
            run.unrouted.append(rec.seq)
            continue
        main = outcome.main
        (run.found if main.how == "found in history" else run.resent).append(rec.seq)
        ledger.record_event(
            "notification",
            redelivered_row(
                [rec],
                channel=main.channel,
                ts=main.ts,
                how=_how(main.how),
                attempts=item.attempts,
                kind=rec.kind,
                drill=rec.drill,
                what=f"the {rec.verdict} report of {rec.drill!r}",
            ),
            resend_context(ctx, rec.seq),
        )
    if run.error is None:
        groups: dict[str, list[Owed]] = {}
        for item in (o for o in owed if not o.pages):
            if item.record.record_type == "digest":
                channel = route_digest(catalogue=notifier.catalogue).channel
            else:
                route = route_result(item.record.drill_result(), catalogue=notifier.catalogue)
                if route is None:
                    run.unrouted.append(item.record.seq)
                    continue
                channel = route.channel
            groups.setdefault(channel, []).append(item)
        for channel, items in groups.items():
            if not _summarise(ledger, notifier, run, channel=channel, items=items, ctx=ctx):
                break
    run.left = run.owed - run.delivered - len(run.unrouted)
    return run


def _summarise(
    ledger: Ledger,
    notifier: Notifier,
    run: RedeliveryRun,
    *,
    channel: str,
    items: list[Owed],
    ctx: RunContext,
) -> bool:
    """Post one summary of ``items`` to ``channel``, after taking out those the history shows already there."""
    if hasattr(notifier.sender, "client"):
        oldest = min(i.record.recorded_at for i in items).timestamp()
        check = find_reports(
            notifier.sender, channel=channel, report_ids={i.report_id for i in items}, oldest=oldest
        )
        if check.error is not None and check.transient:
            run.error = f"could not search {channel}'s history before sending the summary: {check.error}"
            return False
        for item in [i for i in items if i.report_id in check.found]:
            rec, ts = item.record, check.found[item.report_id]
            run.found.append(rec.seq)
            ledger.record_event(
                "notification",
                redelivered_row(
                    [rec],
                    channel=check.channel or channel,
                    ts=ts,
                    how=_how("found in history"),
                    attempts=item.attempts,
                    kind=rec.kind,
                    drill=rec.drill,
                    what=f"the {rec.verdict} {rec.record_type} report of {rec.drill!r}",
                ),
                resend_context(ctx, rec.seq),
            )
        items = [i for i in items if i.report_id not in check.found]
        if not items:
            return True
    records = [i.record for i in items]
    digest = hashlib.sha256(",".join(str(r.seq) for r in records).encode()).hexdigest()[:12]
    try:
        main = notifier.sender.post(
            channel=channel, message=summary_message(items, by=ctx.dag_id), report_id=f"sum-{digest}"
        )
    except Exception as exc:
        run.error = redact(f"{type(exc).__name__}: {exc}")
        ledger.record_event(
            "notification",
            resend_failed_row(records[0], channel=channel, error=run.error, also=records[1:]),
            resend_context(ctx, records[0].seq),
        )
        return False
    run.summarised += [r.seq for r in records]
    ledger.record_event(
        "notification",
        redelivered_row(
            records,
            channel=main.channel,
            ts=main.ts,
            how="summarised",
            attempts=max(i.attempts for i in items),
            kind="notify",
            drill="redelivery",
            what=f"{len(records)} PASS/SKIPPED/digest report(s)",
        ),
        resend_context(ctx, records[0].seq),
    )
    return True


def _how(how: str) -> str:
    return "was found already stored" if how == "found in history" else "was re-sent"
