"""What a restored statement may do: the rules behind ``DUMP_LEAVES_DATABASE``.

Rules this module enforces (judged per complete statement, see sqlfilter.py):
- ``SERVER`` statements reach past the target database but stay on the
  server: CREATE/ALTER/DROP DATABASE, ROLE, USER, GROUP; REASSIGN/DROP OWNED;
  role membership GRANT/REVOKE; GRANT, COMMENT or SECURITY LABEL on a
  database, role, tablespace or parameter; functions that act on other
  sessions or the whole server (pg_terminate_backend, replication slots,
  pg_reload_conf ...). Refused on a shared scratch server; allowed inside a
  private ephemeral cluster, which is thrown away afterwards;
- ``ESCAPE`` statements leave the server or outlive the cluster: ALTER
  SYSTEM, tablespaces (a directory on the server's disk), COPY to or from a
  program or a server file, LOAD, CREATE LANGUAGE, C functions outside
  ``$libdir``, untrusted-language and network extensions (dblink,
  postgres_fdw, file_fdw, adminpack, plpython3u, plperlu, pltclu), foreign
  servers, user mappings, subscriptions that connect (all but pg_dump's
  ``CREATE SUBSCRIPTION ... WITH (connect = false ...)`` and ``ALTER
  SUBSCRIPTION ... OWNER TO``, which are SERVER; DROP SUBSCRIPTION
  connects to drop the slot), server-file functions
  (lo_import/lo_export, pg_read_file, pg_ls_dir ...), settings that load
  libraries or run commands, and any change of standard_conforming_strings
  (it changes how strings are read; psql's session is started with it on), and
  client encodings whose multi-byte characters may contain a backslash byte
  (SJIS, BIG5, GBK, GB18030, UHC, JOHAB). Refused everywhere;
- the bodies of DO blocks, functions and procedures are searched for the same
  statements (they run later, or at once for DO).
Dynamic SQL (``EXECUTE 'CRE' || 'ATE ROLE'``) cannot be caught by reading;
that is what the scratch role's missing privileges and the side-effect audit
(audit.py) are for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVER = "server"
ESCAPE = "escape"

_NET_EXTENSIONS = "DBLINK|POSTGRES_FDW|FILE_FDW|ADMINPACK|PLPYTHON3U|PLPYTHONU|PLPYTHON2U|PLPERLU|PLTCLU"
_FILE_FUNCS = (
    r"LO_IMPORT|LO_EXPORT|PG_READ_FILE|PG_READ_BINARY_FILE|PG_LS_DIR|PG_LS_\w*DIR|PG_STAT_FILE|PG_FILE_\w+"
    r"|DBLINK\w*"
)
_SERVER_FUNCS = (
    r"PG_TERMINATE_BACKEND|PG_CANCEL_BACKEND|PG_RELOAD_CONF|PG_ROTATE_LOGFILE|PG_PROMOTE|PG_SWITCH_WAL"
    r"|PG_CREATE_\w+_REPLICATION_SLOT|PG_DROP_REPLICATION_SLOT|PG_CREATE_RESTORE_POINT"
)
_DANGEROUS_SETTINGS = {
    "client_encoding",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
    "dynamic_library_path",
    "archive_command",
    "restore_command",
    "standard_conforming_strings",
}

# (pattern on the statement's code, scope, reason); code is upper-cased tokens joined by spaces.
_STATEMENT_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"^(CREATE|ALTER|DROP) DATABASE\b"), SERVER, "creates, alters or drops a database"),
    (
        re.compile(r"^(CREATE|ALTER|DROP) (ROLE|GROUP|USER(?! MAPPING))\b"),
        SERVER,
        "creates, alters or drops a role",
    ),
    (re.compile(r"^(REASSIGN|DROP) OWNED\b"), SERVER, "changes objects of a role across the server"),
    (
        re.compile(r"^(PREPARE TRANSACTION|COMMIT PREPARED|ROLLBACK PREPARED)\b"),
        SERVER,
        "leaves or ends a prepared transaction (it outlives the session and blocks DROP DATABASE)",
    ),
    (re.compile(r"^(GRANT|REVOKE)\b(?!.*\bON\b)"), SERVER, "grants or revokes role membership (server-wide)"),
    (
        re.compile(r"^(GRANT|REVOKE|COMMENT|SECURITY LABEL)\b.*\bON (DATABASE|ROLE|TABLESPACE|PARAMETER)\b"),
        SERVER,
        "changes a database, role, tablespace or server parameter",
    ),
    (re.compile(rf"\b({_SERVER_FUNCS}) \("), SERVER, "calls a function that acts on the whole server"),
    (re.compile(r"^ALTER SYSTEM\b"), ESCAPE, "changes the server's configuration (ALTER SYSTEM)"),
    (
        re.compile(r"^(CREATE|ALTER|DROP) TABLESPACE\b"),
        ESCAPE,
        "creates, alters or drops a tablespace (a directory on the server)",
    ),
    (
        re.compile(r"^COPY\b(?!.*\b(FROM STDIN|TO STDOUT)\b)"),
        ESCAPE,
        "COPY to or from a program or a server file",
    ),
    (re.compile(r"^LOAD\b"), ESCAPE, "loads a shared library"),
    (
        re.compile(r"^CREATE (OR REPLACE )?(TRUSTED )?(PROCEDURAL )?LANGUAGE\b"),
        ESCAPE,
        "creates a procedural language",
    ),
    (
        re.compile(rf"^CREATE EXTENSION (IF NOT EXISTS )?\"?({_NET_EXTENSIONS})\b", re.I),
        ESCAPE,
        "creates an extension that reaches files, the network or an untrusted language",
    ),
    (
        re.compile(
            r"^(CREATE|ALTER) (SERVER|FOREIGN DATA WRAPPER|USER MAPPING)\b|^IMPORT FOREIGN SCHEMA\b"
            r"|^CREATE SUBSCRIPTION\b(?!.*\bWITH \(.*\bCONNECT = FALSE\b)|^ALTER SUBSCRIPTION (?!\S+ OWNER TO \S+$)"
            r"|^DROP SUBSCRIPTION\b"
        ),
        ESCAPE,
        "connects to another server (foreign server, user mapping or subscription)",
    ),
    # what pg_dump writes for a subscription: created with connect = false (disabled, no slot, no
    # connection) and given an owner; it lives in the server's shared catalogue and blocks DROP DATABASE
    (
        re.compile(r"^(CREATE|ALTER) SUBSCRIPTION\b"),
        SERVER,
        "creates a subscription (a server-wide catalogue entry)",
    ),
    (
        re.compile(rf"\b({_FILE_FUNCS}) \("),
        ESCAPE,
        "calls a function that reads or writes server files or other servers",
    ),
    (
        re.compile(
            r"\b(SESSION_PRELOAD_LIBRARIES|LOCAL_PRELOAD_LIBRARIES|DYNAMIC_LIBRARY_PATH|ARCHIVE_COMMAND|RESTORE_COMMAND)\b"
        ),
        ESCAPE,
        "sets a parameter that loads libraries or runs commands",
    ),
    (
        re.compile(r"^SET (SESSION |LOCAL )?STANDARD_CONFORMING_STRINGS\b(?! (=|TO) (ON|'\?')$)"),
        ESCAPE,
        "changes standard_conforming_strings",
    ),
]
# Searched in the bodies of DO blocks, functions and procedures (upper-cased, whitespace collapsed).
_BODY_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"\b(CREATE|ALTER|DROP) (DATABASE|ROLE|GROUP|USER(?! MAPPING))\b"),
        SERVER,
        "a body that creates, alters or drops a database or role",
    ),
    (
        re.compile(r"\b(REASSIGN|DROP) OWNED\b"),
        SERVER,
        "a body that changes objects of a role across the server",
    ),
    (
        re.compile(rf"\b({_SERVER_FUNCS})\s*\("),
        SERVER,
        "a body that calls a function acting on the whole server",
    ),
    (re.compile(r"\bALTER SYSTEM\b"), ESCAPE, "a body that runs ALTER SYSTEM"),
    (re.compile(r"\b(CREATE|ALTER|DROP) TABLESPACE\b"), ESCAPE, "a body that changes a tablespace"),
    (
        re.compile(r"\bCOPY\b[^;]*?\b(TO|FROM) (PROGRAM\b|E?')"),
        ESCAPE,
        "a body that runs COPY to or from a program or a server file",
    ),
    (re.compile(r"\bLOAD '"), ESCAPE, "a body that loads a shared library"),
    (
        re.compile(rf"\b({_FILE_FUNCS})\s*\("),
        ESCAPE,
        "a body that reads or writes server files or other servers",
    ),
]
_SETS_BY_NAME = re.compile(
    r"\bSET_CONFIG\b|\bPG_SETTINGS\b|^(SET|ALTER|RESET)\b"
)  # a setting named in a string
_SET_ENCODING = re.compile(r"^SET (SESSION |LOCAL )?(CLIENT_ENCODING|NAMES)\b")
_UNSAFE_ENCODINGS = {
    "SJIS",
    "SHIFTJIS2004",
    "BIG5",
    "GBK",
    "GB18030",
    "UHC",
    "JOHAB",
    "WIN932",
    "WIN936",
    "WIN949",
    "WIN950",
    "WIN1361",
    "CP932",
    "CP936",
    "CP949",
    "CP950",
    "MSKANJI",
    "SHIFTJIS",
    "TCVN",
}
# client encodings psql lexes like ASCII (no trail byte below 0x80), as PostgreSQL names them (lower case, alnum only)
_SAFE_ENCODINGS = (
    {
        "utf8",
        "unicode",
        "sqlascii",
        "eucjp",
        "euccn",
        "euckr",
        "euctw",
        "eucjis2004",
        "koi8",
        "koi8r",
        "koi8u",
        "win866",
        "alt",
        "win874",
        "win",
        "muleinternal",
    }
    | {f"latin{i}" for i in range(1, 11)}
    | {f"win{i}" for i in range(1250, 1259)}
    | {f"iso8859{i}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)}
)
_BODY_HOLDERS = re.compile(r"^(DO\b|CREATE (OR REPLACE )?(FUNCTION|PROCEDURE)\b)")
_C_LANGUAGE = re.compile(r"\bLANGUAGE (C|INTERNAL|\"C\"|\"INTERNAL\"|'\?')(?= |$|;)", re.I)
_COPY_STDIN = re.compile(r"^COPY\b.*\bFROM STDIN\b")
_FOLDED_NAME = re.compile(r"^[a-z_][a-z0-9_$]*$")


@dataclass(frozen=True)
class Refusal:
    line: int
    scope: str  # SERVER or ESCAPE
    reason: str
    statement: str  # truncated; string literals elided

    def describe(self) -> str:
        return f"line {self.line}: {self.reason}: {self.statement}"


@dataclass
class Verdict:
    refusal: Refusal | None = None
    copy_from_stdin: bool = False
    created_database: str | None = None
    superuser_role: str | None = None  # ALTER ROLE x WITH SUPERUSER: pg_dumpall's own role comes first
    client_encoding: str | None = None  # SET client_encoding = 'X' (a safe X): psql's encoding from here on


def _excerpt(tokens: list[bytes], limit: int = 160) -> str:
    text = " ".join(t.decode("utf-8", "replace") for t in tokens)
    text = text.replace(" ;", ";").replace("( ", "(").replace(" )", ")").replace(" ,", ",")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _name(token: bytes) -> str:
    text = token.decode("utf-8", "replace")
    return text[1:-1].replace('""', '"') if text.startswith('"') else text.lower()


def _code_token(token: bytes) -> str:
    """Upper-cased code; a quoted identifier the server folds to the same name as a bare one reads as bare
    (``"pg_read_file"(...)`` is pg_read_file); any other quoted name stays quoted."""
    text = token.decode("utf-8", "replace")
    if text[:1] == "'":
        return text
    if text[:1] == '"':
        return text[1:-1].upper() if _FOLDED_NAME.match(text[1:-1]) else text
    return text.upper()


def judge(tokens: list[bytes], strings: list[bytes], *, line: int, scope: str) -> Verdict:
    """Judge one complete statement; ``scope`` is shared, ephemeral or archive."""
    verdict = Verdict()
    if not tokens:
        return verdict
    code = " ".join(_code_token(t) for t in tokens if t != b";")
    if code.startswith("CREATE DATABASE ") and len(tokens) > 2:
        verdict.created_database = _name(tokens[2])
    if (
        code.startswith("ALTER ROLE ")
        and len(tokens) > 3
        and re.match(r"^ALTER ROLE \S+ WITH SUPERUSER\b", code)
    ):
        verdict.superuser_role = _name(tokens[2])
    if _COPY_STDIN.search(code):
        verdict.copy_from_stdin = True

    def refuse(rule_scope: str, reason: str) -> Verdict:
        if rule_scope == SERVER and scope == "ephemeral":
            return verdict
        verdict.refusal = Refusal(line, rule_scope, reason, _excerpt(tokens))
        return verdict

    for rx, rule_scope, reason in _STATEMENT_RULES:
        if rx.search(code):
            result = refuse(rule_scope, reason)
            if result.refusal is not None:
                return result
    if _SET_ENCODING.search(code):
        values = [t.decode("utf-8", "replace") for t in tokens[2:]] + [
            t.decode("utf-8", "replace") for t in strings
        ]
        if any(re.sub(r"[^A-Z0-9]", "", v.upper()) in _UNSAFE_ENCODINGS for v in values):
            return refuse(
                ESCAPE, "switches to a client encoding whose characters may contain a backslash byte"
            )
        named = [
            v
            for v in (
                [t.decode("utf-8", "replace") for t in strings]
                or [t.decode("utf-8", "replace") for t in tokens[3:] if t not in (b"=", b";")]
            )
            if re.fullmatch(r"[A-Za-z0-9_]+", v) and re.sub(r"[^a-z0-9]", "", v.lower()) in _SAFE_ENCODINGS
        ]
        verdict.client_encoding = named[0] if len(named) == 1 else None
    for text in strings if _SETS_BY_NAME.search(code) else ():
        if text.strip().lower().decode("utf-8", "replace") in _DANGEROUS_SETTINGS:
            return refuse(
                ESCAPE, "sets a parameter that loads libraries, runs commands or changes how strings are read"
            )
    if _BODY_HOLDERS.search(code):
        if _C_LANGUAGE.search(code):
            for text in strings:
                path = text.decode("utf-8", "replace")
                if "/" in path and (not path.startswith("$libdir/") or ".." in path):
                    return refuse(ESCAPE, "a C function from a library outside $libdir")
            if "'?'" in code.split("LANGUAGE", 1)[-1][:6]:
                return refuse(ESCAPE, "a function whose language is given as a string")
        for text in strings:
            body = re.sub(r"\s+", " ", text.decode("utf-8", "replace").upper())
            for rx, rule_scope, reason in _BODY_RULES:
                if rx.search(body):
                    result = refuse(rule_scope, reason)
                    if result.refusal is not None:
                        return result
    return verdict
