"""Run one suite against one PostgreSQL table or query through Great Expectations, inside the database.

Rules this module enforces:
- validation is pushed down: GX's SQL data source (``data_sources.add_postgres``)
  turns each expectation into aggregate SQL run by PostgreSQL; rows are never
  loaded into pandas, and unexpected values are fetched only when a sample was
  asked for (``partial_unexpected_count``);
- the GX context is ephemeral (in memory, nothing written to disk), analytics
  are off, progress bars are off and the ``great_expectations`` logger is at
  WARNING, so a task log shows drillbook's lines, not GX's;
- a psycopg DSN becomes an SQLAlchemy URL with a host (a unix socket goes in
  the ``host`` query parameter beside ``localhost``, which GX's DSN validation
  requires); its password is registered with ``redact`` before GX sees it;
- the target is checked with one cheap catalog query before GX runs, so a
  missing table or column is named precisely instead of surfacing as a GX
  traceback; the pooled connections GX opens are disposed after the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drillbook.errors import DrillbookError
from drillbook.resources.pg import parse
from drillbook.safety.redact import register_secret

if TYPE_CHECKING:
    from drillbook.drills.data_quality.suites import LoadedSuite

_URL_PARAMS_PASSED_THROUGH = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "options",
    "target_session_attrs",
    "hostaddr",
    "connect_timeout",
    "keepalives",
    "gssencmode",
)


class TargetMissing(DrillbookError):
    """The table, or the relation a query reads, does not exist (or cannot be read)."""


@dataclass
class TargetInfo:
    """What the pre-flight query learned: the relation's columns, in order."""

    description: str
    columns: list[str] = field(default_factory=list)


@dataclass
class EngineRun:
    """Raw GX results, one per suite expectation in suite order (None = GX returned nothing for it)."""

    results: list[dict[str, Any] | None]
    gx_version: str
    success: bool | None = None


def sqlalchemy_url(dsn: str) -> str:
    """Turn a psycopg DSN (URI or key=value) into a ``postgresql+psycopg://`` URL GX accepts."""
    from sqlalchemy.engine import URL

    params = parse(dsn)  # registers the password with redact
    register_secret(params.get("password"))
    host = params.get("host") or os.environ.get("PGHOST") or "localhost"
    query: dict[str, str] = {k: params[k] for k in _URL_PARAMS_PASSED_THROUGH if k in params}
    query.setdefault("connect_timeout", "10")
    if host.startswith("/") or "," in host:
        # GX validates the URL as a DSN that must have a host; libpq takes the socket dir from ?host=
        query["host"] = host
        host = "localhost"
    port = params.get("port")
    url = URL.create(
        "postgresql+psycopg",
        username=params.get("user") or None,
        password=params.get("password") or None,
        host=host,
        port=int(port) if port and port.isdigit() else None,
        database=params.get("dbname") or None,
        query=query,
    )
    return url.render_as_string(hide_password=False)


def split_table(table: str) -> tuple[str, str]:
    """``schema.table`` -> (schema, table); a bare name means ``public``."""
    schema, _, name = table.rpartition(".")
    return (schema or "public"), name


def inspect_target(*, dsn: str, table: str | None = None, query: str | None = None) -> TargetInfo:
    """Confirm the table or query can be read and list its columns; raise ``TargetMissing`` if not."""
    import psycopg

    from drillbook.resources.pg import connect

    with connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        if table is not None:
            schema, name = split_table(table)
            cur.execute(
                "select a.attname from pg_catalog.pg_attribute a join pg_catalog.pg_class c on c.oid = a.attrelid "
                "join pg_catalog.pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped order by a.attnum",
                (schema, name),
            )
            columns = [r[0] for r in cur.fetchall()]
            if not columns:
                cur.execute("select to_regclass(%s)", (f'"{schema}"."{name}"',))
                row = cur.fetchone()
                if row is None or row[0] is None:
                    raise TargetMissing(f"table {table!r} does not exist (schema {schema!r}, table {name!r})")
            return TargetInfo(description=table, columns=columns)
        assert query is not None
        try:
            cur.execute(f"select * from ({query}) as drillbook_dq limit 0")  # the catalogue's own query
        except psycopg.Error as exc:
            raise TargetMissing(f"the query cannot run: {str(exc).strip().splitlines()[0]}") from None
        return TargetInfo(description="query", columns=[d.name for d in cur.description or []])


def _context() -> Any:
    from drillbook.drills.data_quality.suites import import_gx

    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    ctx.config.analytics_enabled = False
    return ctx


def result_format(sample: int) -> dict[str, Any]:
    """BASIC counts only; SUMMARY with a partial list only when a sample was asked for."""
    if sample > 0:
        return {
            "result_format": "SUMMARY",
            "partial_unexpected_count": int(sample),
            "include_unexpected_rows": False,
        }
    return {"result_format": "BASIC", "partial_unexpected_count": 0}


def run_suite(
    *,
    dsn: str,
    suite: LoadedSuite,
    table: str | None = None,
    query: str | None = None,
    sample: int = 0,
    unsampled: Iterable[int] = (),
) -> EngineRun:
    """Validate ``table`` (or ``query``) with ``suite`` in PostgreSQL; results in suite order.

    ``unsampled`` are indexes of expectations whose unexpected values must not
    leave the database (sensitive columns). GX applies one result format to a
    whole run, so when sampling is on they run in a second validation with no
    sample at all, rather than being fetched and dropped afterwards.
    """
    ctx = _context()
    import great_expectations as gx

    tag = uuid.uuid4().hex[:8]
    total = len(suite.expectations)
    hidden = sorted(set(unsampled)) if sample > 0 else []
    groups = [([i for i in range(total) if i not in set(hidden)], sample), (hidden, 0)]
    datasource = ctx.data_sources.add_postgres(name=f"drillbook_{tag}", connection_string=sqlalchemy_url(dsn))
    try:
        if table is not None:
            schema, name = split_table(table)
            asset = datasource.add_table_asset(name=f"table_{tag}", table_name=name, schema_name=schema)
        else:
            assert query is not None
            asset = datasource.add_query_asset(name=f"query_{tag}", query=query)
        batch = asset.add_batch_definition_whole_table(f"whole_{tag}")
        ordered: list[dict[str, Any] | None] = [None] * total
        success: bool | None = True
        for number, (indexes, group_sample) in enumerate(groups):
            if not indexes:
                continue
            gx_suite = ctx.suites.add(suite.build(indexes, name=f"{suite.name}_{tag}_{number}"))
            # ids are assigned when the suite is added; they map GX's (reordered) results back to the file
            index_of = {str(e.id): indexes[pos] for pos, e in enumerate(gx_suite.expectations)}
            definition = ctx.validation_definitions.add(
                gx.ValidationDefinition(name=f"vd_{tag}_{number}", data=batch, suite=gx_suite)
            )
            outcome = definition.run(result_format=result_format(group_sample))
            success = bool(success and outcome.success)
            for item in outcome.results:
                raw = item.to_json_dict()
                index = index_of.get(str((raw.get("expectation_config") or {}).get("id")))
                if index is not None:
                    ordered[index] = raw
        return EngineRun(results=ordered, gx_version=gx.__version__, success=success)
    finally:
        _dispose(datasource)


def _dispose(datasource: Any) -> None:
    """Close the pooled connections of both engines GX built (it has no close step of its own)."""
    for getter in ("get_engine", "get_execution_engine"):
        try:
            engine = getattr(datasource, getter)()
            engine = getattr(engine, "engine", engine)
            engine.dispose()
        except Exception:  # noqa: S110 - disposal is best effort; the result is already in hand
            pass
