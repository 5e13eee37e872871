"""A drill run that Airflow failed before the drill could run still leaves evidence: an ERROR record with the cause.

Rules this module enforces:
- when a run of a drill DAG (``dr_<kind>__<name>``, a kind of
  ``drills.registry``) fails and the ledger holds no ``drill`` record for that
  run, the failure callback writes one: verdict ERROR, finding
  ``DRILL_NOT_RUN``, identified by the failed task (dag_id, run_id, task_id,
  map_index, try), so the ledger has a record for every run that started;
- the cause is the real one as far as Airflow tells it: the exception when
  there is one; otherwise the failed task, its try, whether it ever started on
  a worker (a task instance with no hostname never did: the worker could not
  reach the API server, was killed, or could not import the DAG) and Airflow's
  own reason; when the task wrote a log (the deployment's shared
  ``[logging] base_log_folder``), its first error events are added (an import
  error on the worker is only there: Airflow passes the callback no exception).
  The log is untrusted input: only error-level events, bounded, one line each.
  A task that started on a worker and whose log ends without an error was
  killed or lost its worker (the heartbeat timeout failed it): the cause says so.
  It is redacted like every ledger row;
- the record is written before anyone is told (evidence first); the caller's
  page then carries the same cause — never a bare ``task_failure``;
- nothing here raises into Airflow: the caller falls back to a plain page.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def drill_of(dag_id: str) -> tuple[str, str] | None:
    """(kind, name) of a drill DAG id, or None for any other DAG."""
    from drillbook.drills import registry

    if not dag_id.startswith("dr_") or "__" not in dag_id:
        return None
    kind, name = dag_id[3:].split("__", 1)
    return (kind, name) if kind in registry.kinds() else None


def failure_cause(ti: Any, *, reason: str | None, exception: str | None) -> str:
    """What made the task fail, as precisely as the callback context says."""
    task = getattr(ti, "task_id", None) or "unknown task"
    tries = getattr(ti, "try_number", None)
    attempt = f" (try {tries})" if tries else ""
    why = f"; Airflow's reason: {reason}" if reason else ""
    if exception:
        return f"task {task!r}{attempt} failed before the drill recorded a result: {exception}{why}"
    host = getattr(ti, "hostname", None)
    if not host:
        return (
            f"task {task!r}{attempt} never started on a worker: the executor failed it before it ran "
            f"(a worker that could not reach the API server at [core] execution_api_server_url, "
            f"a worker killed while it held the task, or a DAG the worker could not import){why}"
        )
    return (
        f"task {task!r}{attempt} started on {host!r} but ended before the drill recorded a result "
        f"(killed, out of memory, timed out, or crashed outside the drill; see its task log){why}"
    )


LOG_TAIL_BYTES = 256_000
MAX_LOG_ERRORS = 2


def task_log_errors(ti: Any, *, folder: str | None = None) -> list[str] | None:
    """The first error events of the task's log for its try (``[logging] base_log_folder``); None when there is no log."""
    import json
    from pathlib import Path

    dag_id, run_id, task_id = (getattr(ti, k, None) for k in ("dag_id", "run_id", "task_id"))
    if not (dag_id and run_id and task_id):
        return None
    if folder is None:
        from airflow.configuration import conf

        folder = conf.get("logging", "base_log_folder", fallback="")
    if not folder:
        return None
    map_index = getattr(ti, "map_index", -1)
    mapped = f"map_index={map_index}/" if isinstance(map_index, int) and map_index >= 0 else ""
    path = (
        Path(folder)
        / f"dag_id={dag_id}"
        / f"run_id={run_id}"
        / f"task_id={task_id}"
        / f"{mapped}attempt={getattr(ti, 'try_number', None) or 1}.log"
    )
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            lines = fh.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    found: list[str] = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or event.get("level") not in ("error", "critical"):
            continue
        text = " ".join(str(event.get("event", "")).split())[:400]
        if text and text not in found and not text.startswith("Failed to import:"):
            found.append(text)
        if len(found) >= MAX_LOG_ERRORS:
            break
    return found


def run_has_drill_record(ledger: Any, *, dag_id: str, run_id: str, name: str) -> bool:
    rows = ledger.query(drill=name, record_type="drill", newest_first=True, limit=200)
    return any(r.dag_id == dag_id and r.run_id == run_id for r in rows)


def record_not_run(context: dict[str, Any], *, catalogue: Any, exception: str | None) -> str | None:
    """Write the ERROR record of a drill run that never produced one; returns its cause (None: nothing written)."""
    from drillbook.airflow import runtime
    from drillbook.drills.base import ResultBuilder
    from drillbook.run.context import RunContext

    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None) or ""
    run_id = getattr(ti, "run_id", None) or context.get("run_id")
    drill = drill_of(dag_id)
    if drill is None or not run_id:
        return None
    kind, name = drill
    entry = next((d for d in catalogue.drills if d.name == name and d.kind == kind), None)
    with runtime.ledger_for(catalogue) as ledger:
        if run_has_drill_record(ledger, dag_id=dag_id, run_id=run_id, name=name):
            return None
        reason = context.get("reason")
        cause = failure_cause(ti, reason=str(reason) if reason else None, exception=exception)
        try:
            errors = task_log_errors(ti)
        except Exception as exc:  # the log is a bonus; the record is not
            log.warning("task log of %s not readable: %s", dag_id, type(exc).__name__)
            errors = None
        if errors:
            cause += "; its task log says: " + " | ".join(errors)
        elif errors is not None and getattr(ti, "hostname", None):
            cause += (
                "; its task log ends without an error: the task process or its worker was killed "
                "(the scheduler fails a task whose heartbeat stops, [scheduler] task_instance_heartbeat_timeout)"
            )
        builder = ResultBuilder(
            kind=kind,
            drill=name,
            target=getattr(ti, "task_id", None) or dag_id,
            controls=list(getattr(entry, "controls", []) or []),
        )
        # no builder.checked(): nothing was verified, so the verdict is ERROR
        builder.find(
            "DRILL_NOT_RUN",
            cause,
            subject=getattr(ti, "task_id", None) or dag_id,
            detail={"reason": str(reason or ""), "hostname": str(getattr(ti, "hostname", None) or "")},
        )
        map_index = getattr(ti, "map_index", -1)
        ctx = RunContext(
            dag_id=dag_id,
            run_id=run_id,
            task_id=getattr(ti, "task_id", None) or "dag_run",
            map_index=int(map_index if map_index is not None else -1),
            try_number=int(getattr(ti, "try_number", None) or 1),
            trigger="scheduled",
        )
        record = ledger.record(builder.finish(), ctx)
    log.warning(
        "%s run %s: recorded ERROR DRILL_NOT_RUN (ledger seq %s): %s",
        dag_id,
        run_id,
        getattr(record, "seq", None),
        cause,
    )
    return cause
