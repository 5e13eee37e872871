"""The catalogue document: defaults plus a list of drills, one model per registered drill kind.

Rule: the kinds are the registry's (``drillbook.drills.registry``); nothing here
names one. ``Catalogue`` validates against the union of the registered kinds'
models, rebuilt by ``catalogue_model()`` when a kind is registered later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, PrivateAttr, model_validator

from drillbook.catalogue.common import ConnId, DrillBase, Duration, StrictModel
from drillbook.drills import registry


def drill_union() -> Any:
    """The discriminated union of every registered kind's model (the type of one ``drills:`` entry)."""
    models = tuple(kind.model for kind in registry.kinds().values())
    return Annotated[Union[models], Field(discriminator="kind")]  # noqa: UP007 - a runtime tuple of models


#: One catalogue entry: statically the base every kind's model derives from; validated as ``drill_union()``.
Drill = DrillBase


def kind_names() -> tuple[str, ...]:
    """The registered kinds, in registration order."""
    return registry.names()


class SlackDefaults(StrictModel):
    connection: ConnId = "drillbook_slack"
    oncall_channel: str = "#dr-oncall"
    digest_channel: str = "#dr-digest"
    mention: str | None = None  # e.g. "<!subteam^S0123ABC>" on FAIL/ERROR
    max_findings: int = Field(default=5, ge=1, le=40)


class WatchdogDefaults(StrictModel):
    grace: Duration = 3600.0  # how late a result may be before DRILL_MISSED
    renotify: Duration = 24 * 3600.0  # repeat an unchanged incident at most this often
    schedule: str = "@hourly"


class DigestDefaults(StrictModel):
    schedules: list[str] = Field(default_factory=lambda: ["@daily", "@weekly"])


class Defaults(StrictModel):
    timezone: str = "UTC"
    owner: str = "drillbook"
    airflow_base_url: str = "http://localhost:8080"
    ledger_connection: ConnId = "drillbook_ledger"
    retries: int = Field(default=1, ge=0, le=10)
    retry_delay: Duration = 300.0
    max_unverified: Duration = 8 * 86400.0
    slack: SlackDefaults = Field(default_factory=SlackDefaults)
    watchdog: WatchdogDefaults = Field(default_factory=WatchdogDefaults)
    digest: DigestDefaults = Field(default_factory=DigestDefaults)

    @model_validator(mode="after")
    def _timezone(self) -> Defaults:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {self.timezone!r}; expected an IANA name like 'Europe/Berlin'"
            ) from None
        return self


class Catalogue(StrictModel):
    version: int = 1
    defaults: Defaults = Field(default_factory=Defaults)
    drills: list[drill_union()] = Field(default_factory=list)  # type: ignore[valid-type]

    _path: Path | None = PrivateAttr(default=None)
    #: whether the suite checks built every expectation with GX (``load_catalogue(..., gx_suites=True)``);
    #: False means only the structural suite checks ran, and ``drillbook validate`` says so
    _gx_suites: bool = PrivateAttr(default=False)

    @property
    def gx_suites_checked(self) -> bool:
        return self._gx_suites

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path:
        """Directory relative paths in the catalogue (references, suites) are resolved from."""
        return self._path.parent if self._path else Path.cwd()

    def drill(self, name: str) -> Drill:
        for d in self.drills:
            if d.name == name:
                return d
        known = ", ".join(sorted(d.name for d in self.drills)) or "none"
        from drillbook.errors import ConfigurationError

        raise ConfigurationError(f"no drill named {name!r} in {self._path}; known drills: {known}")

    def of_kind(self, kind: str) -> list[Drill]:
        return [d for d in self.drills if d.kind == kind and d.enabled]

    def owner_of(self, drill: Drill) -> str:
        return drill.owner or self.defaults.owner

    def max_unverified_of(self, drill: Drill) -> float:
        return drill.max_unverified or self.defaults.max_unverified


_built_for = registry.generation()


def catalogue_model() -> type[Catalogue]:
    """``Catalogue``, its drill union rebuilt first if a kind was registered since the last call."""
    global _built_for
    if _built_for != registry.generation():
        Catalogue.model_fields["drills"].annotation = list[drill_union()]  # type: ignore[misc,assignment]
        Catalogue.model_rebuild(force=True)
        _built_for = registry.generation()
    return Catalogue
