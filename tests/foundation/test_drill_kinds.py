"""A drill kind is one folder plus one registration: the registry is the only list of kinds.

The proof is a fifth kind that lives only in the tests (``tests/foundation/kinds/pg_ping``) and
is registered with one line: the catalogue loader accepts it (and reports its errors with lines),
validation and its catalogue check know it, ``drillbook run pg-ping`` runs it, the DAG factory
builds its DAG, and the watchdog and the failure-evidence callback treat it as a drill. Without
the registration every one of those refuses it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drillbook.catalogue import load_catalogue
from drillbook.cli import main as drillbook
from drillbook.cli import run_commands
from drillbook.drills import registry
from drillbook.errors import CatalogueError
from tests.foundation.kinds.pg_ping.kind import KIND, PgPingDrill

CATALOGUE = """\
version: 1
drills:
  - name: ping
    kind: pg_ping
    schedule: "@hourly"
    controls: ["SOC2:A1.2"]
    connection: ping_target
"""


@pytest.fixture
def pg_ping() -> Iterator[registry.DrillKind]:
    """The example kind, registered for one test (the one registration line a real kind adds to BUILTIN)."""
    registry.register(KIND)
    try:
        yield KIND
    finally:
        registry.unregister(KIND.name)


@pytest.fixture
def catalogue_file(tmp_path: Path) -> Path:
    path = tmp_path / "drills.yaml"
    path.write_text(CATALOGUE)
    return path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_builtin_kinds_come_from_the_registry_and_each_resolves() -> None:
    assert registry.names() == ("backup_restore", "data_quality", "certificates", "alert_path")
    for kind in registry.kinds().values():
        assert kind.model.model_fields["kind"].annotation.__args__ == (kind.name,)
        for ref in (kind.run, *kind.checks, kind.negative):
            assert ref is not None and callable(registry.load(ref)), ref
        assert kind.cli is not None and hasattr(registry.load(kind.cli), "configure_parser")
        assert kind.expected_negative, kind.name
    assert list(run_commands()) == [
        "backup-restore",
        "data-quality",
        "certificates",
        "alert-path",
        "negative",
    ]


def test_a_kind_must_name_itself_in_its_model_and_be_registered_once(pg_ping: registry.DrillKind) -> None:
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(pg_ping)
    with pytest.raises(ValueError, match=r"must declare kind: Literal\['pg_pong'\], got \('pg_ping',\)"):
        registry.register(registry.DrillKind(name="pg_pong", model=PgPingDrill, summary="x", run="x:y"))
    assert "pg_pong" not in registry.names()


def test_without_its_registration_the_kind_is_unknown_everywhere(catalogue_file: Path) -> None:
    from drillbook.airflow.failure_evidence import drill_of

    with pytest.raises(CatalogueError) as err:
        load_catalogue(catalogue_file)
    assert f"{catalogue_file}:4: drills[0].kind: unknown kind 'pg_ping'" in str(err.value)
    assert drill_of("dr_pg_ping__ping") is None
    assert "pg-ping" not in run_commands()
    with pytest.raises(ValueError, match="unknown drill kind 'pg_ping'"):
        registry.get("pg_ping")


def test_the_loader_accepts_the_kind_and_reports_its_problems_with_lines(
    pg_ping: registry.DrillKind, catalogue_file: Path, tmp_path: Path
) -> None:
    catalogue = load_catalogue(catalogue_file)
    [drill] = catalogue.drills
    assert isinstance(drill, PgPingDrill) and drill.connection == "ping_target" and drill.timeout == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        CATALOGUE.replace("connection: ping_target", "conection: ping_target\n    timeout: 0")
        + "  - name: pinger\n    kind: pg_ping\n    schedule: '@daily'\n    connection: drillbook_ledger\n"
    )
    with pytest.raises(CatalogueError) as err:
        load_catalogue(bad)
    text = str(err.value)
    assert f"{bad}:7: drills[0].conection: unknown key" in text  # the union tag 'pg_ping' is not in the path
    assert f"{bad}:8: drills[0].timeout: Input should be greater than or equal to 1" in text
    assert (
        f"{bad}:12: drills[1].connection: 'drillbook_ledger' is the ledger's connection" in text
    )  # the kind's own check


def test_validate_and_the_cli_run_the_kind(
    pg_ping: registry.DrillKind,
    catalogue_file: Path,
    pg,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DRILLBOOK_LEDGER_DSN", raising=False)
    assert drillbook(["validate", str(catalogue_file)]) == 0
    assert "ok  pg_ping" in capsys.readouterr().out

    monkeypatch.setenv("DRILLBOOK_CONN_PING_TARGET", pg.dsn("postgres"))
    assert drillbook(["run", "pg-ping", "--drill", "ping", "--catalogue", str(catalogue_file), "--json"]) == 0
    assert '"verdict": "PASS"' in capsys.readouterr().out

    monkeypatch.setenv("DRILLBOOK_CONN_PING_TARGET", f"postgresql://nobody@127.0.0.1:{_closed_port()}/x")
    assert drillbook(["run", "pg-ping", "--drill", "ping", "--catalogue", str(catalogue_file)]) == 2
    out = capsys.readouterr().out
    assert "SOURCE_UNREACHABLE" in out and "ERROR" in out

    monkeypatch.delenv("DRILLBOOK_CONN_PING_TARGET")
    assert drillbook(["run", "pg-ping", "--drill", "ping", "--catalogue", str(catalogue_file)]) == 2
    assert "CONNECTION_MISSING" in capsys.readouterr().out


def test_the_watchdog_and_failure_evidence_know_the_kind(
    pg_ping: registry.DrillKind, catalogue_file: Path
) -> None:
    from drillbook.airflow.failure_evidence import drill_of
    from drillbook.reporting.assessment import assess
    from drillbook.reporting.drill_history import DrillHistory

    catalogue = load_catalogue(catalogue_file)
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    [incident] = assess(
        catalogue, {"ping": DrillHistory(first_seen=long_ago)}, now=datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    )["ping"]
    assert (incident.code, incident.kind) == ("DRILL_MISSED", "pg_ping")
    assert drill_of("dr_pg_ping__ping") == ("pg_ping", "ping")


@pytest.mark.airflow
def test_the_dag_factory_builds_the_generic_dag_of_the_kind(
    pg_ping: registry.DrillKind, catalogue_file: Path
) -> None:
    from drillbook.airflow.factory import build_dags

    dags = build_dags("pg_ping", load_catalogue(catalogue_file))
    dag = dags["dr_pg_ping__ping"]
    assert set(dag.tags) == {"drillbook", "pg_ping"} and dag.catchup is False and dag.max_active_runs == 1
    assert [t.task_id for t in dag.tasks] == ["run"]
    assert dag.on_failure_callback and "pg_ping" in (dag.doc_md or "")
