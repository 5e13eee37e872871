"""Load Great Expectations suites from ``include/expectations/`` and check them without a database.

Rules this module enforces:
- a suite is the JSON that GX 1.x ``ExpectationSuite.to_json_dict()`` writes
  (``name``, ``expectations: [{type, kwargs, meta, ...}]``, ``meta``); a suite
  name resolves to ``<suites_dir>/<name>.json``; a value with ``/`` or ending in
  ``.json`` is a path;
- every expectation is built with GX itself (``ExpectationConfiguration(...)
  .to_domain_obj()``), one at a time: GX's own ``ExpectationSuite(...)``
  constructor only *logs* an unknown expectation type and drops it, which would
  make a misspelt expectation silently pass;
- drillbook's keys live in ``meta`` and are checked too: ``meta.severity`` (on
  the suite or on one expectation) is one of drillbook's severities;
  ``meta.drillbook`` may hold ``table`` ("schema.table", the table the suite
  describes: required when the suite runs in a backup-restore drill) and
  ``sensitive_columns`` (never sampled, observed values withheld);
- ``suite_messages`` is what the kinds' catalogue checks (``kind.py`` of
  data_quality and backup_restore) report against the catalogue key that names
  the suite, so ``drillbook validate`` prints ``file:line``.

GX is imported lazily and only when asked: the GX part of a catalogue's suite
check runs with ``load_catalogue(..., gx_suites=True)`` (``drillbook validate
--suites``) or ``DRILLBOOK_SUITE_CHECK=gx``, never because of what happens to be
in ``sys.modules`` (the same catalogue gives the same answer in every process);
a drill builds its suite with GX at run time anyway. Importing GX costs 5-8 s,
so validate, watchdog, digest and DAG parsing do not pay it. The structural
checks (file exists, JSON parses, keys and types, severities) always run, once
per suite file and catalogue however many drills name it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillbook.errors import ConfigurationError

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue


# the values of drillbook.result.Severity, written out: importing that module (the result models) and difflib
# here cost every DAG file's parse ~10 ms, and the catalogue's suite checks run on every parse;
# tests/data_quality checks the two stay equal
_SEVERITIES = ["info", "low", "medium", "high", "critical"]
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$")
_DRILLBOOK_META_KEYS = {"table", "sensitive_columns"}
_EXPECTATION_KEYS = {"type", "kwargs", "meta", "notes", "description", "severity", "id", "rendered_content"}


class SuiteInvalid(ConfigurationError):
    """A suite file is missing, unreadable or holds expectations GX rejects; ``problems`` lists each."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        super().__init__(f"suite {self.path!r} is invalid: " + "; ".join(self.problems))


@dataclass(frozen=True)
class LoadedSuite:
    """A suite file that passed every check, plus drillbook's reading of its ``meta``."""

    name: str
    path: Path
    data: dict[str, Any]
    table: str | None = None
    sensitive_columns: frozenset[str] = field(default_factory=frozenset)
    severity: str | None = None  # suite-level default for failed expectations

    @property
    def expectations(self) -> list[dict[str, Any]]:
        return list(self.data.get("expectations") or [])

    def severity_of(self, index: int) -> str:
        """``meta.severity`` of expectation ``index``, else the suite's, else ``high``."""
        meta = self.expectations[index].get("meta") or {}
        return str(meta.get("severity") or self.severity or "high")  # Severity.HIGH

    def build(self, indexes: list[int] | None = None, *, name: str | None = None) -> Any:
        """A GX ``ExpectationSuite`` of the expectations at ``indexes`` (default all; checked, so none is dropped)."""
        from great_expectations.core import ExpectationSuite

        chosen = range(len(self.expectations)) if indexes is None else indexes
        built = [_build_expectation(self.expectations[i]) for i in chosen]
        return ExpectationSuite(
            name=name or self.name, expectations=built, meta=dict(self.data.get("meta") or {})
        )


def default_suites_dir(catalogue: Catalogue | None = None) -> Path:
    """``expectations/`` beside the catalogue (``include/expectations`` for the shipped one)."""
    if catalogue is not None:
        return catalogue.base_dir / "expectations"
    from drillbook.catalogue.common import DEFAULT_CATALOGUE

    return DEFAULT_CATALOGUE.parent / "expectations"


def suite_path(suite: str, suites_dir: str | os.PathLike[str]) -> Path:
    """Resolve a suite name (``orders``) or path (``x/orders.json``) to a file path."""
    if "/" in suite or suite.endswith(".json"):
        path = Path(suite)
        if path.is_absolute() or path.exists():
            return path
        # a relative path in the catalogue is relative to the catalogue's directory
        return Path(suites_dir).parent / path
    return Path(suites_dir) / f"{suite}.json"


def suite_inputs(suite: str, suites_dir: str | os.PathLike[str]) -> list[Path]:
    """Every path ``suite_path`` tests or resolves to, and so what ``suite_messages`` depends on."""
    if "/" in suite or suite.endswith(".json"):
        return [Path(suite), Path(suites_dir).parent / suite]
    return [Path(suites_dir) / f"{suite}.json"]


def _read_json(path: Path) -> dict[str, Any]:
    # the bounded reader: size, UTF-8 (or a BOM), nesting depth; never a decode or recursion traceback
    from drillbook.catalogue.reader import FileProblem, read_json

    try:
        data = read_json(path)
    except FileProblem as exc:
        if exc.message == "file not found":
            raise SuiteInvalid(path, [f"file not found; expected a suite JSON at {str(path)!r}"]) from None
        located = exc.line and f"line {exc.line}" not in exc.message
        raise SuiteInvalid(path, [f"{exc.message} (line {exc.line})" if located else exc.message]) from None
    if not isinstance(data, dict):
        raise SuiteInvalid(
            path, [f"expected a JSON object with 'name' and 'expectations', got {type(data).__name__}"]
        )
    return data


def _structure_problems(data: dict[str, Any]) -> list[str]:
    """Checks that need no GX: shapes, meta keys, severities, argument sanity GX does not do."""
    problems: list[str] = []
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        return [f"meta: expected an object, got {type(meta).__name__}"]
    if meta.get("severity") is not None and meta.get("severity") not in _SEVERITIES:
        problems.append(f"meta.severity: expected one of {_SEVERITIES}, got {meta.get('severity')!r}")
    dmeta = meta.get("drillbook") or {}
    if not isinstance(dmeta, dict):
        problems.append(f"meta.drillbook: expected an object, got {type(dmeta).__name__}")
        dmeta = {}
    for key in sorted(set(dmeta) - _DRILLBOOK_META_KEYS):
        problems.append(f"meta.drillbook.{key}: unknown key; expected some of {sorted(_DRILLBOOK_META_KEYS)}")
    table = dmeta.get("table")
    if table is not None and (not isinstance(table, str) or not _TABLE_RE.match(table)):
        problems.append(f"meta.drillbook.table: expected 'schema.table', got {table!r}")
    sens = dmeta.get("sensitive_columns", [])
    if not isinstance(sens, list) or not all(isinstance(c, str) for c in sens):
        problems.append(f"meta.drillbook.sensitive_columns: expected a list of column names, got {sens!r}")
    expectations = data.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        problems.append("expectations: expected a non-empty list of {type, kwargs} objects")
        return problems
    for index, exp in enumerate(expectations):
        where = f"expectations[{index}]"
        if not isinstance(exp, dict):
            problems.append(f"{where}: expected an object with 'type' and 'kwargs', got {type(exp).__name__}")
            continue
        etype = exp.get("type")
        where = f"{where} ({etype})" if isinstance(etype, str) else where
        if not isinstance(etype, str) or not etype:
            problems.append(
                f"{where}: 'type' is missing; expected an expectation type like 'expect_column_values_to_not_be_null'"
            )
        if not isinstance(exp.get("kwargs", {}), dict):
            problems.append(f"{where}: 'kwargs' must be an object, got {type(exp.get('kwargs')).__name__}")
            continue
        for key in sorted(set(exp) - _EXPECTATION_KEYS):
            problems.append(f"{where}: unknown key {key!r}; expected some of {sorted(_EXPECTATION_KEYS)}")
        emeta = exp.get("meta") or {}
        if (
            isinstance(emeta, dict)
            and emeta.get("severity") is not None
            and emeta["severity"] not in _SEVERITIES
        ):
            problems.append(
                f"{where}: meta.severity: expected one of {_SEVERITIES}, got {emeta['severity']!r}"
            )
        kwargs = exp.get("kwargs") or {}
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
            problems.append(f"{where}: min_value {lo!r} is greater than max_value {hi!r}; nothing could pass")
        if isinstance(kwargs.get("regex"), str):
            try:
                re.compile(kwargs["regex"])
            except re.error as exc:
                problems.append(f"{where}: regex {kwargs['regex']!r} does not compile: {exc}")
    return problems


def import_gx() -> Any:
    """Import GX quietly: no analytics, its logger at WARNING before and after (import configures it)."""
    import logging

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    return great_expectations


def _build_expectation(exp: dict[str, Any]) -> Any:
    import_gx()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    fields = {
        k: v
        for k, v in exp.items()
        if k in {"type", "kwargs", "meta", "notes", "description", "severity", "id"}
    }
    fields.setdefault("kwargs", {})
    return ExpectationConfiguration(**fields).to_domain_obj()


def _known_types() -> list[str]:
    from great_expectations.expectations.registry import list_registered_expectation_implementations

    return sorted(list_registered_expectation_implementations())


def _pydantic_summary(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).splitlines()[0]
    parts: dict[str, list[str]] = {}
    for err in errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(expectation)"
        msg = str(err.get("msg", "invalid"))
        if msg == "extra fields not permitted":
            msg = "unknown argument"
        elif msg == "field required":
            msg = "required argument is missing"
        parts.setdefault(loc, []).append(msg)
    # pydantic v1 tries each type of a union and reports each miss; one line per argument reads better
    return "; ".join(f"{loc}: {' or '.join(dict.fromkeys(msgs))}" for loc, msgs in parts.items())


def _gx_problems(data: dict[str, Any]) -> list[str]:
    """Build every expectation with GX; unknown types and bad arguments become problems."""
    import_gx()
    from great_expectations.exceptions import ExpectationNotFoundError

    problems: list[str] = []
    for index, exp in enumerate(data.get("expectations") or []):
        if not isinstance(exp, dict) or not isinstance(exp.get("type"), str):
            continue  # already reported by the structural check
        etype = exp["type"]
        try:
            _build_expectation(exp)
        except ExpectationNotFoundError:
            from difflib import get_close_matches  # the error path only

            close = get_close_matches(etype, _known_types(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"expectations[{index}]: unknown expectation type {etype!r}{hint}")
        except Exception as exc:  # GX raises pydantic, TypeError or its own errors
            problems.append(f"expectations[{index}] ({etype}): invalid arguments: {_pydantic_summary(exc)}")
    return problems


def load_suite(suite: str, *, suites_dir: str | os.PathLike[str], gx_check: bool = False) -> LoadedSuite:
    """Read and check one suite; raise ``SuiteInvalid`` listing every problem."""
    path = suite_path(suite, suites_dir)
    data = _read_json(path)
    problems = _structure_problems(data)
    if not problems and gx_check:
        problems = _gx_problems(data)
    if problems:
        raise SuiteInvalid(path, problems)
    meta = data.get("meta") or {}
    dmeta = meta.get("drillbook") or {}
    return LoadedSuite(
        name=str(data.get("name") or path.stem),
        path=path,
        data=data,
        table=dmeta.get("table"),
        sensitive_columns=frozenset(dmeta.get("sensitive_columns") or ()),
        severity=meta.get("severity"),
    )


_MESSAGES: dict[tuple[str, str, bool, bool, tuple[int, int] | None], list[str]] = {}


def suite_messages(suite: str, suites_dir: Path, *, need_table: bool, gx_check: bool = False) -> list[str]:
    """Why the suite named in a catalogue cannot be used (the kinds' catalogue checks call this); empty when it can.

    500 drills naming one suite read and check it once per process: the answer is memoised by the
    suite file's size and mtime, so an edited suite is read again (the DAG processor lives long).
    """
    try:
        st = suite_path(suite, suites_dir).stat()
        stamp: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
    except (OSError, ValueError):
        stamp = None
    key = (suite, str(suites_dir), need_table, gx_check, stamp)
    if stamp is None or key not in _MESSAGES:
        if len(_MESSAGES) > 4096:
            _MESSAGES.clear()
        _MESSAGES[key] = _suite_messages(suite, suites_dir, need_table=need_table, gx_check=gx_check)
    return _MESSAGES[key]


def _suite_messages(suite: str, suites_dir: Path, *, need_table: bool, gx_check: bool) -> list[str]:
    try:
        loaded = load_suite(suite, suites_dir=suites_dir, gx_check=gx_check)
    except SuiteInvalid as exc:
        return [f"suite {suite!r} ({exc.path}): {p}" for p in exc.problems]
    if need_table and not loaded.table:
        return [
            f"suite {suite!r} ({loaded.path}) runs on restored data but names no table: add "
            f'"meta": {{"drillbook": {{"table": "schema.table"}}}} to the suite'
        ]
    return []
