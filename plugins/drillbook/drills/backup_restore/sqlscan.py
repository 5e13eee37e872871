"""Lex a plain dump as psql does, one readline() piece at a time, and cut it into statements.

Rules this module enforces (what is done with each statement, meta-command and COPY: sqlfilter.py):
- the input is lexed the way psql 14+ lexes it (quotes, dollar quotes, nested
  comments, parentheses, ``BEGIN ATOMIC`` bodies, ``COPY ... FROM stdin`` data
  up to a ``\\.`` line): a data row is never read as a statement;
- a statement longer than ``MAX_STATEMENT`` is refused rather than held; a
  meta-command is kept up to ``MAX_META`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drillbook.drills.backup_restore import sqllex
from drillbook.drills.backup_restore.sqlrules import ESCAPE, Refusal

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


class StatementLexer:
    """psql's lexer as a state machine over readline() pieces; ``StatementFilter`` (sqlfilter.py) judges what it cuts.

    ``StatementFilter.__init__`` sets up the state below, and its methods are the hooks the lexer calls.
    """

    stmt: _Stmt
    line: int
    state: str
    tag: bytes
    depth: int
    paren: int
    begin: int
    heads: list[str]
    idents: int
    copy_tail_check: bool
    meta: bytearray
    meta_line: int
    encoding: bytes
    pin_encoding: bool
    collect: bool
    refusal: Refusal | None

    def _refuse(self, refusal: Refusal) -> None:
        raise NotImplementedError

    def _end_statement(self) -> bytes | None:
        raise NotImplementedError

    def _start_copy(self, data: bytes, i: int, out: bytearray) -> None:
        raise NotImplementedError

    def _end_meta(self) -> None:
        raise NotImplementedError

    # -- the lexer ------------------------------------------------------------------------------
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
