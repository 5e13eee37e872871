"""Turn catalogue entries into DAGs: one DAG per drill, ``dr_<kind>__<name>``.

Rules this module enforces (DAG policy, checked by tests/foundation/test_dag_integrity.py):
every drillbook DAG has owner, retries, ``catchup=False``, ``max_active_runs=1``,
tags ``["drillbook", <kind>]``, a ``doc_md`` and the on-failure callback. Parsing
does no I/O beyond reading the catalogue once per process and imports nothing
heavy: drills import their clients inside tasks. A broken catalogue raises
``CatalogueError`` at import, so Airflow shows one import error that names the
file, line and key.

Tasks are classic ``PythonOperator``s made by ``drill_task`` (upstream results passed as
``XComArg``s in ``op_args``), not ``@task``: the TaskFlow decorator costs Airflow about 1.6x
the CPU of the same operator at parse time (a decorator object per task per DAG, signature
checks, return-annotation inference), and a 1,000-drill catalogue parses 2,500 of them in
one file. Mapped tasks are ``PythonOperator.partial(...).expand(op_args=...)``
(``drill_mapped_task``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from drillbook.airflow.current_catalogue import current_catalogue

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from drillbook.catalogue import Catalogue
    from drillbook.catalogue.summary import CatalogueSummary

GENERIC_BUILDER = "drillbook.airflow.generic:build_dag"  # for a kind that brings no DAG builder of its own


@dataclass(frozen=True)
class DagSubject:
    """What a DAG's policy reads from the drill it runs; the watchdog and digest DAGs, which run no drill, give their own."""

    kind: str
    name: str
    schedule: Any
    description: str = ""
    owner: str | None = None
    controls: list[str] = field(default_factory=list)
    retries: int | None = None


def dag_id_for(kind: str, name: str) -> str:
    return f"dr_{kind}__{name}"


def _on_failure(context: Any) -> None:
    """DAG-level failure callback (a plain function: a Notifier object breaks dag.test(), airflow#64649)."""
    from drillbook.airflow.notify import on_failure_callback

    on_failure_callback(context)


def default_args(drill: Any, catalogue: Catalogue | CatalogueSummary) -> dict[str, Any]:
    retries = drill.retries if getattr(drill, "retries", None) is not None else catalogue.defaults.retries
    return {
        "owner": catalogue.owner_of(drill),
        "retries": retries,
        "retry_delay": timedelta(seconds=catalogue.defaults.retry_delay),
        "execution_timeout": timedelta(hours=6),
    }


def drill_doc(drill: Any, catalogue: Catalogue | CatalogueSummary, body: str = "") -> str:
    """The DAG's doc_md: what it proves, for which controls, against which objectives."""
    lines = [f"### drillbook · {drill.kind} · `{drill.name}`", ""]
    if drill.description:
        lines += [drill.description, ""]
    lines += [
        f"* **Schedule:** `{drill.schedule}` ({catalogue.defaults.timezone})",
        f"* **Owner:** {catalogue.owner_of(drill)}",
        f"* **Controls:** {', '.join(drill.controls) or 'none declared'}",
        f"* **Catalogue:** `{catalogue.path}`",
    ]
    if body:
        lines += ["", body]
    lines += [
        "",
        "Results are written to the evidence ledger before Slack is told; "
        "verify the ledger with `drillbook evidence verify`.",
    ]
    return "\n".join(lines)


@functools.cache
def _task_types() -> tuple[Any, Any]:
    """Airflow's ``PythonOperator`` and ``XComArg``, imported on first use (not when this module is imported) and
    then looked up once: a ``from ... import`` inside ``drill_task`` cost every one of a 1,000-drill catalogue's
    2,500 tasks the import machinery's lookup again."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import XComArg

    return PythonOperator, XComArg


def drill_task(python_callable: Any, task_id: str, *upstream: Any, **operator_kwargs: Any) -> Any:
    """One task of the DAG being built: ``python_callable(*upstream)`` at run time, where each ``XComArg`` in
    ``upstream`` becomes the result of that task (and that task an upstream one); returns this task's ``XComArg``.

    The callable also receives Airflow's context variables it names (``**context``), as with ``@task``.
    """
    PythonOperator, XComArg = _task_types()
    operator = PythonOperator(
        task_id=task_id,
        python_callable=python_callable,
        op_args=list(upstream),
        **operator_kwargs,
    )
    return XComArg(operator)


def drill_mapped_task(python_callable: Any, task_id: str, over: Any, **operator_kwargs: Any) -> Any:
    """A task mapped over ``over``: one instance ``python_callable(*args)`` per ``args`` list in it (a literal list,
    or the ``XComArg`` of a task that returns a list of argument lists); returns its ``XComArg``."""
    PythonOperator, XComArg = _task_types()
    partial = PythonOperator.partial(task_id=task_id, python_callable=python_callable, **operator_kwargs)
    return XComArg(partial.expand(op_args=over))


def drill_dag(
    drill: Any,
    catalogue: Catalogue | CatalogueSummary,
    *,
    doc_md: str = "",
    dag_id: str | None = None,
    schedule: str | timedelta | None = None,
    tags: list[str] | None = None,
) -> DAG:
    """A DAG carrying drillbook's policy for ``drill``; use as ``with drill_dag(...) as dag:``.

    ``catalogue`` may be a ``CatalogueSummary`` (the watchdog's DAG file): the policy reads only its path and
    defaults."""
    import pendulum
    from airflow.sdk import DAG

    tz = pendulum.timezone(catalogue.defaults.timezone)
    return DAG(
        dag_id=dag_id or dag_id_for(drill.kind, drill.name),
        description=(drill.description or f"{drill.kind} drill {drill.name}")[:200],
        schedule=schedule or drill.schedule,
        start_date=datetime(2026, 1, 1, tzinfo=tz),
        catchup=False,
        max_active_runs=1,
        default_args=default_args(drill, catalogue),
        tags=tags or ["drillbook", drill.kind],
        doc_md=drill_doc(drill, catalogue, doc_md),
        on_failure_callback=_on_failure,
        params={},
    )


def build_dags(kind: str, catalogue: Catalogue | None = None) -> dict[str, DAG]:
    """All DAGs of one registered drill kind from the (current) catalogue, keyed by dag_id."""
    from drillbook.safety.redact import install_log_redaction

    install_log_redaction()  # a DAG file is an entry point: its process's log lines pass through redact
    from drillbook.drills import registry

    found = registry.get(kind)
    catalogue = catalogue if catalogue is not None else current_catalogue()
    builder = registry.load(found.dag or GENERIC_BUILDER)
    dags: dict[str, DAG] = {}
    for drill in catalogue.of_kind(kind):
        dag = builder(drill, catalogue)
        dags[dag.dag_id] = dag
    return dags


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a DAG file builds its DAGs; what was built is then frozen
    (``gc.freeze()``, as Airflow's DAG processor freezes its own heap before it forks a parser per file) and the
    collector switched back on as it was.

    Building a 1,000-drill catalogue's DAGs allocates ~2 million objects that all stay alive (every DAG ends up in
    the file's globals, for the life of the parse or task process): the collector's automatic passes over them free
    nothing and cost the parse 0.07-0.09 s CPU, four times the 0.02 s Airflow's collector spends building the same
    DAGs from a literal (``gc.callbacks`` in forked children, as ``bench/scale.py`` forks them). Only pausing the
    collector would not save it: the first pass after would scan every object made meanwhile. Reference counting
    still frees everything acyclic; a garbage cycle made during the build stays in memory until the process exits
    (measured: no change in the parse's peak RSS). One full collection first, so that garbage made before the build
    (in a long-lived process: a test session, a task that parses the file again) is freed, its finalizers run
    (an unclosed connection or temporary file among it closes), and is not frozen with the rest; in the DAG
    processor's parser, forked from a frozen heap, that collection has next to nothing to scan.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def build_all_dags() -> dict[str, DAG]:
    """The DAGs of every registered kind (``dags/dr_drills.py``): the catalogue is read once for all of them."""
    from drillbook.drills import registry

    with cyclic_gc_paused():
        catalogue = current_catalogue()
        dags: dict[str, DAG] = {}
        for kind in registry.names():
            dags.update(build_dags(kind, catalogue))
    return dags
