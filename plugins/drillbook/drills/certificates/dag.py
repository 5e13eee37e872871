"""DAGs of ``certificates`` drills: fan out per source group, one ledger row per certificate, one Slack summary.

Rules this module enforces:
- the DAG has one task per source group: ``check_endpoints`` (mapped over
  batches of ``BATCH`` endpoints, so the UI shows "endpoints 1-50 of 300" and a
  batch probes its endpoints concurrently), ``check_files`` and ``check_acm``;
- every endpoint, file certificate and ACM certificate gets its own ledger row.
  Several rows come from one task instance, so each row's key is made distinct
  with a task-id suffix naming the item: (dag_id, run_id,
  ``check_endpoints.<host:port>``, map_index = batch). A retried task re-records
  the same keys, which the ledger ignores (idempotent);
- the check tasks succeed when the drill found problems: their evidence is
  written, and ``summarize`` (trigger rule ``all_done``) records the summary
  row, sends the one Slack message (soonest expiries and every failure) and
  then fails the run when anything is FAIL or ERROR. A group whose task crashed
  appears in the summary as ``DRILL_CRASHED``, never as a silent gap.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from drillbook.airflow.factory import drill_dag, drill_mapped_task, drill_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from drillbook.catalogue import Catalogue
    from drillbook.drills.certificates.catalogue import CertificatesDrill
    from drillbook.result import DrillResult

log = logging.getLogger(__name__)

BATCH = 50  # endpoints per mapped task instance: concurrency inside, a readable list of instances outside


def batches(drill: CertificatesDrill, size: int | None = None) -> list[list[int]]:
    """Endpoint indices in batches of ``size`` (default ``BATCH``; what ``check_endpoints`` is mapped over)."""
    size = size or BATCH
    indices = list(range(len(drill.endpoints)))
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _doc(drill: CertificatesDrill) -> str:
    from drillbook.catalogue.common import format_duration

    th = drill.thresholds
    lines = [
        "Checks every certificate of the drill and records one evidence row per endpoint, file certificate "
        "and ACM certificate, then posts one Slack summary (soonest expiries and every failure).",
        "",
        f"* **Endpoints:** {len(drill.endpoints)} (timeout {format_duration(drill.timeout)}, "
        f"{drill.concurrency} concurrent, batches of {BATCH})",
        f"* **Files:** {', '.join(f'`{f}`' for f in drill.files) or 'none'}",
        f"* **ACM:** {drill.acm.region if drill.acm else 'none'}",
        f"* **Thresholds:** warn {format_duration(th.warn)}, critical {format_duration(th.critical)}, "
        f"capped at {th.lifetime_fraction:.2f} of each certificate's lifetime",
        "",
        "Findings: `CERT_EXPIRED`, `CERT_EXPIRING`, `CERT_NOT_YET_VALID`, `CHAIN_UNTRUSTED`, `CERT_SELF_SIGNED`, "
        "`HOSTNAME_MISMATCH`, `CHAIN_INCOMPLETE`, `CHAIN_EXPIRES_FIRST`, `WEAK_KEY`, `WEAK_SIGNATURE`, `TLS_OUTDATED`, "
        "`ACM_RENEWAL_INELIGIBLE`; ERROR: `ENDPOINT_UNREACHABLE`, `TLS_HANDSHAKE_FAILED`, `CERT_UNREADABLE`, `ACM_UNAVAILABLE`.",
    ]
    return "\n".join(lines)


def record_items(
    results: list[DrillResult], *, catalogue: Catalogue, context: Any, group: str
) -> list[dict[str, Any]]:
    """Write one ledger row per result (task-id suffix per item), return the compact rows for the summary."""
    from drillbook.airflow.runtime import ledger_for, run_context
    from drillbook.drills.certificates.drill import compact, task_suffix

    ledger = ledger_for(catalogue)
    rows = []
    for result in results:
        ctx = run_context(context, task_suffix=f".{task_suffix(result.target)}")
        record = ledger.record(result, ctx)
        row = compact(result)
        row["ledger_seq"] = getattr(record, "seq", None)
        row["group"] = group
        rows.append(row)
    return rows


def acm_client_factory(spec: Any) -> Any:
    """A boto3 ACM client through the drill's AWS connection (AwsBaseHook; honours endpoint_url)."""
    from drillbook.airflow.runtime import aws_client, get_connection

    get_connection(
        spec.connection
    )  # a clear CONNECTION_MISSING instead of boto's default-credential fallback
    return aws_client(spec.connection, "acm", spec.region)


def build_dag(drill: CertificatesDrill, catalogue: Catalogue) -> DAG:
    """``dr_certificates__<name>``: check_endpoints (mapped) / check_files / check_acm -> summarize."""
    from airflow.sdk import get_current_context

    groups: dict[str, Any] = {}
    with drill_dag(drill, catalogue, doc_md=_doc(drill)) as dag:
        if drill.endpoints:
            total = len(drill.endpoints)

            def check_endpoints(batch: list[int]) -> list[dict[str, Any]]:
                from drillbook.drills.certificates import check_endpoints as probe_and_judge

                context = get_current_context()
                context["cert_batch"] = f"endpoints {batch[0] + 1}-{batch[-1] + 1} of {total}"  # type: ignore[typeddict-unknown-key]
                results = probe_and_judge(
                    drill, endpoints=[drill.endpoints[i] for i in batch], base_dir=catalogue.base_dir
                )
                return record_items(results, catalogue=catalogue, context=context, group="endpoints")

            groups["endpoints"] = drill_mapped_task(
                check_endpoints,
                "check_endpoints",
                [[batch] for batch in batches(drill)],
                map_index_template="{{ cert_batch }}",
            )

        if drill.files:

            def check_files() -> list[dict[str, Any]]:
                from drillbook.drills.certificates import check_files as read_and_judge

                results = read_and_judge(drill, base_dir=catalogue.base_dir)
                return record_items(
                    results, catalogue=catalogue, context=get_current_context(), group="files"
                )

            groups["files"] = drill_task(check_files, "check_files")

        if drill.acm is not None:

            def check_acm() -> list[dict[str, Any]]:
                from drillbook.drills.certificates import check_acm as describe_and_judge

                results = describe_and_judge(drill, client_factory=acm_client_factory)
                return record_items(results, catalogue=catalogue, context=get_current_context(), group="acm")

            groups["acm"] = drill_task(check_acm, "check_acm")

        configured = list(groups)

        def summarize(endpoints: Any = None, files: Any = None, acm: Any = None) -> dict[str, Any]:
            # explicit parameters: a **kwargs signature would also receive Airflow's context variables
            from drillbook.airflow.runtime import report
            from drillbook.drills.certificates import summarize as summarize_rows

            given = {"endpoints": endpoints, "files": files, "acm": acm}
            outputs = {group: given[group] for group in configured}
            rows, missing = collect(outputs, expected_endpoints=len(drill.endpoints))
            summary = summarize_rows(rows, drill=drill, missing_groups=missing)
            reported = report(summary, drill=drill, catalogue=catalogue, context=get_current_context())  # type: ignore[arg-type]
            return reported

        drill_task(summarize, "summarize", trigger_rule="all_done", op_kwargs=groups)
    return dag


def collect(outputs: dict[str, Any], *, expected_endpoints: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Flatten the groups' rows; name every group (or endpoint batch) that produced none."""
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    for group, value in outputs.items():
        if value is None:
            missing.append(group)
            continue
        if group == "endpoints":
            got = 0
            try:
                for batch in value:  # a lazy sequence over the mapped instances
                    if batch:
                        rows += batch
                        got += len(batch)
            except Exception as exc:  # a failed mapped instance has no XCom; count what arrived
                log.warning("some endpoint batches returned nothing: %s", exc)
            if got < expected_endpoints:
                missing.append(
                    f"endpoints ({expected_endpoints - got} of {expected_endpoints} without a result)"
                )
        else:
            rows += list(value)
    return rows, missing
