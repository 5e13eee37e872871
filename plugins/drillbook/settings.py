"""drillbook's settings: every ``DRILLBOOK_*`` environment variable, in one pydantic-settings model.

Rules this module enforces:
- this is the only module of the package that reads ``os.environ`` for drillbook's own
  settings; ``load_settings`` is called once per entry point (the CLI's ``main``, each
  Airflow DAG file and task, the demo script) and the ``Settings`` it returns is passed
  down (``tests/foundation/test_settings.py`` checks the package's AST for other reads);
- nothing is read at import time: importing a module never freezes a value;
- an unknown ``DRILLBOOK_*`` variable is an ERROR naming it (and the closest known name),
  like ``extra="forbid"`` for a configuration file: ``DRILLBOOK_SPOL=/x`` must not silently
  spool to the default place. Reserved, never an error: ``DRILLBOOK_CONN_<ID>`` (connections,
  read by the resolver's environment backend) and the test/benchmark knobs
  ``DRILLBOOK_TEST_*``, ``DRILLBOOK_BENCH_*``, ``DRILLBOOK_E2E_*``, ``DRILLBOOK_ALERTMANAGER_BIN``;
- DSNs and keys are registered with ``redact`` as they are read, and left out of ``repr``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from drillbook.errors import ConfigurationError

PREFIX = "DRILLBOOK_"
#: DRILLBOOK_* names that are not settings: connections, and knobs of the test suite and benchmarks
RESERVED_PREFIXES = ("DRILLBOOK_CONN_", "DRILLBOOK_TEST_", "DRILLBOOK_BENCH_", "DRILLBOOK_E2E_")
RESERVED_NAMES = frozenset(
    {"DRILLBOOK_ALERTMANAGER_BIN", "DRILLBOOK_ARTEFACTS", "DRILLBOOK_UPDATE_SCREENSHOTS"}
)


def _flag(value: object) -> object:
    # the historical rule of DRILLBOOK_DEBUG: anything but empty or "0" turns it on
    if isinstance(value, str):
        return value.strip() not in ("", "0")
    return value


Seconds = Annotated[int, Field(gt=0)]


class Settings(BaseSettings):
    """Every ``DRILLBOOK_<FIELD>`` variable; the README's settings table is generated from these fields."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="forbid", frozen=True, case_sensitive=False, env_ignore_empty=True
    )

    catalogue: Path | None = Field(
        None, description="catalogue file (default: include/drills.yaml, or the copy shipped in the package)"
    )
    ledger_dsn: str | None = Field(
        None, repr=False, description="evidence ledger DSN for the CLI (else connection drillbook_ledger)"
    )
    scratch_dsn: str | None = Field(
        None, repr=False, description="scratch server DSN for `drillbook run backup-restore`"
    )
    dq_dsn: str | None = Field(None, repr=False, description="database DSN for `drillbook run data-quality`")
    reference_dsn: str | None = Field(None, repr=False, description="database DSN for `drillbook reference`")
    outbox: Path = Field(
        Path("var") / "outbox.jsonl",
        description="local outbox of reports that did not reach (or had no) Slack",
    )
    spool: Path | None = Field(
        None, description="evidence spool file (default: evidence-spool.jsonl beside the outbox)"
    )
    checkpoint_key: str | None = Field(
        None, repr=False, description="Ed25519 private key (hex) that signs ledger checkpoints"
    )
    checkpoint_public_key: str | None = Field(
        None, description="trusted Ed25519 public key (hex) checkpoints are verified with"
    )
    checkpoint_path: Path | None = Field(
        None, description="outside copy of the checkpoints (a file outside the database)"
    )
    debug: Annotated[bool, BeforeValidator(_flag)] = Field(
        False, description="CLI errors print the (redacted) traceback"
    )
    suite_check: Literal["auto", "gx", "full", "fast", "off"] = Field(
        "auto",
        description="catalogue suite check: gx/full also builds every suite with GX; auto/fast/off check "
        "their shape only (`drillbook validate --suites` asks for GX; a drill builds its suite when it runs)",
    )
    toc_timeout: Seconds = Field(
        600, description="seconds for `pg_restore -l` to list an archive's table of contents"
    )
    check_timeout: Seconds = Field(300, description="seconds for each verify-ladder SQL check")
    reference_timeout: Seconds = Field(
        1800, description="seconds for each tool run of a reference build from a backup"
    )
    verify_statement_timeout: Seconds = Field(
        3600, description="statement_timeout (s) of the verify ladder's session"
    )
    cache_dir: Path | None = Field(
        None,
        description="compiled-catalogue cache (default: $XDG_CACHE_HOME/drillbook, else ~/.cache/drillbook)",
    )
    state_dir: Path | None = Field(
        None, description="physical drills' remembered state (default: drillbook-state in the temp directory)"
    )
    var: Path | None = Field(
        None, description="demo script: where its state lives (default: var/ of the checkout)"
    )
    airflow_port: int = Field(8080, description="demo script (`make up`): the Airflow api-server's port")
    demo_webhook_port: int = Field(18765, description="demo script: port of the loopback webhook receiver")
    admin_password: str | None = Field(
        None,
        repr=False,
        description="demo script (`make up`): the Airflow admin password (default: drillbook)",
    )

    @model_validator(mode="after")
    def _register_secrets(self) -> Settings:
        from drillbook.safety.redact import register_dsn, register_secret

        for dsn in (self.ledger_dsn, self.scratch_dsn, self.dq_dsn, self.reference_dsn):
            if dsn:
                register_dsn(dsn)
        for secret in (self.checkpoint_key, self.admin_password):
            if secret:
                register_secret(secret)
        return self

    @property
    def spool_file(self) -> Path:
        """The evidence spool: ``spool``, else evidence-spool.jsonl beside the outbox (absolute)."""
        return (self.spool or self.outbox.parent / "evidence-spool.jsonl").absolute()

    def suite_check_for(self, entry: Literal["cli", "airflow"]) -> bool:
        """Whether catalogue suites are built with GX: only when the setting asks, on every entry point alike."""
        del entry  # the same answer for the CLI and a DAG-file parse: never what happens to be imported
        return self.suite_check in ("gx", "full")


def field_env_names() -> dict[str, str]:
    """``DRILLBOOK_<FIELD>`` for every field."""
    return {PREFIX + name.upper(): name for name in Settings.model_fields}


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """DRILLBOOK_* names in ``environ`` that are neither a setting nor reserved."""
    known = field_env_names()
    return sorted(
        key
        for key in environ
        if key.upper().startswith(PREFIX)
        and key.upper() not in known
        and not key.upper().startswith(RESERVED_PREFIXES)
        and key.upper() not in RESERVED_NAMES
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings once (from ``environ``, default the process environment); ConfigurationError when bad.

    The error names the variable, what was expected and what was found (never a secret's value).
    """
    env = dict(os.environ if environ is None else environ)
    unknown = unknown_variables(env)
    if unknown:
        from difflib import get_close_matches  # the error path only: parsing a DAG file never needs it

        known = list(field_env_names())
        hints = []
        for name in unknown:
            close = get_close_matches(name.upper(), known, n=1)
            hints.append(f"{name}" + (f" (did you mean {close[0]}?)" if close else ""))
        raise ConfigurationError(
            f"unknown drillbook setting(s) in the environment: {', '.join(hints)}; expected one of "
            f"{', '.join(sorted(known))} (or DRILLBOOK_CONN_<ID> for a connection)"
        )
    values: dict[str, Any] = {}
    names = field_env_names()
    for key, value in env.items():
        field = names.get(key.upper())
        if field is not None and value != "":  # DRILLBOOK_X= (empty) counts as unset, as in a shell
            values[field] = value
    try:
        # validated from the mapping read above, not by a second env source: it is the whole truth
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            secret = (
                Settings.model_fields.get(field) is not None and Settings.model_fields[field].repr is False
            )
            found = "" if secret else f", found {err.get('input')!r}"
            problems.append(f"{PREFIX}{field.upper()}: {err['msg']}{found}")
        raise ConfigurationError("bad drillbook setting(s): " + "; ".join(problems)) from None


class DrillTimeouts(BaseModel):
    """The timeouts a backup-restore drill runs with (from ``Settings.timeouts``); plain data, passed down."""

    model_config = ConfigDict(frozen=True)

    toc: int = 600
    check: int = 300
    reference: int = 1800
    verify_statement: int = 3600


def timeouts_of(settings: Settings) -> DrillTimeouts:
    """The drill timeouts of ``settings``."""
    return DrillTimeouts(
        toc=settings.toc_timeout,
        check=settings.check_timeout,
        reference=settings.reference_timeout,
        verify_statement=settings.verify_statement_timeout,
    )


def settings_table_markdown() -> str:
    """The README's settings table, generated from the fields (tests/foundation/test_settings.py keeps them equal)."""
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, info in Settings.model_fields.items():
        kind = (
            str(info.annotation)
            .replace("typing.", "")
            .replace("pathlib.", "")
            .replace("<class '", "")
            .replace("'>", "")
        )
        if kind.startswith("Literal["):
            kind = "one of " + ", ".join(str(v) for v in getattr(info.annotation, "__args__", ()))
        elif name == "debug":
            kind = "bool"
        elif name in ("toc_timeout", "check_timeout", "reference_timeout", "verify_statement_timeout"):
            kind = "int (seconds, > 0)"
        default = "—" if info.default is None else f"`{info.default}`"
        rows.append(
            f"| `{PREFIX}{name.upper()}` | {kind.replace('|', 'or')} | {default} | {info.description or ''} |"
        )
    return "\n".join(rows)
