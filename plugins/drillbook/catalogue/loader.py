"""Load a catalogue file and report every problem as ``file:line: key.path: message``.

Rules: all problems are collected before raising (a user fixes them in one
pass, not one per run), across kinds: YAML duplicates, schema errors, the
cross-field rules of a drill that also has unknown keys (validated again
without them), duplicate names, and the file checks of every drill that
validates; a duplicate YAML key is an error (PyYAML would keep the last one
silently); a problem is always reported against the line of the closest key
that exists in the file, and quotes at most 400 characters of it. The file is
read only through ``catalogue.reader`` (size, encoding, depth and alias bounds).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from drillbook.catalogue.models import Catalogue, catalogue_model, drill_union
from drillbook.catalogue.names import DEFAULT_CATALOGUE, resolve_catalogue_path  # noqa: F401 (re-exported)
from drillbook.catalogue.reader import FileProblem, read_yaml
from drillbook.drills import registry
from drillbook.errors import CatalogueError

Loc = tuple[str | int, ...]


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _LineMap:
    """Line numbers of every key/item in a composed YAML document."""

    def __init__(self) -> None:
        self.lines: dict[Loc, int] = {}
        self.problems: list[tuple[int, Loc, str]] = []

    def walk(self, node: yaml.Node, loc: Loc = ()) -> None:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    self.problems.append(
                        (line, loc + (key,), f"duplicate key {key!r} (first defined on line {seen[key]})")
                    )
                    continue
                seen[key] = line
                self.lines[loc + (key,)] = line
                self.walk(value_node, loc + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines[loc + (index,)] = item.start_mark.line + 1
                self.walk(item, loc + (index,))

    def line_of(self, loc: Loc) -> int:
        """Line of the deepest prefix of ``loc`` present in the file."""
        # pydantic inserts union tags ("backup_restore") into locations; drop parts
        # that do not exist in the document rather than losing the path.
        path: Loc = ()
        for part in loc:
            if path + (part,) in self.lines:
                path = path + (part,)
        return self.lines.get(path, 1)

    def clean_loc(self, loc: Loc) -> Loc:
        path: Loc = ()
        tail: Loc = ()
        tags = _union_tags()
        for part in loc:
            if path + (part,) in self.lines:
                path = path + (part,)
            elif isinstance(part, str) and part in tags:
                continue  # discriminated-union tag
            elif isinstance(part, str) and ("[" in part or part.startswith("function-")):
                continue  # pydantic's internal validator names
            else:
                tail = tail + (part,)
        return path + tail


def _union_tags() -> set[str]:
    """Discriminator values pydantic puts into error locations: every kind's name and its inner tags."""
    return {tag for kind in registry.kinds().values() for tag in (kind.name, *kind.tags)}


_MAX_MESSAGE = 400  # a message quotes the bad value; a hostile file's value may be megabytes


def _cap(message: str) -> str:
    if len(message) <= _MAX_MESSAGE:
        return message
    return f"{message[:_MAX_MESSAGE]}… ({len(message) - _MAX_MESSAGE} more characters not shown)"


def _pydantic_message(err: Any) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    if kind == "extra_forbidden":
        return "unknown key (misspelt? see the catalogue reference in the README)"
    if kind == "missing" or kind == "union_tag_not_found":
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        return f"unknown kind {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg


def _catalogue_problem(exc: FileProblem) -> CatalogueError:
    return CatalogueError([str(exc)])


def _address(value: Any, loc: Loc) -> Loc:
    """``loc`` with the parts that are not in the data (pydantic's union tags) left out."""
    out: Loc = ()
    for part in loc:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            continue
        out = out + (part,)
    return out


def _strip(value: Any, locs: list[Loc]) -> Any:
    """A copy of ``value`` without the keys at ``locs`` (unknown keys, so the rest can be judged)."""
    if not locs:
        return value
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            inner = [loc[1:] for loc in locs if loc and loc[0] == key]
            if any(len(loc) == 0 for loc in inner):
                continue
            out[key] = _strip(child, inner)
        return out
    if isinstance(value, list):
        return [
            _strip(child, [loc[1:] for loc in locs if loc and loc[0] == index])
            for index, child in enumerate(value)
        ]
    return value


def _unknown_keys(item: Any, errors: list[Any]) -> list[Loc]:
    return [_address(item, tuple(e["loc"])) for e in errors if e.get("type") == "extra_forbidden"]


def _drill_errors(item: Any) -> tuple[list[Any], bool]:
    """Validate one drill alone; return its errors and whether it is valid once unknown keys are set aside.

    pydantic runs a model's cross-field rules only when every field is valid, so a
    misspelt key would hide them; validating again without the unknown keys
    reports both in one run.
    """
    adapter: TypeAdapter[Any] = _drill_adapter()
    try:
        adapter.validate_python(item)
        return [], True
    except ValidationError as exc:
        errors = list(exc.errors())
    unknown = _unknown_keys(item, errors)
    if not unknown or len(unknown) != len(errors):
        return errors, False
    stripped = _strip(item, unknown)
    try:
        adapter.validate_python(stripped)
        return errors, True
    except ValidationError as exc:
        seen = {(tuple(e["loc"]), e["msg"]) for e in errors}
        return errors + [e for e in exc.errors() if (tuple(e["loc"]), e["msg"]) not in seen], False


_ADAPTER: tuple[int, TypeAdapter[Any]] | None = None


def _drill_adapter() -> TypeAdapter[Any]:
    """One drill entry's validator, built again when the registered kinds change."""
    global _ADAPTER
    if _ADAPTER is None or _ADAPTER[0] != registry.generation():
        _ADAPTER = (registry.generation(), TypeAdapter(drill_union()))
    return _ADAPTER[1]


def _error_line(lines: _LineMap, raw_loc: Loc, err: Any) -> tuple[int, str]:
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        # point at the discriminator key itself ("kind" / "type"), not the whole item
        raw_loc += (str((err.get("ctx") or {}).get("discriminator", "kind")).strip("'"),)
    loc = lines.clean_loc(raw_loc)
    return lines.line_of(raw_loc), f"{_format_loc(loc)}: {_pydantic_message(err)}"


def load_catalogue(
    path: str | os.PathLike[str] | None = None,
    *,
    text: str | None = None,
    gx_suites: bool = False,
    _data_sink: Callable[[Any], None] | None = None,
) -> Catalogue:
    """Load and validate a catalogue; raise ``CatalogueError`` with every problem.

    Every kind of problem is collected in one run: YAML duplicates, schema
    errors, cross-field rules (also of drills that have unknown keys), and the
    file checks (references, suites) of every drill that validates. The suite
    check builds every expectation with Great Expectations only with
    ``gx_suites=True`` (the entry point passes ``Settings.suite_check_for(...)``,
    i.e. ``DRILLBOOK_SUITE_CHECK=gx``); ``Catalogue.gx_suites_checked`` tells which ran. ``_data_sink`` receives
    the parsed document of a catalogue that loaded without problems (the compiled cache).
    """
    file = resolve_catalogue_path(path)
    name = str(file)
    lines = _LineMap()
    try:
        node, data = read_yaml(file, text=text, walk=lines.walk)
    except FileProblem as exc:
        if exc.message == "file not found":
            exc = FileProblem(exc.path, exc.line, exc.where, "file not found; expected a catalogue YAML file")
        raise _catalogue_problem(exc) from None
    if node is None or data is None:
        raise CatalogueError(
            [f"{name}:1: (top level): the catalogue is empty; expected 'defaults:' and 'drills:'"]
        )
    if not isinstance(data, dict):
        raise CatalogueError(
            [
                f"{name}:1: (top level): expected a mapping with 'defaults' and 'drills', got {type(data).__name__}"
            ]
        )
    problems: list[tuple[int, str]] = [(ln, f"{_format_loc(loc)}: {msg}") for ln, loc, msg in lines.problems]

    drills = data.get("drills") or []
    if isinstance(drills, list):
        first_seen: dict[str, int] = {}
        for index, item in enumerate(drills):
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                dname = item["name"]
                line = lines.line_of(("drills", index, "name"))
                if dname in first_seen:
                    problems.append(
                        (
                            line,
                            f"drills[{index}].name: duplicate drill name {dname!r} (first defined on line {first_seen[dname]})",
                        )
                    )
                else:
                    first_seen[dname] = line

    model = catalogue_model()
    catalogue: Catalogue | None = None
    checked: Catalogue | None = None
    index_of: list[int] = []  # position in ``checked.drills`` -> position in the file
    try:
        catalogue = model.model_validate(data)
        checked, index_of = catalogue, list(range(len(catalogue.drills)))
    except ValidationError as exc:
        drill_errors = [
            e
            for e in exc.errors()
            if len(e["loc"]) >= 2 and e["loc"][0] == "drills" and isinstance(e["loc"][1], int)
        ]
        for err in exc.errors():
            if err not in drill_errors:
                problems.append(_error_line(lines, tuple(err["loc"]), err))
        if isinstance(drills, list):
            good: list[Any] = []
            for index, item in enumerate(drills):
                errors, usable = _drill_errors(item)
                for err in errors:
                    problems.append(_error_line(lines, ("drills", index, *err["loc"]), err))
                if usable:
                    good.append(_strip(item, _unknown_keys(item, errors)))
                    index_of.append(index)
            try:  # the file checks still run for the drills that are valid
                checked = model.model_validate({"drills": good})
            except ValidationError:
                checked = None

    if checked is not None:
        checked._path = file
        checked._gx_suites = gx_suites
        from drillbook.catalogue.checks import run_checks

        for loc, msg in run_checks(checked):
            if len(loc) >= 2 and loc[0] == "drills" and isinstance(loc[1], int) and loc[1] < len(index_of):
                loc = ("drills", index_of[loc[1]], *loc[2:])
            problems.append((lines.line_of(loc), f"{_format_loc(loc)}: {msg}"))

    if problems:
        unique = sorted(dict.fromkeys(problems), key=lambda p: p[0])
        raise CatalogueError([f"{name}:{ln}: {_cap(text_)}" for ln, text_ in unique])
    assert catalogue is not None
    catalogue._path, catalogue._gx_suites = file, gx_suites
    if _data_sink is not None:
        _data_sink(data)
    return catalogue
