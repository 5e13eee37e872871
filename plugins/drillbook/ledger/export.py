"""Serve auditors: list and export evidence records, streaming, with everything needed to re-verify.

Rules this module enforces:
- exports stream through PostgreSQL's ``COPY ... TO STDOUT`` in chunks, for
  CSV and JSON alike; no export holds the table in memory, and the server
  writes the bytes (the stored result JSON text is copied, never re-serialised);
- an export carries every hashed column in its canonical text form
  (``recorded_at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, ``controls`` as a JSON
  array, ``result`` as JSON) plus ``prev_hash`` and ``hash``, so an auditor can
  recompute each hash offline (``drillbook evidence verify --file``);
- JSON exports put one record per line inside the array, so they can be read
  back line by line as well as with any JSON parser;
- records come out in chain order (``seq`` ascending);
- a filtered export also carries a link row (seq, prev_hash, hash; every
  other column empty in CSV, ``"omitted": true`` in JSON) for each record the
  filter leaves out, from the first matching record to the head, so the
  exported chain has no gap: a row deleted from the file (say every FAIL) is
  a gap ``verify --file`` names. A link row proves that a record existed at
  that place, not what it said: ask for it unfiltered to read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from drillbook.errors import ConfigurationError, LedgerError
from drillbook.ledger.query import Filter
from drillbook.ledger.schema import TABLE

FORMATS = ("csv", "json")
_TS_SQL = "to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
_EXPORT_COLUMNS: list[tuple[str, str]] = [
    ("seq", "seq"),
    ("recorded_at", _TS_SQL),
    ("record_type", "record_type"),
    ("kind", "kind"),
    ("drill", "drill"),
    ("target", "target"),
    ("verdict", "verdict"),
    ("controls", "array_to_json(controls)"),
    ("dag_id", "dag_id"),
    ("run_id", "run_id"),
    ("task_id", "task_id"),
    ("map_index", "map_index"),
    ("try_number", "try_number"),
    ("trigger", "trigger"),
    ("result", "result"),
    ("prev_hash", "prev_hash"),
    ("hash", "hash"),
]


_LINK_COLUMNS = ("seq", "prev_hash", "hash")


def _source(where: str) -> str:
    """The rows an export walks: every record, or (filtered) every record from the first match to the head.

    ``keep`` says whether a row matches the filter; the others are written as link rows (seq, prev_hash,
    hash), so the exported chain has no gap and a row removed from the file is found by ``verify --file``.
    """
    if where == "TRUE":
        return TABLE
    return (
        f"(SELECT e.*, ({where}) AS keep FROM {TABLE} e "
        f"WHERE e.seq >= (SELECT min(seq) FROM {TABLE} WHERE {where})) AS s"
    )


def _params(where: str, params: list[Any]) -> list[Any]:
    return [] if where == "TRUE" else [*params, *params]


def _csv_sql(where: str) -> str:
    cols = []
    for name, expr in _EXPORT_COLUMNS:
        value = f"{expr}::text" if name in ("controls", "result") else expr
        linked = name in _LINK_COLUMNS or where == "TRUE"  # an unfiltered export has no link rows: no CASE
        cols.append(f"{value} AS {name}" if linked else f"CASE WHEN keep THEN {value} END AS {name}")
    return f"COPY (SELECT {', '.join(cols)} FROM {_source(where)} ORDER BY seq) TO STDOUT WITH (FORMAT csv, HEADER)"


def _json_sql(where: str) -> str:
    # One JSON document per line. JSON text never holds a raw control character (both PostgreSQL and
    # the ledger's canonical JSON escape them), so with \x01 as quote and \x02 as delimiter COPY's CSV
    # mode writes every document verbatim, unquoted, one per line.
    pairs = ", ".join(f"'{name}', {expr}" for name, expr in _EXPORT_COLUMNS)
    link = "json_build_object('seq', seq, 'prev_hash', prev_hash, 'hash', hash, 'omitted', true)"
    doc = (
        f"json_build_object({pairs})"
        if where == "TRUE"
        else f"CASE WHEN keep THEN json_build_object({pairs}) ELSE {link} END"
    )
    return (
        f"COPY (SELECT ({doc})::text "
        f"FROM {_source(where)} ORDER BY seq) TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    )


def export_records(conn: Any, out: IO[bytes], *, flt: Filter, fmt: str, batch: int = 5000) -> int:
    """Write the records matching ``flt`` (plus link rows, see ``_source``) to ``out``; return the matches."""
    if fmt not in FORMATS:
        raise ConfigurationError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    where, params = flt.where()
    if fmt == "csv":
        return _export_csv(conn, out, where, params)
    return _export_json(conn, out, where, params, batch)


def _export_csv(conn: Any, out: IO[bytes], where: str, params: list[Any]) -> int:
    from psycopg.rows import tuple_row

    # One snapshot for the COPY and the count, so the count names exactly the records written.
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with cur.copy(_csv_sql(where), _params(where, params)) as copy:
            for chunk in copy:
                out.write(bytes(chunk))
        return _count(cur, where, params)


def _export_json(conn: Any, out: IO[bytes], where: str, params: list[Any], batch: int) -> int:
    from psycopg.rows import tuple_row

    held = b""  # the previous chunk, written once we know whether a comma follows it
    out.write(b"[\n")
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with cur.copy(_json_sql(where), _params(where, params)) as copy:
            for chunk in copy:
                data = bytes(chunk)
                if b"\x01" in data:
                    raise LedgerError(
                        "a ledger record holds a control character that breaks the JSON export; "
                        "run `drillbook evidence verify` and export as CSV"
                    )
                out.write(held)
                held = data.replace(b"\n", b",\n")
        count = _count(cur, where, params)
    out.write(held[:-2] + b"\n]\n" if held else b"]\n")
    return count


def _count(cur: Any, where: str, params: list[Any]) -> int:
    cur.execute(f"SELECT count(*) FROM {TABLE} WHERE {where}", params)
    row = cur.fetchone()
    return int(row[0]) if row else 0


# -- list: a readable table for people --------------------------------------------------------
LIST_HEADER = (
    "seq",
    "recorded_at (UTC)",
    "type",
    "kind",
    "drill",
    "verdict",
    "controls",
    "findings",
    "run_id",
    "hash",
)


_CODES_FROM_RESULT = (
    "coalesce((SELECT string_agg(f->>'code', ',') FROM json_array_elements(result->'findings') AS f), '')"
)


def _list_select(conn: Any, flt: Filter, limit: int | None, newest_first: bool) -> tuple[str, list[Any]]:
    """The list's SELECT of display cells (all NOT NULL text) in display order, and its parameters."""
    from psycopg.rows import tuple_row

    where, params = flt.where()
    with conn.cursor(row_factory=tuple_row) as cur:  # a ledger not migrated to v4 yet still lists (slower)
        cur.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'finding_codes' "
            "AND NOT attisdropped",
            (TABLE,),
        )
        codes = "finding_codes" if cur.fetchone() else _CODES_FROM_RESULT
    # ORDER BY the table's bigint seq (``e.seq``): a bare ``seq`` names the output column, the text, and sorted
    # "999" before "1000" (newest first was wrong across a digit boundary). With a time window the rows are
    # ordered by (recorded_at, seq), which the recorded_at index returns as they are, so the rows stream with
    # no sort and a LIMIT stops after its rows: the default 50 rows of a ten-month window cost 8 ms instead of
    # 1.2 s (the whole window read and sorted by seq), and a month listed whole ~10% less. On a chain that
    # verifies it is the seq order exactly: ``evidence verify`` fails a record stamped earlier than the one
    # before it (the seal stamps each record under the chain lock); a backdated row is listed at its time, its
    # seq showing where it is in the chain.
    order = (
        "e.recorded_at {dir}, e.seq {dir}"
        if flt.since is not None or flt.until is not None
        else "e.seq {dir}"
    ).format(dir="DESC" if newest_first else "ASC")
    sql = (
        f"SELECT seq::text, to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), "
        f"record_type, kind, drill, verdict, array_to_string(controls, ','), coalesce({codes}, ''), "
        f"run_id, left(hash, 12) FROM {TABLE} e WHERE {where} ORDER BY {order}"
    )
    if limit:
        sql += " LIMIT %s"
        params = [*params, int(limit)]
    return sql, params


def list_rows(
    conn: Any, *, flt: Filter, limit: int | None, newest_first: bool = True, batch: int = 2000
) -> Iterator[tuple[str, ...]]:
    """Yield one display row per record (the cells of ``LIST_HEADER``) through a server-side cursor.

    Finding codes come from the ``finding_codes`` column (schema v4), so no row's result JSON is parsed
    (that cost 16x a count(*) of the same rows). ``list_lines`` is the same rows laid out as a table.
    """
    from psycopg.rows import tuple_row

    sql, params = _list_select(conn, flt, limit, newest_first)
    with conn.transaction(), conn.cursor(name="drillbook_list", row_factory=tuple_row) as cur:
        # a cursor is planned for its first 10% of rows by default (fast-start plans); the list reads every
        # row (a LIMIT, when given, is planned for as such)
        conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        cur.itersize = batch
        cur.execute(sql, params)
        yield from cur  # every cell is NOT NULL text already: no per-cell conversion in Python


# Cells a writer or a catalogue chose (kind, drill, controls, codes, run_id) may hold control characters: a
# terminal acts on an escape sequence, and a newline breaks the table. They are shown as "?". COPY's text
# format escapes a backslash, tab, newline, CR, BS, FF and VT with a backslash and passes other control
# characters through, so a batch holding no backslash and no control character but the row's own tabs and
# newlines is copied through as it is (checked at C speed); only a batch with one is decoded cell by cell.
_ODD = bytes([*range(0, 9), *range(11, 32), 127, ord("\\")])
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_SHOWN = {c: "?" for c in [*range(32), 127]}
_WIDTH_SAMPLE = 200  # rows that size the table's columns; a longer cell later widens only its own line


def _cell(text: str) -> str:
    """One cell of COPY's text format as shown: escapes decoded, control characters as ``?``."""
    if "\\" in text:
        out, i = [], 0
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                out.append(_ESCAPES.get(text[i + 1], text[i + 1]))
                i += 2
            else:
                out.append(ch)
                i += 1
        text = "".join(out)
    return text.translate(_SHOWN)


def _cells(joined: bytes) -> list[str]:
    """The cells of COPY text rows (each ending in a newline), row after row, as shown (see ``_cell``)."""
    text = joined.decode("utf-8", "replace")[:-1]
    if len(joined.translate(None, _ODD)) == len(joined):  # no escape, no control character
        return text.replace("\n", "\t").split("\t")
    return [_cell(c) for line in text.split("\n") for c in line.split("\t")]


class _Layout:
    """Columns sized from the first rows; then each batch of rows is laid out with one ``%`` format.

    A batch that is plain ASCII with no escape or control character (the usual case) is split and padded
    as bytes, where a byte is a character; any other batch as text.
    """

    def __init__(self, header: tuple[str, ...], sample: list[str]) -> None:
        n = len(header)
        rows = [sample[i : i + n] for i in range(0, min(len(sample), _WIDTH_SAMPLE * n), n)]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
        self.columns = n
        self.line = "  ".join(f"%-{w}s" for w in widths[:-1]) + "  %s\n"  # the last column unpadded
        self.head = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip() + "\n"
        self.rule = "  ".join("-" * w for w in widths) + "\n"
        self._bline = self.line.encode("ascii")
        self._formats: dict[tuple[int, bool], Any] = {}

    def _template(self, cells: list[Any], raw: bool) -> Any:
        rows, extra = divmod(len(cells), self.columns)
        if extra:  # cannot happen (COPY escapes tabs and newlines inside a cell): never misalign silently
            raise LedgerError(f"the list query returned a row of other than {self.columns} cells")
        template = self._formats.get((rows, raw))
        if template is None:
            template = self._formats[rows, raw] = (self._bline if raw else self.line) * rows
        return template

    def __call__(self, joined: bytes, cells: list[str] | None = None) -> str:
        if cells is None and joined.isascii() and len(joined.translate(None, _ODD)) == len(joined):
            raw = joined[:-1].replace(b"\n", b"\t").split(b"\t")
            return str((self._template(raw, True) % tuple(raw)).decode("ascii"))
        if cells is None:
            cells = _cells(joined)
        return str(self._template(cells, False) % tuple(cells))


def list_lines(
    conn: Any,
    *,
    flt: Filter,
    limit: int | None,
    newest_first: bool = True,
    header: tuple[str, ...] = LIST_HEADER,
    batch: int = 2000,
) -> Iterator[str]:
    """The list as a table: a header, a rule, then one line per record; yields whole lines in batches.

    One ``COPY`` in text format streams the rows (unlike a server-side cursor, it may use a parallel plan, as
    the ``count(*)`` of the same rows does); Python splits each batch once and lays it out with one
    ``%`` format (see ``_Layout``; formatting line by line cost as much as reading the rows). Columns are as wide as the
    widest of the first 200 rows (or the header); the last column is not padded. Control characters in
    the cells are shown as ``?`` (see ``_ODD``).
    """
    sql, params = _list_select(conn, flt, limit, newest_first)
    with conn.transaction(), conn.cursor() as cur:
        # the rows' bytes are UTF-8, whatever the session had
        cur.execute("SET LOCAL client_encoding TO 'UTF8'")
        with cur.copy(f"COPY ({sql}) TO STDOUT", params) as copy:
            pending: list[Any] = []  # the messages: memoryviews that keep their buffers
            layout: _Layout | None = None
            first = max(batch, _WIDTH_SAMPLE)  # the first batch holds the rows that size the columns
            for data in copy:  # one message per row
                pending.append(data)
                if len(pending) >= (first if layout is None else batch):
                    joined = b"".join(pending)
                    if layout is None:
                        cells = _cells(joined)
                        layout = _Layout(header, cells)
                        yield layout.head + layout.rule + layout(joined, cells)
                    else:
                        yield layout(joined)
                    pending = []
            joined = b"".join(pending)
            if layout is None:
                cells = _cells(joined) if joined else []
                layout = _Layout(header, cells)
                yield layout.head + layout.rule + (layout(joined, cells) if cells else "")
            elif joined:
                yield layout(joined)
