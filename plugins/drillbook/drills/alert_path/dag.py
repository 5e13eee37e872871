"""DAGs of ``alert_path`` drills: one mapped task per path, each with its own ledger row.

Rules this module enforces: the task is mapped over the drill's path names
(dynamic task mapping, fed by the unmapped ``plan_paths``, which also makes
Airflow show the catalogue's owner), so ``map_index`` tells the ledger rows of one run apart
and one dead path cannot hide behind a healthy one; connections are resolved
through the provider hooks at task time (``drillbook.airflow.runtime``) and a
missing one is a recorded ERROR result, not a task that dies without evidence;
a FAIL or ERROR verdict fails that mapped task after its evidence is written
and Slack is told.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drillbook.airflow.factory import drill_dag, drill_mapped_task, drill_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from drillbook.catalogue import Catalogue
    from drillbook.drills.alert_path.catalogue import AlertPathDrill
    from drillbook.resources.connections import Connection


class AirflowPathClients:
    """``PathClients`` through Airflow Connections (metadata DB, AIRFLOW_CONN_*, secrets backends)."""

    def slack(self, conn_id: str) -> Any:
        from drillbook.airflow.runtime import slack_client
        from drillbook.drills.alert_path.clients import ALERT_PATH_SLACK_RETRIES

        return slack_client(conn_id, **ALERT_PATH_SLACK_RETRIES)

    def aws(self, conn_id: str, service: str, region: str | None) -> Any:
        from drillbook.airflow.runtime import aws_client, get_connection
        from drillbook.errors import ConnectionNotConfigured
        from drillbook.safety.redact import register_secret

        try:
            register_secret((get_connection(conn_id).extra_dejson or {}).get("aws_secret_access_key"))
        except ConnectionNotConfigured:
            pass  # AwsBaseHook falls back to boto's default chain (instance role); no credentials -> CONNECTION_MISSING
        return aws_client(conn_id, service, region)

    def http(self, conn_id: str) -> Connection:
        from drillbook.airflow.runtime import get_connection
        from drillbook.resources.connections import Connection
        from drillbook.safety.redact import register_secret

        conn = get_connection(conn_id, conn_type="http")  # registers the password
        extra = conn.extra_dejson or {}
        for key in ("token", "api_key", "routing_key"):
            if isinstance(extra.get(key), str):
                register_secret(extra[key])
        return Connection(
            conn_id=conn_id,
            conn_type=conn.conn_type or "http",
            host=conn.host,
            port=conn.port,
            login=conn.login,
            password=conn.password,
            schema=conn.schema,
            extra=extra,
        )


def _doc(drill: AlertPathDrill) -> str:
    lines = [
        'Sends a labelled test alert ("drillbook test alert — no action needed") down each path, '
        "reads it back at the far end and measures the delivery latency. One mapped task per path.",
        "",
        "| path | type | objective | gives up after |",
        "|---|---|---|---|",
    ]
    from drillbook.catalogue.common import format_duration

    for p in drill.paths:
        lines.append(
            f"| `{p.name}` | {p.type} | {format_duration(drill.delivery_of(p))} | {format_duration(drill.give_up_of(p))} |"
        )
    lines += [
        "",
        "Findings: `ALERT_NOT_DELIVERED`, `ALERT_SLOW`, `ALERT_REJECTED`, `ALERT_SUPPRESSED`, `ALERT_UNROUTED` (FAIL); "
        "`ALERT_PATH_UNREACHABLE`, `ALERT_READBACK_FAILED` (ERROR); `ALERT_CLEANUP_FAILED` (low).",
    ]
    return "\n".join(lines)


def prove_path_now(drill: AlertPathDrill, path_name: str, *, run_url: str | None = None) -> Any:
    """Run one path with Airflow-resolved clients (task time); ``run_url`` is the canary's link to this run."""
    from drillbook.drills.alert_path import run_path

    return run_path(drill=drill, path_name=path_name, clients=AirflowPathClients(), run_url=run_url)


def build_dag(drill: AlertPathDrill, catalogue: Catalogue) -> DAG:
    """``dr_alert_path__<name>``: ``prove_path`` mapped over the path names (prove → evidence → Slack)."""
    from airflow.sdk import get_current_context

    def prove_path(path_name: str) -> dict[str, Any]:
        # a FAIL/ERROR verdict raises AirflowFailException (never retried); only a crash is retried
        from drillbook.airflow.runtime import report

        context = get_current_context()
        context["alert_path"] = path_name  # type: ignore[typeddict-unknown-key]  # names the map index in the UI
        try:
            run_url = context["ti"].log_url  # the canary's generatorURL / PagerDuty link
        except Exception:
            run_url = None
        result = prove_path_now(drill, path_name, run_url=run_url)
        summary = report(result, drill=drill, catalogue=catalogue, context=context)  # type: ignore[arg-type]
        return summary

    def plan_paths() -> list[list[str]]:
        # An unmapped task on purpose: Airflow derives a DAG's owner (UI, REST API) from its
        # unmapped tasks only, so a DAG of nothing but a mapped task showed owner "airflow".
        return [[p.name] for p in drill.paths]  # prove_path's arguments, one list per mapped instance

    with drill_dag(drill, catalogue, doc_md=_doc(drill)) as dag:
        planned = drill_task(plan_paths, "plan_paths", retries=0)
        drill_mapped_task(prove_path, "prove_path", planned, map_index_template="{{ alert_path }}")
    return dag
