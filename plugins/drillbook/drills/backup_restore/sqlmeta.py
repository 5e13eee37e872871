"""What a psql meta-command in a restored dump may do: the backslash rules behind ``DUMP_LEAVES_DATABASE``.

Rules this module enforces (judged per meta-command, see sqlfilter.py):
- meta-commands: only ``\\restrict``/``\\unrestrict KEY`` and ``\\encoding NAME`` (a safe
  encoding, as for SET client_encoding) on a line of their own;
  inside an ephemeral cluster also ``\\connect`` to a database name.
- any other meta-command, and any meta-command inside an unfinished statement,
  is refused (``ESCAPE``; a ``\\connect`` on a shared server is ``SERVER``).
"""

from __future__ import annotations

import re

from drillbook.drills.backup_restore.sqlrules import _UNSAFE_ENCODINGS, ESCAPE, SERVER, Refusal

_RESTRICT = re.compile(r"^(restrict|unrestrict)\s+[A-Za-z0-9]+\s*$")
_ENCODING_META = re.compile(r"^encoding\s+([A-Za-z0-9_]+)\s*$")
_CONNECT = re.compile(r"^(c|connect)(\s+|$)")
_ARG_WORD = re.compile(r'\s*((?:"(?:[^"]|"")*"|[^\s"]+)+)')
_QUOTED_ARG = re.compile(r'^"((?:[^"]|"")*)"$')
_PLAIN_NAME = re.compile(r"^[\w.$-]+$")  # no backquote (shell), colon (psql variable) or quote
_CONNINFO_DBNAME = re.compile(r"""^dbname\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)$""")


def _connect_args(text: str) -> list[str]:
    """psql's words after ``\\connect``: a double-quoted part keeps its spaces (pg_dump writes
    ``"dbname='my db'"``); an unterminated quote gives a word that no rule accepts."""
    rest = _CONNECT.sub("", text, count=1)
    words, pos = [], 0
    for m in _ARG_WORD.finditer(rest):
        if rest[pos : m.start()].strip():
            return ["="]
        words.append(m.group(1))
        pos = m.end()
    return words if not rest[pos:].strip() else ["="]


def judge_meta(text: str, *, line: int, scope: str, pending: bool) -> tuple[Refusal | None, str | None]:
    """Judge one psql meta-command (``text`` without its backslash): (refusal, database connected to)."""
    shown = "\\" + (text if len(text) <= 80 else text[:79] + "…")
    if pending:
        return Refusal(line, ESCAPE, "a psql meta-command inside an unfinished statement", shown), None
    if _RESTRICT.match(text):
        return None, None
    enc = _ENCODING_META.match(text)
    if enc:  # pg_dump -C writes "\encoding SQL_ASCII" before a \connect to a name it must quote
        if re.sub(r"[^A-Z0-9]", "", enc.group(1).upper()) in _UNSAFE_ENCODINGS:
            return Refusal(
                line,
                ESCAPE,
                "switches to a client encoding whose characters may contain a backslash byte",
                shown,
            ), None
        return None, None
    if scope == "ephemeral" and _CONNECT.match(text):
        args = _connect_args(text)
        if args and args[0].startswith("-reuse-previous="):
            args = args[1:]
        if len(args) == 1:
            # psql expands `backquotes` (a shell command) and :variables in an unquoted argument,
            # nothing inside double quotes: only a plain name, or one double-quoted word, is read
            # here as psql will read it (pg_dump writes one of the two).
            target = args[0]
            quoted = _QUOTED_ARG.match(target)
            if quoted:
                target = quoted.group(1).replace('""', '"')
            elif not _PLAIN_NAME.match(target):
                target = "="  # refused below
            m = _CONNINFO_DBNAME.match(target)
            if m:
                value = m.group(1)
                target = (
                    value[1:-1].replace("\\'", "'").replace("\\\\", "\\") if value.startswith("'") else value
                )
            if "=" not in target and "\\" not in target and "/" not in target:
                return None, target
        return Refusal(
            line,
            ESCAPE,
            "\\connect with more than a database name (host, port, user or other keywords)",
            shown,
        ), None
    what = "a psql meta-command that leaves the database (pg_dump writes none but \\restrict)"
    if re.match(r"^(c|connect)\b", text):
        what = "\\connect to another database"
    elif text.startswith("!"):
        what = "a shell command (\\!)"
    elif re.match(
        r"^(o|out|w|write|copy|i|ir|include|include_relative|g|gx|gexec|gset|set|setenv|lo_\w+)\b", text
    ):
        what = "a psql meta-command that reads or writes files, runs programs or sets variables"
    return Refusal(
        line, ESCAPE if scope == "ephemeral" or not what.startswith("\\connect") else SERVER, what, shown
    ), None
