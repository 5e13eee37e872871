"""Load a catalogue file and report every problem as ``file:line: key.path: message``.

Rules: all problems are collected before raising (a user fixes them in one
pass, not one per run); a duplicate YAML key is an error (PyYAML would keep the
last one silently); a problem is always reported against the line of the
closest key that exists in the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from drillbook.catalogue.models import Catalogue
from drillbook.errors import CatalogueError

Loc = tuple[str | int, ...]

#: The shipped catalogue; ``DRILLBOOK_CATALOGUE`` overrides it.
DEFAULT_CATALOGUE = Path(__file__).resolve().parents[3] / "include" / "drills.yaml"


def resolve_catalogue_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the catalogue path: argument, else $DRILLBOOK_CATALOGUE, else include/drills.yaml."""
    if path:
        return Path(path)
    env = os.environ.get("DRILLBOOK_CATALOGUE")
    if env:
        return Path(env)
    return DEFAULT_CATALOGUE


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
                    self.problems.append((line, loc + (key,), f"duplicate key {key!r} (first defined on line {seen[key]})"))
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
        for part in loc:
            if path + (part,) in self.lines:
                path = path + (part,)
            elif isinstance(part, str) and part in {"backup_restore", "data_quality", "certificates", "alert_path", "slack", "sns_sqs", "webhook"}:
                continue  # discriminated-union tag
            elif isinstance(part, str) and ("[" in part or part.startswith("function-")):
                continue  # pydantic's internal validator names
            else:
                tail = tail + (part,)
        return path + tail


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


def load_catalogue(path: str | os.PathLike[str] | None = None, *, text: str | None = None) -> Catalogue:
    """Load and validate a catalogue; raise ``CatalogueError`` with every problem."""
    file = resolve_catalogue_path(path)
    name = str(file)
    if text is None:
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CatalogueError([f"{name}:0: (file): file not found; expected a catalogue YAML file"]) from None
        except OSError as exc:
            raise CatalogueError([f"{name}:0: (file): cannot read: {exc}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogueError([f"{name}:{line}: (yaml): {problem}"]) from None
    if node is None or data is None:
        raise CatalogueError([f"{name}:1: (top level): the catalogue is empty; expected 'defaults:' and 'drills:'"])
    if not isinstance(data, dict):
        raise CatalogueError([f"{name}:1: (top level): expected a mapping with 'defaults' and 'drills', got {type(data).__name__}"])

    lines = _LineMap()
    lines.walk(node)
    problems: list[tuple[int, str]] = [(ln, f"{_format_loc(loc)}: {msg}") for ln, loc, msg in lines.problems]

    drills = data.get("drills") or []
    if isinstance(drills, list):
        first_seen: dict[str, int] = {}
        for index, item in enumerate(drills):
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                dname = item["name"]
                line = lines.line_of(("drills", index, "name"))
                if dname in first_seen:
                    problems.append((line, f"drills[{index}].name: duplicate drill name {dname!r} (first defined on line {first_seen[dname]})"))
                else:
                    first_seen[dname] = line

    catalogue: Catalogue | None = None
    try:
        catalogue = Catalogue.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            raw_loc = tuple(err["loc"])
            if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
                # point at the discriminator key itself ("kind" / "type"), not the whole item
                raw_loc += (str((err.get("ctx") or {}).get("discriminator", "kind")).strip("'"),)
            loc = lines.clean_loc(raw_loc)
            problems.append((lines.line_of(raw_loc), f"{_format_loc(loc)}: {_pydantic_message(err)}"))

    if catalogue is not None:
        catalogue._path = file
        from drillbook.catalogue.checks import run_checks

        for loc, msg in run_checks(catalogue):
            problems.append((lines.line_of(loc), f"{_format_loc(loc)}: {msg}"))

    if problems:
        problems.sort(key=lambda p: p[0])
        raise CatalogueError([f"{name}:{ln}: {text_}" for ln, text_ in problems])
    assert catalogue is not None
    return catalogue
