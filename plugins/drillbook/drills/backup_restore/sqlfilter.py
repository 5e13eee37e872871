"""A streaming filter between a plain dump and psql's stdin: nothing that could leave the scratch database passes.

Rules this module enforces (principle 6: a plain SQL dump is a program):
- the input is lexed the way psql 14+ lexes it (quotes, dollar quotes, nested
  comments, parentheses, ``BEGIN ATOMIC`` bodies, ``COPY ... FROM stdin`` data
  up to a ``\\.`` line): a data row is never read as a statement;
- a statement is held until it is complete and judged (``sqlrules``); only a
  statement that passed is written on, so psql never holds part of a refused
  statement (psql would run an unterminated statement at end of input);
- every psql meta-command (a backslash outside quotes and COPY data) is
  refused except the few pg_dump writes: ``\\restrict``/``\\unrestrict`` with a
  plain key, and, inside a private ephemeral cluster only, ``\\connect`` to a
  database *name* (no host, port or other connection keyword);
- after the first refusal nothing more is written (psql's stdin is closed);
- memory is bounded by the longest statement (``MAX_STATEMENT``, refused when
  exceeded), never by the dump: SQL is read a whole line at a time, COPY data
  in blocks of whole rows or pieces of at most ``PIECE`` bytes;
- with ``pin_encoding`` (the feed to psql) psql cannot drift from this lexer
  when dynamic SQL switches the session to SJIS or standard_conforming_strings
  off: `` \\encoding ENC \\\\`` follows each statement on its line, a ``'...'``
  string holding a backslash is fed as ``E'...'``; COPY rows are put under
  ``\\if :ERROR`` so that psql skips them when the COPY failed to start;
- a bare ``:NAME`` psql variable (LAST_ERROR_MESSAGE is text the dump chose)
  and a NUL byte (psql joins the next line) are refused; ``--`` comments end
  at ``\\r`` too (sqllex.py: the patterns, as psql reads them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from drillbook.drills.backup_restore import sqllex, sqlrules
from drillbook.drills.backup_restore.sqlrules import ESCAPE, SERVER, Refusal

PIECE = 1 << 16  # bytes read per readline() call
MAX_STATEMENT = 64 << 20  # a longer statement is refused rather than held
MAX_META = 4096

_FUNC_HEADS = {b"CREATE": "c", b"FUNCTION": "f", b"PROCEDURE": "p", b"OR": "o", b"REPLACE": "r"}


@dataclass
class _Stmt:
    raw: list[bytes] = field(default_factory=list)
    size: int = 0
    tokens: list[bytes] = field(default_factory=list)  # code tokens; strings appear as b"'?'"
    strings: list[bytes] = field(default_factory=list)
    start_line: int = 0
    rewrites: list[tuple[int, int, bool]] = field(default_factory=list)  # '...\\...' strings to feed as E''


class StatementFilter:
    """Feed lines with ``feed``; it returns the bytes safe to pass on, and sets ``refusal`` when it stops.

    ``scope`` is what is refused: ``"shared"`` (server-wide and escaping
    statements and every meta-command but \\restrict), ``"ephemeral"`` (escaping
    statements only; \\connect to a database name allowed). ``metas=False``
    ignores meta-commands: SQL written by ``pg_restore -f`` for an archive,
    which ``pg_restore -d`` runs without psql. With ``collect=True`` it keeps
    going after a refusal and lists up to 20.
    """

    def __init__(
        self, scope: str = "shared", *, collect: bool = False, metas: bool = True, pin_encoding: bool = False
    ):
        self.scope = scope
        self.pin_encoding = pin_encoding
        self.encoding = b"UTF8"  # what psql's client encoding should be: the dump's last SET client_encoding
        self.collect = collect
        self.metas = metas
        self.refusal: Refusal | None = None
        self.refusals: list[Refusal] = []
        self.created_databases: list[str] = []
        self.connects: list[str] = []
        self.superusers: list[str] = []
        self.line = 1
        self.state = "normal"
        self.tag = b""
        self.depth = 0
        self.paren = 0
        self.begin = 0
        self.heads: list[str] = []
        self.idents = 0
        self.stmt = _Stmt(start_line=1)
        self.copy = False
        self.copy_line_start = True
        self.copy_backslash = False
        self.copy_tail_check = False  # the rest of the line after "COPY ... FROM stdin;" must be blank
        self.meta = bytearray()
        self.meta_line = 0
        self.statements = 0

    # -- public ---------------------------------------------------------------------------------
    def feed(self, piece: bytes) -> bytes:
        """Judge one readline() piece (a whole line, or part of a long one); return what may go to psql."""
        if self.refusal is not None and not self.collect:
            return b""
        if b"\0" in piece:
            # psql reads lines with fgets() and strlen(): a NUL cuts its line short and joins the
            # next line to it, so psql would read what follows differently from this lexer.
            # PostgreSQL text cannot hold a NUL and pg_dump never writes one.
            self._refuse(
                Refusal(
                    self.line,
                    ESCAPE,
                    "a NUL byte (psql would read the lines around it differently)",
                    piece[:80].replace(b"\0", b"\\0").decode("utf-8", "replace"),
                )
            )
            if not self.collect:
                return b""
        if self.copy:
            return self._copy_piece(piece)
        out = bytearray()
        self._lex(piece, out)
        return bytes(out) if (self.refusal is None or self.collect) else b""

    def finish(self) -> bytes:
        """End of input: an unterminated statement is judged too (psql would run it)."""
        if self.refusal is not None and not self.collect:
            return b""
        if self.state == "meta":
            self._end_meta()
            if self.refusal is not None and not self.collect:
                return b""
        if self.copy:
            return b""
        if self.stmt.tokens:
            return self._end_statement() or b""
        return b"".join(self.stmt.raw)

    # -- COPY data ------------------------------------------------------------------------------
    def _copy_piece(self, piece: bytes) -> bytes:
        if self.copy_line_start and piece in (b"\\.\n", b"\\.\r\n"):
            self.copy = False
            self.line += 1
            # closes the \if the COPY line opened (see _lex), at the start of the next line: no line is added
            prefix = b"\\endif \\\\ " if self.pin_encoding else b""
            self.stmt = _Stmt(raw=[prefix] if prefix else [], size=len(prefix), start_line=self.line)
            return piece
        if b"\\" in piece or self.copy_backslash:
            # psql reads these lines as commands when the COPY itself failed (a missing
            # table): only the escapes pg_dump writes may appear, none of which is a
            # harmful meta-command (\N, \t, \n, \r, \b, \f, \v, \\, octal, \x).
            text = (b"\\" if self.copy_backslash else b"") + piece
            self.copy_backslash = False
            for m in sqllex.DATA_ESCAPE.finditer(text):
                if m.group(1) == b"" and m.end() == len(text):
                    self.copy_backslash = True  # the pair continues in the next piece
                elif m.group(1) == b"" or m.group(1) not in sqllex.DATA_ESCAPES_B:
                    self._refuse(
                        Refusal(
                            self.line,
                            ESCAPE,
                            "a backslash sequence in COPY data that psql would run as a "
                            "command if the COPY failed",
                            text[:80].decode("utf-8", "replace"),
                        )
                    )
                    if not self.collect:
                        return b""
                    break
        self.copy_line_start = piece.endswith(b"\n")
        if self.copy_line_start:
            self.line += 1
        return piece

    # -- the lexer ------------------------------------------------------------------------------
    def _refuse(self, refusal: Refusal) -> None:
        if len(self.refusals) < 20:
            self.refusals.append(refusal)
        if self.refusal is None:
            self.refusal = refusal

    def _lex(self, data: bytes, out: bytearray) -> None:
        i, n = 0, len(data)
        st = self.stmt
        st.raw.append(data)
        st.size += n
        if st.size > MAX_STATEMENT:
            self._refuse(
                Refusal(
                    st.start_line,
                    ESCAPE,
                    f"a statement longer than {MAX_STATEMENT >> 20} MiB cannot be judged",
                    "",
                )
            )
            return
        while i < n:
            if self.refusal is not None and not self.collect:
                return
            state = self.state
            if state == "normal":
                m = sqllex.NORMAL.match(data, i)
                assert m is not None
                kind, text, i = m.lastgroup, m.group(), m.end()
                if kind == "ws":
                    self.line += text.count(b"\n")
                    if self.copy_tail_check and b"\n" in text:
                        self.copy_tail_check = False
                        self._start_copy(data, i, out)
                        return
                    continue
                if not st.tokens:
                    st.start_line = self.line
                if self.copy_tail_check:
                    self._refuse(
                        Refusal(
                            self.line,
                            ESCAPE,
                            "text after 'COPY ... FROM stdin;' on the same line",
                            text.decode("utf-8", "replace"),
                        )
                    )
                    self.copy_tail_check = False
                if kind == "var" and sqllex.PSQL_VARIABLE.match(text[1:]):
                    # psql puts a variable's value in place and lexes it: LAST_ERROR_MESSAGE is text the
                    # dump chose (RAISE EXCEPTION '\\! ...'), so ":LAST_ERROR_MESSAGE" can become a meta-command
                    self._refuse(
                        Refusal(
                            self.line,
                            ESCAPE,
                            "a psql variable reference (psql would put text the dump chose here)",
                            text.decode("utf-8", "replace"),
                        )
                    )
                if kind == "uesc":
                    self._refuse(
                        Refusal(
                            self.line,
                            ESCAPE,
                            "a Unicode-escape (U&) identifier or string: the rules "
                            "would read another name than the server (pg_dump never writes one)",
                            text.decode("utf-8", "replace"),
                        )
                    )
                    self.state, self._str = ("dq" if text.endswith(b'"') else "sq"), bytearray()
                elif kind == "lc":
                    self.state = "lc"
                elif kind == "bc":
                    self.state, self.depth = "bc", 1
                elif kind in ("sq", "es", "dq"):
                    self.state, self._str = kind, bytearray()
                    if kind == "sq":  # where it starts, and whether it is glued to a word (N'', B'', DATE'')
                        glued = i >= 2 and bool(sqllex.WORD_BYTE.match(data, i - 2))
                        self._sq = (
                            st.size - n + i - 1,
                            glued,
                            st.tokens[-1].upper() if glued and st.tokens else b"",
                        )
                elif kind == "dol":
                    self.state, self.tag, self._str = "dol", text, bytearray()
                elif kind == "meta":
                    self.state, self.meta, self.meta_line = "meta", bytearray(), self.line
                elif kind == "semi":
                    st.tokens.append(b";")
                    if self.paren == 0 and self.begin == 0:
                        cut = sum(len(r) for r in st.raw) - (n - i)
                        whole = b"".join(st.raw)
                        st.raw = [whole[:cut]]
                        passed = self._end_statement()
                        if passed is not None:
                            out += passed
                            if self.pin_encoding:
                                # code the statement ran may have switched the client encoding; the rows of a COPY
                                # that failed (no table) would run as SQL: \if :ERROR skips them up to \endif
                                guard = b" \\if :ERROR \\\\ \\else \\\\" if self.copy_tail_check else b""
                                out += guard + b" \\encoding " + self.encoding + b" \\\\"
                        self.stmt = st = _Stmt(raw=[data[i:]], size=n - i, start_line=self.line)
                else:
                    if kind == "lp":
                        self.paren += 1
                    elif kind == "rp":
                        self.paren = max(0, self.paren - 1)
                    elif kind == "ident":
                        self._ident(text.upper())
                    st.tokens.append(text)
            elif state == "lc":
                m = sqllex.LINE_END.search(data, i)  # psql ends a -- comment at \r too (non_newline [^\n\r])
                i = n if m is None else m.start()  # the newline itself is whitespace in normal state
                if m is not None:
                    self.state = "normal"
            elif state == "bc":
                m = sqllex.BLOCK.search(data, i)
                if m is None:
                    self.line += data.count(b"\n", i)
                    i = n
                    continue
                self.line += data.count(b"\n", i, m.start())
                i = m.end()
                self.depth += 1 if m.group() == b"/*" else -1
                if self.depth == 0:
                    self.state = "normal"
            elif state in ("sq", "dq"):
                q = b"'" if state == "sq" else b'"'
                j = data.find(q, i)
                if j < 0:
                    self._str += data[i:]
                    self.line += data.count(b"\n", i)
                    i = n
                    continue
                self._str += data[i:j]
                self.line += data.count(b"\n", i, j)
                if j + 1 < n and data[j + 1 : j + 2] == q:
                    self._str += q
                    i = j + 2
                    continue
                i = j + 1
                if state == "sq" and b"\\" in self._str:
                    self._backslash_string(st.size - n + j)
                self._close_string(state)
            elif state == "es":
                m = sqllex.ESTRING_END.search(data, i)
                if m is None:
                    self._str += data[i:]
                    self.line += data.count(b"\n", i)
                    i = n
                    continue
                self._str += data[i : m.start()]
                self.line += data.count(b"\n", i, m.end())
                i = m.end()
                if m.group() == b"'":
                    if data[i : i + 1] == b"'":
                        self._str += b"'"
                        i += 1
                        continue
                    self._close_string("es")
                else:
                    self._str += m.group()  # decoded when the string closes (sqllex.decode_e)
            elif state == "dol":
                j = data.find(self.tag, i)
                if j < 0:
                    self._str += data[i:]
                    self.line += data.count(b"\n", i)
                    i = n
                    continue
                self._str += data[i:j]
                self.line += data.count(b"\n", i, j)
                i = j + len(self.tag)
                self._close_string("dol")
            elif state == "meta":
                j = data.find(b"\n", i)
                part = data[i:] if j < 0 else data[i:j]
                self.meta += part[: max(0, MAX_META - len(self.meta))]
                if j < 0:
                    i = n
                    continue
                i = j
                self._end_meta()
                if self.refusal is None or self.collect:
                    # an allowed meta-command is on a line of its own: pass the held text through it
                    whole = b"".join(st.raw)
                    cut = len(whole) - (n - i)
                    out += whole[:cut]
                    self.stmt = st = _Stmt(raw=[data[i:]], size=n - i, start_line=self.line)

    def _backslash_string(self, end: int) -> None:
        """A '...' string holding a backslash: its extent depends on standard_conforming_strings, which code
        the dump ran may have switched off (psql follows the server). Fed to psql as E'...' with the
        backslashes doubled, it reads the same either way; N''/B''/X'' with a backslash are refused."""
        start, glued, word = self._sq
        if word in (b"N", b"B", b"X"):
            self._refuse(
                Refusal(
                    self.line,
                    ESCAPE,
                    "a backslash in an N'', B'' or X'' string (pg_dump writes none)",
                    word.decode() + "'?'",
                )
            )
            return
        self.stmt.rewrites.append((start, end, glued))

    def _close_string(self, kind: str) -> None:
        self.state = "normal"
        if kind == "dq":
            self.stmt.tokens.append(b'"' + bytes(self._str) + b'"')
        else:
            self.stmt.tokens.append(b"'?'")
            self.stmt.strings.append(sqllex.decode_e(bytes(self._str)) if kind == "es" else bytes(self._str))

    def _ident(self, word: bytes) -> None:
        """psql's BEGIN ... END tracking inside CREATE [OR REPLACE] FUNCTION|PROCEDURE (psqlscan.l)."""
        if self.idents < 4:
            self.heads.append(_FUNC_HEADS.get(word, ""))
        self.idents += 1
        h = self.heads + [""] * 4
        in_func = h[0] == "c" and (h[1] in ("f", "p") or (h[1] == "o" and h[2] == "r" and h[3] in ("f", "p")))
        if in_func and self.paren == 0:
            if word == b"BEGIN":
                self.begin += 1
            elif word == b"CASE" and self.begin >= 1:
                self.begin += 1
            elif word == b"END" and self.begin > 0:
                self.begin -= 1

    def _end_statement(self) -> bytes | None:
        st = self.stmt
        self.statements += 1
        self.paren = self.begin = self.idents = 0
        self.heads = []
        verdict = sqlrules.judge(st.tokens, st.strings, line=st.start_line, scope=self.scope)
        if verdict.superuser_role:
            self.superusers.append(verdict.superuser_role)
        if verdict.created_database:
            self.created_databases.append(verdict.created_database)
        if verdict.client_encoding:
            self.encoding = verdict.client_encoding.encode()
        if verdict.refusal is not None:
            self._refuse(verdict.refusal)
            if not self.collect:
                return None
        if verdict.copy_from_stdin:
            self.copy_tail_check = True
        whole = b"".join(st.raw)
        if self.pin_encoding:
            for start, end, glued in reversed(st.rewrites):
                whole = (
                    whole[:start]
                    + (b" " if glued else b"")
                    + b"E'"
                    + whole[start + 1 : end].replace(b"\\", b"\\\\")
                    + b"'"
                    + whole[end + 1 :]
                )
        return whole

    def _start_copy(self, data: bytes, i: int, out: bytearray) -> None:
        """The line holding ``COPY ... FROM stdin;`` ended: pass it on; what follows is data."""
        st = self.stmt
        whole = b"".join(st.raw)
        out += whole[: len(whole) - (len(data) - i)]
        self.copy, self.copy_line_start = True, True
        rest = data[i:]
        self.stmt = _Stmt(start_line=self.line)
        if rest:
            out += self._copy_piece(rest)

    def _end_meta(self) -> None:
        self.state = "normal"
        text = bytes(self.meta).decode("utf-8", "replace").rstrip("\r")
        if not self.metas:
            return
        pending = any(t != b";" for t in self.stmt.tokens)
        refusal, connect = sqlrules.judge_meta(text, line=self.meta_line, scope=self.scope, pending=pending)
        if connect:
            self.connects.append(connect)
        enc = re.match(r"^encoding\s+([A-Za-z0-9_]+)\s*$", text)
        if enc and refusal is None:
            self.encoding = enc.group(1).encode()
        if refusal is not None:
            self._refuse(refusal)


__all__ = ["ESCAPE", "SERVER", "Refusal", "StatementFilter"]
