"""A streaming filter between a plain dump and psql's stdin: nothing that could leave the scratch database passes.

Rules this module enforces (principle 6: a plain SQL dump is a program):
- a statement is held until it is complete and judged (``sqlrules``); only a
  statement that passed is written on, so psql never holds part of a refused
  statement (psql would run an unterminated statement at end of input);
- every psql meta-command (a backslash outside quotes and COPY data) is
  refused except the few pg_dump writes: ``\\restrict``/``\\unrestrict`` with a
  plain key, and, inside a private ephemeral cluster only, ``\\connect`` to a
  database *name* (no host, port or other connection keyword);
- after the first refusal nothing more is written (psql's stdin is closed);
- memory is bounded by the longest statement (``MAX_STATEMENT``, sqlscan.py),
  never by the dump: SQL is read a whole line at a time, COPY data in blocks of
  whole rows or pieces of at most ``PIECE`` bytes;
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

from drillbook.drills.backup_restore import sqllex, sqlmeta, sqlrules
from drillbook.drills.backup_restore.sqlrules import ESCAPE, SERVER, Refusal
from drillbook.drills.backup_restore.sqlscan import StatementLexer, _Stmt

PIECE = 1 << 16  # bytes read per readline() call


class StatementFilter(StatementLexer):
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

    # -- judging -------------------------------------------------------------------------------
    def _refuse(self, refusal: Refusal) -> None:
        if len(self.refusals) < 20:
            self.refusals.append(refusal)
        if self.refusal is None:
            self.refusal = refusal

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
        refusal, connect = sqlmeta.judge_meta(text, line=self.meta_line, scope=self.scope, pending=pending)
        if connect:
            self.connects.append(connect)
        enc = re.match(r"^encoding\s+([A-Za-z0-9_]+)\s*$", text)
        if enc and refusal is None:
            self.encoding = enc.group(1).encode()
        if refusal is not None:
            self._refuse(refusal)


__all__ = ["ESCAPE", "SERVER", "Refusal", "StatementFilter"]
