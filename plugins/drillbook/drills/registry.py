"""The drill-kind registry: every kind is one folder under ``drills/`` and one line in ``BUILTIN``.

A kind's folder has a ``kind.py`` whose ``KIND`` is a ``DrillKind``: the catalogue
model, ``run(spec, resources)``, the catalogue checks, and optionally its own
Airflow ``build_dag`` and CLI subcommand (without them the kind gets the generic
one-task DAG of ``drillbook.airflow.generic`` and the generic ``drillbook run
<kind> --drill NAME``). Everything that used to branch on a kind's name (the
catalogue's union of models, the YAML tag set, ``drillbook run`` commands, the DAG
factory, the DAG-kind check of failure evidence, validation) asks this registry.

Rules this module enforces:
- importing it, and listing the kinds, loads only pydantic models: ``run``,
  ``build_dag``, the CLI and the checks are ``"module:attribute"`` strings
  imported when used, as Airflow providers name their hooks, so the CLI's
  import path stays free of Airflow, GX, boto3 and pandas;
- a kind's name is its catalogue ``kind:`` value, its DAG ids are
  ``dr_<name>__<drill>`` and its command is ``drillbook run <name with '-'>``;
  two kinds may not share a name, and a kind's model must declare that name as
  its ``kind`` literal;
- ``register`` (for plug-ins and tests) adds a kind after the built-in ones;
  ``generation()`` changes with every registration, so the catalogue rebuilds
  its union of models before the next load.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from drillbook.catalogue.common import DrillBase
    from drillbook.catalogue.models import Catalogue
    from drillbook.result import DrillResult, Phase

#: The built-in kinds, one line each: the module that defines the kind's ``KIND``.
BUILTIN: tuple[str, ...] = (
    "drillbook.drills.backup_restore.kind",
    "drillbook.drills.data_quality.kind",
    "drillbook.drills.certificates.kind",
    "drillbook.drills.alert_path.kind",
)

#: A catalogue problem: location inside the drill (``("verify", "suites", 0)``) and message.
Problem = tuple[tuple[str | int, ...], str]


class Resources(Protocol):
    """What a drill needs from its entry point, resolved from connection ids (CLI: environment; Airflow: hooks).

    The resolver of the composition root (issue 12) satisfies this; until it lands,
    ``drillbook.drills.negative.ClientResources`` does, for both entry points.
    """

    def dsn(self, conn_id: str) -> str: ...  # a PostgreSQL DSN; raises ConnectionNotConfigured

    def slack(self, conn_id: str) -> Any: ...  # a slack_sdk WebClient

    def aws(self, conn_id: str, service: str, region: str | None) -> Any: ...  # a boto3 client

    def http(
        self, conn_id: str
    ) -> Any: ...  # a drillbook Connection (host, port, schema, login, password, extra)


class ClientResources:
    """``Resources`` from a DSN resolver and alert-path clients: each entry point passes its own backends."""

    def __init__(self, *, dsn: Callable[[str], str], clients: Any):
        self._dsn, self._clients = dsn, clients

    def dsn(self, conn_id: str) -> str:
        return self._dsn(conn_id)

    def slack(self, conn_id: str) -> Any:
        return self._clients.slack(conn_id)

    def aws(self, conn_id: str, service: str, region: str | None) -> Any:
        return self._clients.aws(conn_id, service, region)

    def http(self, conn_id: str) -> Any:
        return self._clients.http(conn_id)


@dataclass(frozen=True)
class RunSpec:
    """One run of one drill: the catalogue entry and where it runs; the same for every kind."""

    drill: DrillBase
    work_dir: Path
    base_dir: Path | None = None  # the catalogue's directory: relative paths in the drill resolve from here
    ledger: Any = None  # for kinds that compare with their last PASS; None: no history
    on_phase: Callable[[Phase], None] | None = None
    options: Mapping[str, Any] = field(
        default_factory=dict
    )  # kind-specific run options (e.g. alert paths to prove)


@dataclass(frozen=True)
class DrillKind:
    """One drill kind, declared in its folder's ``kind.py`` as ``KIND``."""

    name: str  # the catalogue's ``kind:`` value
    model: type[DrillBase]  # the pydantic model of one catalogue entry
    summary: str  # one line: what a run proves (CLI help, docs)
    run: str  # "module:function": run(spec: RunSpec, resources: Resources) -> list[DrillResult]
    checks: tuple[str, ...] = ()  # "module:function": check(drill, catalogue) -> Iterator[Problem]
    # "module:function": inputs(drill, catalogue) -> Iterable[str]: every path the checks read or test, as they
    # name it (a relative one as given: it is stat'ed from the same directory). A kind with checks and no inputs
    # keeps catalogue.summary from summarising a catalogue it is in (its verdict could change unseen).
    inputs: str | None = None
    dag: str | None = None  # "module:function": build_dag(drill, catalogue) -> DAG; None: the generic DAG
    cli: str | None = (
        None  # module with configure_parser(parser) and main(args) -> int; None: the generic command
    )
    tags: tuple[
        str, ...
    ] = ()  # discriminator values inside the model (e.g. alert path types), left out of error paths
    negative: str | None = (
        None  # "module:function": run the drill on broken input (drills.negative); None: no negative drill
    )
    expected_negative: frozenset[str] = frozenset()  # codes its negative drill must turn red with

    @property
    def command(self) -> str:
        """The ``drillbook run`` subcommand."""
        return self.name.replace("_", "-")

    def run_drill(self, spec: RunSpec, resources: Resources) -> list[DrillResult]:
        """Run one drill of this kind through its ``run``."""
        return list(load(self.run)(spec, resources))

    def problems(self, drill: DrillBase, catalogue: Catalogue) -> Iterator[Problem]:
        """Every catalogue problem of ``drill`` found by this kind's checks."""
        for check in self.checks:
            yield from load(check)(drill, catalogue)

    def check_inputs(self, drill: DrillBase, catalogue: Catalogue) -> list[str] | None:
        """The paths this kind's checks of ``drill`` depend on; None when it has checks but does not say."""
        if not self.checks:
            return []
        if self.inputs is None:
            return None
        return [str(p) for p in load(self.inputs)(drill, catalogue)]


def load(ref: str) -> Any:
    """Import ``"module:attribute"``."""
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


_extra: dict[str, DrillKind] = {}
_builtin: dict[str, DrillKind] | None = None
_generation = 0


def _check(kind: DrillKind, known: Mapping[str, DrillKind]) -> None:
    if kind.name in known:
        raise ValueError(f"drill kind {kind.name!r} is registered twice")
    annotation = kind.model.model_fields.get("kind")
    declared = getattr(annotation.annotation, "__args__", ()) if annotation is not None else ()
    if declared != (kind.name,):
        raise ValueError(
            f"drill kind {kind.name!r}: its model {kind.model.__name__} must declare "
            f"kind: Literal[{kind.name!r}], got {declared or 'no kind field'}"
        )


def kinds() -> dict[str, DrillKind]:
    """Every registered kind by name: the built-in ones in ``BUILTIN`` order, then registered ones."""
    global _builtin
    if _builtin is None:
        found: dict[str, DrillKind] = {}
        for module in BUILTIN:
            kind = importlib.import_module(module).KIND
            _check(kind, found)
            found[kind.name] = kind
        _builtin = found
    return {**_builtin, **_extra}


def get(name: str) -> DrillKind:
    """The kind called ``name``; a ValueError names the known ones."""
    known = kinds()
    if name not in known:
        raise ValueError(f"unknown drill kind {name!r}; expected one of {sorted(known)}")
    return known[name]


def names() -> tuple[str, ...]:
    return tuple(kinds())


def register(kind: DrillKind) -> DrillKind:
    """Add a kind after the built-in ones (a plug-in's or a test's); the catalogue accepts it from the next load."""
    global _generation
    _check(kind, kinds())
    _extra[kind.name] = kind
    _generation += 1
    return kind


def unregister(name: str) -> None:
    """Remove a kind added by ``register`` (tests clean up with this)."""
    global _generation
    if _extra.pop(name, None) is not None:
        _generation += 1


def only_builtin() -> bool:
    """True when no kind was registered beyond ``BUILTIN`` (nothing imported to answer)."""
    return not _extra


def generation() -> int:
    """Changes whenever the set of kinds changes."""
    return _generation
