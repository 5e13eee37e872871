"""Run an alert-path drill: one canary per path, one DrillResult (one ledger row) per path.

Rules this module enforces:
- every path gets its own result, so a dead webhook cannot hide behind a
  healthy Slack channel, and each ledger row carries that path's sent time,
  seen time, latency, attempts and HTTP status;
- clients come from a ``PathClients`` resolver (the CLI reads the environment,
  the Airflow task uses provider hooks); a connection that cannot be resolved
  is ``CONNECTION_MISSING`` (ERROR), never a silent skip;
- nothing here imports Airflow, and boto3/slack_sdk/httpx are imported only
  when a path of that type runs;
- a stop signal (SIGTERM/SIGINT: a deploy, an operator, Airflow killing the
  task) while a canary may be firing does not leave it firing: it raises
  ``Interrupted`` where the drill waits, the path's own ``finally`` resolves the
  canary (later signals are ignored meanwhile), and the result says
  ``DRILL_INTERRUPTED`` (ERROR) with the phase it stopped in. A signal that
  arrives while the resolve itself runs is held (``stop.signals_held``) until the
  resolve has finished, so a stop can never cut the resolve short.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from drillbook.drills.alert_path.canary import Canary
from drillbook.drills.alert_path.catalogue import AlertPathDrill, SlackPath, SnsSqsPath, WebhookPath
from drillbook.drills.alert_path.delivery import Delivery
from drillbook.drills.alert_path.stop import running
from drillbook.drills.backup_restore.lifetime import Interrupted, stop_on_signals
from drillbook.drills.base import ResultBuilder
from drillbook.errors import ConnectionNotConfigured, DrillAborted
from drillbook.resources.connections import Connection
from drillbook.result import DrillResult, Phase

log = logging.getLogger(__name__)

KIND = "alert_path"


class PathClients(Protocol):
    """Resolves a path's connection id into a ready client; raises ConnectionNotConfigured."""

    def slack(self, conn_id: str) -> Any: ...  # a slack_sdk WebClient

    def aws(self, conn_id: str, service: str, region: str | None) -> Any: ...  # a boto3 client

    def http(self, conn_id: str) -> Connection: ...  # host/port/schema/login/password/extra


def _destination(path: SlackPath | SnsSqsPath | WebhookPath) -> str:
    if isinstance(path, SlackPath):
        return f"slack {path.channel}"
    if isinstance(path, SnsSqsPath):
        return f"sns {path.topic_arn} -> sqs {path.queue_url}"
    return f"webhook ({path.flavour}) via connection {path.connection}"


def run_path(
    *,
    drill: AlertPathDrill,
    path_name: str,
    clients: PathClients,
    on_phase: Callable[[Phase], None] | None = None,
    run_url: str | None = None,
) -> DrillResult:
    """Prove one path of ``drill``: send its canary, read it back, tidy up, judge latency.

    ``run_url`` (the Airflow task log) becomes the canary's link back to this run.
    """
    path = drill.path(path_name)
    objective, give_up = drill.delivery_of(path), drill.give_up_of(path)
    builder = ResultBuilder(
        kind=KIND,
        drill=drill.name,
        target=path.name,
        controls=drill.controls,
        objectives={"delivery_seconds": objective, "give_up_seconds": give_up},
        on_phase=on_phase,
    )
    labels = path.labels if isinstance(path, WebhookPath) else None
    canary = Canary.new(drill=drill.name, path=path.name, labels=labels, run_url=run_url)
    delivery = Delivery(
        path=path.name,
        path_type=path.type,
        destination=_destination(path),
        objective=objective,
        give_up=give_up,
    )
    builder.details.update(path_type=path.type, nonce=canary.nonce, connection=path.connection)
    with stop_on_signals() as stop:
        running.stop = stop
        try:
            _prove(
                builder,
                path=path,
                canary=canary,
                delivery=delivery,
                clients=clients,
                interval=drill.poll_interval,
            )
        except DrillAborted:
            pass  # the reason is already a finding
        except Interrupted as exc:
            stop.defer()
            _interrupted(builder, exc.name)
        finally:
            stop.defer()  # a signal from here on is only noted: the result is being assembled
            running.stop = None
            delivery.record(builder)
        if stop.signum is not None and "interrupted_by" not in builder.details:
            _interrupted(
                builder, signal_name(stop.signum)
            )  # arrived after the path was proven, before the record
    result = builder.finish()
    log.info(
        "alert path %s/%s: %s %s latency=%s attempts=%s",
        drill.name,
        path.name,
        result.verdict.value,
        result.codes(),
        delivery.latency_seconds,
        delivery.attempts,
    )
    return result


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _interrupted(builder: ResultBuilder, name: str) -> None:
    """Say which phase a stop signal ended (the phase's own bookkeeping saw no Exception and called it ok)."""
    work = [p for p in builder.phases if p.name != "cleanup"]
    where = work[-1].name if work else "start"
    if work and work[-1].status == "ok":
        work[-1].status, work[-1].detail = "failed", f"interrupted by {name}"
    builder.find(
        "DRILL_INTERRUPTED",
        f"the drill was stopped by {name} during or after phase {where!r}; "
        "nothing after it was checked; the path's cleanup (resolve) ran before the drill stopped",
        subject=where,
    )
    builder.details["interrupted_by"] = name


def _prove(
    builder: ResultBuilder,
    *,
    path: SlackPath | SnsSqsPath | WebhookPath,
    canary: Canary,
    delivery: Delivery,
    clients: PathClients,
    interval: float,
) -> None:
    """Connect, send, read back and tidy up one path; a reason to stop is a finding plus ``DrillAborted``."""
    client: Any = None
    api: Connection | None = None
    conn_id = path.connection
    with builder.phase("connect") as ph:
        try:
            if isinstance(path, SlackPath):
                client = clients.slack(path.connection)
            elif isinstance(path, SnsSqsPath):
                client = (
                    clients.aws(path.connection, "sns", path.region),
                    clients.aws(path.connection, "sqs", path.region),
                )
            else:
                client = clients.http(path.connection)
                if path.api_connection:
                    conn_id = (
                        path.api_connection
                    )  # the REST API a PagerDuty/Opsgenie canary is confirmed with
                    api = clients.http(conn_id)
        except ConnectionNotConfigured as exc:
            builder.find(
                "CONNECTION_MISSING",
                str(exc),
                subject=path.name,
                detail={"connection": conn_id},
                hint=_connection_hint(path, conn_id),
            )
            ph.status, ph.detail = "failed", f"connection {conn_id!r} missing"
            raise DrillAborted("connect") from None
        ph.detail = f"{path.type} via {path.connection}"
    if isinstance(path, SlackPath):
        from drillbook.drills.alert_path.slack_path import prove_slack

        prove_slack(builder, client, path=path, canary=canary, delivery=delivery, interval=interval)
    elif isinstance(path, SnsSqsPath):
        from drillbook.drills.alert_path.sns_sqs_path import prove_sns_sqs

        prove_sns_sqs(builder, client[0], client[1], path=path, canary=canary, delivery=delivery)
    else:
        from drillbook.drills.alert_path.webhook_path import prove_webhook

        prove_webhook(
            builder, client, path=path, canary=canary, delivery=delivery, interval=interval, api=api
        )


def run_alert_path(
    *,
    drill: AlertPathDrill,
    clients: PathClients,
    on_phase: Callable[[Phase], None] | None = None,
    paths: list[str] | None = None,
) -> list[DrillResult]:
    """Prove every path of ``drill`` (or only ``paths``), one result each, in catalogue order."""
    names = paths if paths is not None else [p.name for p in drill.paths]
    return [run_path(drill=drill, path_name=name, clients=clients, on_phase=on_phase) for name in names]


def _connection_hint(path: Any, conn_id: str) -> str:
    """CONNECTION_MISSING's fix in the words of the path's own connection type (a webhook is not a database)."""
    from drillbook.resources.connections import how_to_define

    conn_type = "slack" if isinstance(path, SlackPath) else "aws" if isinstance(path, SnsSqsPath) else "http"
    return f"Define the {conn_type} connection {conn_id!r}: {how_to_define(conn_id, conn_type)}."
