"""How psql splits a plain dump into tokens: the patterns the statement filter lexes with.

Rule this module enforces: every pattern here reads the bytes as psql 14+ does
(psqlscan.l) for the cases that matter to what psql runs: whitespace includes
\\f and \\v, a ``--`` comment ends at \\r or \\n, dollar tags and identifiers take
bytes >= 0x80, ``::`` is a cast and ``:NAME`` a variable, ``U&`` opens a
Unicode-escape literal; and ``decode_e`` gives an ``E'...'`` string's value as
the server reads it (octal, hex and Unicode escapes), so rules judge values, not
spellings.
"""

from __future__ import annotations

import re

NORMAL = re.compile(
    rb"""(?P<ws>[ \t\r\n\f\v]+)|(?P<lc>--)|(?P<bc>/\*)|(?P<es>[eE]')|(?P<uesc>[uU]&['"])|(?P<sq>')|(?P<dq>")"""
    rb"""|(?P<dol>\$(?:[A-Za-z\x80-\xff_][A-Za-z0-9\x80-\xff_]*)?\$)"""
    rb"""|(?P<ident>[A-Za-z\x80-\xff_][A-Za-z0-9\x80-\xff_$]*)|(?P<num>[0-9][0-9.]*)"""
    rb"""|(?P<meta>\\)|(?P<cast>::)|(?P<var>:[A-Za-z\x80-\xff_0-9]+)|(?P<semi>;)|(?P<lp>\()|(?P<rp>\))|(?P<other>[^ \t\r\n\f\v\-/eE'"$A-Za-z\x80-\xff_0-9\\;()]+|.)""",  # noqa: E501 (one regex alternative per line)
    re.S,
)
DATA_ESCAPE = re.compile(rb"\\(.?)", re.S)
DATA_ESCAPES = set(b"Ntnrbfvx\\01234567")
DATA_ESCAPES_B = {bytes([c]) for c in DATA_ESCAPES}
BLOCK = re.compile(rb"/\*|\*/")
LINE_END = re.compile(rb"[\r\n]")
WORD_BYTE = re.compile(rb"[A-Za-z0-9\x80-\xff_$]")
PSQL_VARIABLE = re.compile(rb"^[A-Z_][A-Z0-9_]*$")  # psql's own variables; pg_dump writes lower-case names
ESTRING_END = re.compile(rb"\\.|'", re.S)


E_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", re.S)
E_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t"}


def decode_e(raw: bytes) -> bytes:
    """The value of an ``E'...'`` string as the server reads it (octal, hex and Unicode escapes included)."""

    def one(m: re.Match[bytes]) -> bytes:
        esc = m.group(1)
        if esc[:1] == b"x":
            return bytes([int(esc[1:], 16)])
        if esc[:1] in b"01234567" and esc[:1] != b"":
            return bytes([int(esc, 8) & 0xFF])
        if esc[:1] in (b"u", b"U") and len(esc) > 1:
            try:
                return chr(int(esc[1:], 16)).encode("utf-8")
            except (ValueError, OverflowError):
                return b"?"
        return E_SIMPLE.get(esc, esc)

    return E_ESCAPE.sub(one, raw)
