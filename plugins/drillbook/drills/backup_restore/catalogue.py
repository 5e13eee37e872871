"""Catalogue model of a ``backup_restore`` drill."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from drillbook.catalogue.common import (
    ConnId,
    DrillBase,
    Duration,
    StrictModel,
    format_duration,
    schedule_interval_seconds,
)


class SourceSpec(StrictModel):
    connection: ConnId  # read-only; drills never write here


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_LSN_RE = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


def _safe_name(value: str, what: str) -> str:
    # these go onto the tool's command line: no option injection, no path separators
    if not _NAME_RE.match(value):
        raise ValueError(
            f"expected a {what} of letters, digits, '_', '.', ':' or '-' (not starting with '-'), got {value!r}"
        )
    return value


class PgBackRestSpec(StrictModel):
    """``backup.pgbackrest``: the stanza in a pgBackRest repository (the tool runs with this config file)."""

    stanza: str
    config: str = "/etc/pgbackrest/pgbackrest.conf"
    repo: int = Field(default=1, ge=1, le=256)
    # the OS user pgbackrest (and the restored cluster) run as when the drill runs as root
    os_user: str | None = None

    @field_validator("stanza")
    @classmethod
    def _stanza(cls, value: str) -> str:
        return _safe_name(value, "stanza name")


class BarmanSpec(StrictModel):
    """``backup.barman``: a server in a Barman configuration."""

    server: str
    config: str = "/etc/barman.conf"
    os_user: str | None = None

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        return _safe_name(value, "Barman server name")


class TargetTimeSpec(StrictModel):
    time: datetime

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError(
                f"target.time {value.isoformat()!r} has no time zone: write it with 'Z' or '+00:00'"
            )
        return value.astimezone(UTC)


class TargetNameSpec(StrictModel):
    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _safe_name(value, "restore point name")


class TargetLsnSpec(StrictModel):
    lsn: str

    @field_validator("lsn")
    @classmethod
    def _lsn(cls, value: str) -> str:
        if not _LSN_RE.match(value):
            raise ValueError(f"expected an LSN like '0/3000060', got {value!r}")
        return value.upper()


RecoveryTarget = Literal["latest"] | TargetTimeSpec | TargetNameSpec | TargetLsnSpec


class PitrProof(StrictModel):
    """firedrill's before/after rule: a row written before the target must exist, one written after must not."""

    must_exist: str | None = None  # SQL returning at least one row at the target
    must_not_exist: str | None = None  # SQL returning no row at the target
    database: str = "postgres"

    @model_validator(mode="after")
    def _one(self) -> PitrProof:
        if not self.must_exist and not self.must_not_exist:
            raise ValueError("pitr_proof needs must_exist, must_not_exist or both")
        return self


class BackupSpec(StrictModel):
    # s3://bucket/prefix/ , a local directory or file, or "live" (take a pg_dump -Fc now);
    # exactly one of location, pgbackrest, barman
    location: str | None = None
    connection: ConnId | None = None  # AWS connection for s3:// locations
    pattern: str | None = None  # glob on the key/file name, e.g. "shop-*.dump"
    keep_live_dumps_in: str | None = None  # where a live dump is kept (local dir or s3 prefix)
    pgbackrest: PgBackRestSpec | None = None
    barman: BarmanSpec | None = None
    target: RecoveryTarget = "latest"  # physical backups only: how far WAL is replayed
    pitr_proof: PitrProof | None = None  # physical backups only

    @field_validator("location")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("expected 's3://bucket/prefix/', a local path or 'live', got an empty string")
        return value.strip()

    @model_validator(mode="after")
    def _one_kind(self) -> BackupSpec:
        given = [k for k in ("location", "pgbackrest", "barman") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"expected exactly one of backup.location, backup.pgbackrest, backup.barman, got "
                f"{', '.join(given) or 'none'}"
            )
        if self.location is not None:
            extra = [k for k in ("pitr_proof",) if getattr(self, k) is not None] + (
                ["target"] if self.target != "latest" else []
            )
            if extra:
                raise ValueError(
                    f"backup.{extra[0]} applies only to physical backups (pgbackrest, barman), "
                    f"got it with backup.location {self.location!r}"
                )
        elif self.connection or self.pattern or self.keep_live_dumps_in:
            raise ValueError(
                "backup.connection, pattern and keep_live_dumps_in apply only to backup.location"
            )
        return self

    @property
    def is_physical(self) -> bool:
        return self.location is None

    @property
    def where(self) -> str:
        """The backup's location for reports: the path/URL, or the physical repository it names."""
        if self.pgbackrest is not None:
            return f"pgbackrest:{self.pgbackrest.stanza}@repo{self.pgbackrest.repo}"
        if self.barman is not None:
            return f"barman:{self.barman.server}"
        return self.location or ""

    @property
    def is_s3(self) -> bool:
        return (self.location or "").startswith("s3://")

    @property
    def is_live(self) -> bool:
        return self.location == "live"


class ScratchSpec(StrictModel):
    connection: ConnId
    max_age: Duration = 6 * 3600  # the reaper drops drillbook_scratch_* databases older than this


class RestoreSpec(StrictModel):
    jobs: int = Field(default=2, ge=1, le=32)
    bin_dir: str | None = None  # directory holding pg_restore/psql; else matched by major version on PATH
    no_owner: bool = False
    timeout: Duration = 4 * 3600
    # shared: into a scratch database on scratch.connection (dumps that leave it are refused);
    # ephemeral: into a private cluster drillbook initdb's and removes (pg_dumpall, pg_dump -C).
    target: Literal["shared", "ephemeral"] = "shared"
    database: str | None = None  # ephemeral: the restored database to verify when the dump creates several

    @model_validator(mode="after")
    def _database_needs_ephemeral(self) -> RestoreSpec:
        if self.database is not None and self.target != "ephemeral":
            raise ValueError(
                f"restore.database {self.database!r} applies only to restore.target 'ephemeral', "
                f"got target {self.target!r}"
            )
        return self


class SqlCheck(StrictModel):
    name: str
    sql: str
    expect: str  # "> 0", "== 1", ">= 100", "!= 0"

    @field_validator("expect")
    @classmethod
    def _expect(cls, value: str) -> str:
        from drillbook.catalogue.expectations import parse_expectation

        parse_expectation(value)
        return value


class Suppression(StrictModel):
    """``{code, subject, reason}``: accept one known finding; it stays in the ledger and in every report."""

    code: str
    subject: str | None = (
        None  # exact subject or a glob (``public.legacy_*``); none = every subject of the code
    )
    reason: str = Field(max_length=500)  # required: why this finding is accepted, echoed wherever it is shown

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        from drillbook.findings import REGISTRY

        if value not in REGISTRY:
            raise ValueError(f"unknown finding code {value!r} (see `drillbook findings`)")
        if REGISTRY[value].blocks_verification:
            raise ValueError(
                f"{value!r} means the drill could not verify; it cannot be suppressed (fix the cause)"
            )
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if len(value.strip()) < 3:
            raise ValueError(
                "a suppression needs a written reason (why this finding is accepted), got an empty one"
            )
        return value.strip()


class VerifySpec(StrictModel):
    reference: str | None = None  # structure reference file, relative to the catalogue
    min_rows: dict[str, int] = Field(default_factory=dict)  # "schema.table": minimum rows
    drift_tolerance: float = Field(default=0.10, ge=0, le=1)  # allowed shrink vs the last PASS
    checks: list[SqlCheck] = Field(default_factory=list)
    rpo_probe: str | None = None  # e.g. "select max(created_at) from public.orders"
    # auto: check B-tree indexes when amcheck can run, else say so in the phase detail;
    # true: amcheck must run (AMCHECK_UNAVAILABLE / INDEX_UNCHECKED otherwise); false: off.
    amcheck: Literal["auto"] | bool = "auto"
    suites: list[str] = Field(default_factory=list)  # data-quality suites run on the restored data
    # full: every rung; sample: volume and integrity on ``tables`` only; fast: schema only (no data is read).
    # A non-full tier is reported as partial (PARTIAL_VERIFICATION), never as a full PASS.
    tier: Literal["full", "sample", "fast"] = "full"
    tables: list[str] = Field(
        default_factory=list
    )  # the sample tier's tables, "schema.table" (bare = public)
    ignore: list[Suppression] = Field(default_factory=list)

    @model_validator(mode="after")
    def _tier(self) -> VerifySpec:
        if self.tier == "sample" and not self.tables:
            raise ValueError("verify.tier is 'sample' but verify.tables is empty: name the tables to verify")
        if self.tables and self.tier != "sample":
            raise ValueError(
                f"verify.tables is set but verify.tier is {self.tier!r}: tables apply to tier 'sample' only"
            )
        return self


class RestoreObjectives(StrictModel):
    rto: Duration
    rpo: Duration


class BackupRestoreDrill(DrillBase):
    kind: Literal["backup_restore"]
    source: SourceSpec | None = None
    backup: BackupSpec
    # physical backups restore into a private ephemeral cluster; scratch.max_age still bounds the reaper
    scratch: ScratchSpec
    objectives: RestoreObjectives
    restore: RestoreSpec = Field(default_factory=RestoreSpec)
    verify: VerifySpec = Field(default_factory=VerifySpec)

    @model_validator(mode="after")
    def _rules(self) -> BackupRestoreDrill:
        if self.backup.is_live and self.source is None:
            raise ValueError("backup.location is 'live' but no source.connection is given to dump from")
        if self.backup.is_s3 and self.backup.connection is None:
            raise ValueError(
                f"backup.location {self.backup.location!r} is on S3 but backup.connection (the AWS connection id) is missing"
            )
        if self.source is not None and self.source.connection == self.scratch.connection:
            raise ValueError(
                f"scratch.connection {self.scratch.connection!r} equals source.connection "
                f"{self.source.connection!r}: drills never restore into a source"
            )
        if self.backup.is_live:
            interval = schedule_interval_seconds(self.schedule)
            if interval > self.objectives.rpo:
                raise ValueError(
                    f"objectives.rpo is {format_duration(self.objectives.rpo)} but schedule {self.schedule!r} runs "
                    f"only every {format_duration(interval)}: a live backup taken on this schedule can never meet it"
                )
        return self
