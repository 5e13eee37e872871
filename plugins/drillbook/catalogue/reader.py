"""Read an untrusted YAML or JSON file within bounds, or fail with one ``file:line`` problem.

Rules this module enforces, for every file drillbook reads as configuration
(catalogues, ``--config`` settings files, Great Expectations suites, structure
references), including when Airflow's DAG processor parses the catalogue:

- size: a file larger than ``MAX_BYTES`` (a YAML file: ``MAX_YAML_BYTES``, four times
  a realistic 1,000-drill catalogue) is refused before it is parsed;
- text: bytes are UTF-8 (a UTF-8, UTF-16 or UTF-32 byte-order mark is honoured);
  anything else is a ``file:line`` problem, never a ``UnicodeDecodeError``;
  NUL bytes without a BOM (UTF-16 saved without one) are refused by name;
- nesting: more than ``MAX_DEPTH`` nested collections is refused while the
  file is read, so no parser, validator or walker ever recurses deeper;
- aliases and size: before any node is built, one pass over the parser's events
  (counters only, constant memory) refuses a YAML document whose expansion
  (every alias counted as a copy of what it names) passes ``MAX_NODES`` nodes,
  that defines more than ``MAX_ANCHORS`` anchors or has a key longer than
  ``MAX_KEY_CHARS`` characters, or that holds a second document; an alias to a
  collection that contains it is refused too. The bound on nodes is what bounds
  memory: a hostile document is refused in under a second and 100 MB (measured
  by ``bench/loader_bounds.py``), and only a document within every bound is
  composed, by the library's own (libyaml's) composer;
- YAML scalars follow YAML 1.2's core schema where YAML 1.1 surprises: only
  ``true``/``false`` are booleans (``on``, ``off``, ``yes``, ``no`` stay strings,
  so the documented ``notify: {on: [PASS]}`` is the key ``"on"``; pydantic still
  reads ``enabled: yes`` as a boolean where the model asks for one), and
  ``1:30`` is the string ``"1:30"``, not the sexagesimal integer 90;
- libyaml (``CSafeLoader``) parses when it is installed, PyYAML's Python
  parser otherwise; both keep line numbers.

Problems are raised as ``FileProblem`` carrying path, line and message; each
caller turns it into its own error type (catalogue, suite, settings).
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml import events

# YAML costs far more memory per byte than JSON once composed; defined in names for the summary's reader
from drillbook.catalogue.names import MAX_YAML_BYTES
from drillbook.errors import DrillbookError

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000  # a realistic 1,000-drill catalogue has 61,000 (bench/loader_bounds.py)
MAX_ANCHORS = 10_000
MAX_KEY_CHARS = 1_000


class FileProblem(DrillbookError, ValueError):
    """A file cannot be read as configuration; ``str()`` is ``file:line: where: message``."""

    def __init__(self, path: str, line: int, where: str, message: str):
        self.path, self.line, self.where, self.message = path, line, where, message
        super().__init__(f"{path}:{line}: {where}: {message}")


# -- bytes to text ---------------------------------------------------------------------------------
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: its BOM starts with FF FE too
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]


def read_bytes(path: str | Path, *, max_bytes: int = MAX_BYTES) -> bytes:
    """Read at most ``max_bytes`` of ``path``; refuse a larger file, report a missing one."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise FileProblem(name, 0, "(file)", "file not found") from None
    except IsADirectoryError:
        raise FileProblem(name, 0, "(file)", "is a directory; expected a file") from None
    except OSError as exc:
        raise FileProblem(name, 0, "(file)", f"cannot read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > max_bytes:
        raise FileProblem(name, 0, "(file)", f"larger than {max_bytes // (1024 * 1024)} MiB; refused unread")
    return data


def decode(data: bytes, name: str) -> str:
    """Bytes to text: UTF-8, or the encoding a byte-order mark names; a clear problem otherwise."""
    encoding, body = "utf-8", data
    for bom, codec in _BOMS:
        if data.startswith(bom):
            encoding, body = codec, data[len(bom) :]
            break
    if encoding == "utf-8" and b"\x00" in body:  # before decoding: UTF-16 text is often invalid UTF-8 too
        line = body[: body.index(b"\x00")].count(b"\n") + 1
        raise FileProblem(
            name,
            line,
            "(file)",
            "contains NUL bytes (UTF-16 without a byte-order mark?); save the file as UTF-8",
        )
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as exc:
        before = body[: exc.start]
        line = (
            before.count(b"\n") + 1
            if encoding == "utf-8"
            else before.decode(encoding, "replace").count("\n") + 1
        )
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise FileProblem(
            name,
            line,
            "(file)",
            f"not valid {encoding.upper()}: byte 0x{body[exc.start]:02x} at column {column} cannot be decoded "
            f"(Latin-1 or another legacy encoding?); save the file as UTF-8",
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise FileProblem(name, line, "(file)", "contains NUL characters; a configuration file is text")
    return text


# -- YAML ------------------------------------------------------------------------------------------
class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """Safe loader with YAML 1.2 booleans and numbers; see the module docstring."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}


_DROP = {
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:value",
    "tag:yaml.org,2002:yaml",
}
for _first, _resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items():
    for _tag, _regexp in _resolvers:
        if _tag not in _DROP:
            _Loader.yaml_implicit_resolvers.setdefault(_first, []).append((_tag, _regexp))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|0o[0-7_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_octal_aware_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    value = str(loader.construct_scalar(node)).replace("_", "")
    if value.startswith("0o"):
        return int(value[2:], 8)
    return int(value, 0) if value.startswith("0x") else int(value)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_octal_aware_int)


class _Prescan:
    """Walk the parser's events once, keeping only counters, and refuse a document out of bounds.

    Nothing is built here: each event is dropped as soon as it is counted, so a
    hostile document is refused in constant memory after at most ``max_nodes``
    events, before a single node exists. Only an anchor's expanded size and
    height are kept (and at most ``max_anchors`` of them), so an alias costs a
    dictionary lookup however much it would expand to.
    """

    def __init__(self, name: str, max_depth: int, max_nodes: int, max_anchors: int, max_key_chars: int):
        self.name, self.max_depth, self.max_nodes = name, max_depth, max_nodes
        self.max_anchors, self.max_key_chars = max_anchors, max_key_chars

    def problem(self, mark: Any, message: str) -> FileProblem:
        return FileProblem(self.name, (mark.line + 1) if mark is not None else 0, "(yaml)", message)

    def run(self, loader: Any) -> None:
        total = 0  # nodes so far, every alias counted as a copy of what it names
        anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded size, height) of a complete node
        first_line: dict[str, int] = {}  # anchor -> the line defining it
        # one frame per open collection: [anchor, total before it, its depth, deepest depth under it, items so far, is mapping]
        stack: list[list[Any]] = []
        documents = 0
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind is events.StreamEndEvent:
                return
            if kind is events.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise self.problem(event.start_mark, "expected a single document; found a second '---'")
                continue
            if kind is events.StreamStartEvent or kind is events.DocumentEndEvent:
                continue
            if kind is events.SequenceEndEvent or kind is events.MappingEndEvent:
                anchor, before, depth, deepest, _, _ = stack.pop()
                if anchor is not None:
                    anchors[anchor] = (total - before, deepest - depth + 1)
                if stack and stack[-1][3] < deepest:
                    stack[-1][3] = deepest
                continue
            depth = len(stack) + 1  # the depth of the node this event is; the top-level node is 1
            if stack:
                frame = stack[-1]
                is_key = frame[5] and frame[4] % 2 == 0
                frame[4] += 1
            else:
                is_key = False
            if kind is events.AliasEvent:
                found = anchors.get(event.anchor)
                if found is None:
                    if any(frame[0] == event.anchor for frame in stack):
                        raise self.problem(
                            event.start_mark, f"alias *{event.anchor} refers to a collection that contains it"
                        )
                    raise self.problem(
                        event.start_mark, f"alias *{event.anchor} names no anchor defined before it"
                    )
                size, height = found
            else:
                size, height = 1, 1
                if event.anchor is not None:
                    if (
                        event.anchor in first_line
                    ):  # libyaml's composer would refuse it with "second occurrence"
                        raise self.problem(
                            event.start_mark,
                            f"anchor &{event.anchor} is defined a second time "
                            f"(first on line {first_line[event.anchor]}); rename one",
                        )
                    if len(first_line) >= self.max_anchors:
                        raise self.problem(
                            event.start_mark, f"more than {self.max_anchors:,} anchors; refused"
                        )
                    first_line[event.anchor] = event.start_mark.line + 1
                if kind is events.ScalarEvent:
                    if is_key and len(event.value) > self.max_key_chars:
                        raise self.problem(
                            event.start_mark,
                            f"a key of {len(event.value):,} characters; "
                            f"keys longer than {self.max_key_chars:,} are refused",
                        )
                    if event.anchor is not None:
                        anchors[event.anchor] = (1, 1)
                else:
                    stack.append([event.anchor, total, depth, depth, 0, kind is events.MappingStartEvent])
            total += size
            if total > self.max_nodes:
                raise self.problem(
                    event.start_mark,
                    f"expands to more than {self.max_nodes:,} nodes "
                    f"(aliases count as copies); refused (an alias bomb?)",
                )
            if depth - 1 + height > self.max_depth:
                raise self.problem(event.start_mark, f"nested deeper than {self.max_depth} levels; refused")
            if stack and stack[-1][3] < depth - 1 + height:
                stack[-1][3] = depth - 1 + height


def compose_yaml(
    text: str,
    name: str,
    *,
    walk: Callable[[Any], None] | None = None,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    max_anchors: int = MAX_ANCHORS,
    max_key_chars: int = MAX_KEY_CHARS,
) -> tuple[Any, Any]:
    """Return ``(root node, constructed data)`` of a single-document YAML text, within the bounds.

    ``walk(root)`` runs before construction: constructing merges ``<<`` keys into
    the nodes in place, and a walker looking for duplicate keys must see the
    mappings as written.
    """
    loader = _Loader(text)
    try:
        _Prescan(name, max_depth, max_nodes, max_anchors, max_key_chars).run(loader)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_problem(exc, name) from None
    except yaml.YAMLError as exc:
        raise FileProblem(
            name, 0, "(yaml)", str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        ) from None
    finally:
        loader.dispose()
    loader = _Loader(text)  # within bounds: now the library's composer (libyaml's, in C) builds the nodes
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        if walk is not None:
            walk(root)
        data = loader.construct_document(root)
        return root, data
    except yaml.MarkedYAMLError as exc:
        raise _yaml_problem(exc, name) from None
    except yaml.YAMLError as exc:
        raise FileProblem(
            name, 0, "(yaml)", str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        ) from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.MarkedYAMLError, name: str) -> FileProblem:
    mark = exc.problem_mark or exc.context_mark
    return FileProblem(
        name, (mark.line + 1) if mark else 0, "(yaml)", str(exc.problem or exc.context or "invalid YAML")
    )


def read_yaml(
    path: str | Path, *, text: str | None = None, walk: Callable[[Any], None] | None = None
) -> tuple[Any, Any]:
    """Read, decode and compose a YAML file; ``text`` skips the read (tests, inline catalogues)."""
    name = str(path)
    if text is None:
        text = decode(read_bytes(path, max_bytes=MAX_YAML_BYTES), name)
    return compose_yaml(text, name, walk=walk)


# -- JSON ------------------------------------------------------------------------------------------
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _json_depth_check(text: str, name: str, max_depth: int) -> None:
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        lexeme = match.group()
        if lexeme in "[{":
            depth += 1
            if depth > max_depth:
                line = text.count("\n", 0, match.start()) + 1
                raise FileProblem(name, line, "(json)", f"nested deeper than {max_depth} levels; refused")
        elif lexeme in "]}":
            depth -= 1


def read_json(path: str | Path, *, max_depth: int = MAX_DEPTH) -> Any:
    """Read, decode and parse a JSON file within the bounds."""
    name = str(path)
    text = decode(read_bytes(path), name)
    _json_depth_check(text, name, max_depth)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileProblem(
            name, exc.lineno, "(json)", f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:  # unreachable after the depth check; kept so no traceback can escape
        raise FileProblem(name, 0, "(json)", "nested too deeply; refused") from None
