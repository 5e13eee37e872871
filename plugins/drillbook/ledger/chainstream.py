"""The chain walk's stream: each record's digest in one binary COPY, split over connections for a long walk.

Rules this module enforces:
- the digest of every record (``sha256(prev_hash + canonical text)``) is built
  by PostgreSQL's own functions from the stored columns in the query drillbook
  sends, never by a function stored in the database, and the COPY runs with
  only ``pg_catalog`` on the search path (see the comments above ``TS`` and in ``stream``);
- Python compares each digest with the stored hash and checks seq, link and
  time order (``verify.walk_stream``); no record's text reaches Python, and
  memory is flat in the chain's length;
- a long walk is split into consecutive seq ranges on several connections in
  one snapshot and stitched back in seq order (``verify.stitch``), with the
  report a single stream gives; a range that cannot be read on its own
  connection is read again on the first.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

from drillbook.ledger import seal

if TYPE_CHECKING:
    from drillbook.ledger.verify import Walk

# A full walk of at least PARALLEL_MIN records is split into consecutive seq ranges, each streamed on its own
# connection in its own thread, all reading the walk's one snapshot (``pg_export_snapshot``), and stitched
# back in seq order (``verify.stitch``): record i needs only its own columns and record i-1's hash, time and
# seq, so each range is checked on its own and the joins between ranges are checked after. The report is the
# one a single stream gives (the first failing record in seq order, worded by ``verify_rows``).
PARALLEL_MIN = 50_000
MAX_WORKERS = 4


# One binary COPY streams, for every record, the sha256 of what its hash covers, computed by PostgreSQL from
# the stored columns in the query drillbook sends (not by the stored function, so a replaced function cannot
# hide an edit) with the built-in ``pg_catalog.sha256`` the seal itself uses; Python compares it with the
# stored ``hash`` and checks seq, link and time order. See ``walk_stream``. Hashing in the server sends 32
# bytes a record instead of its ~1.6 KB text (the server writes less than it spends on the hash) and leaves
# Python ~1 us a record instead of ~5 (hashlib holds the GIL for texts under 2 KB, so the connections'
# threads could not hash in parallel); the offline check of an export (``verify_export``) still re-encodes
# every record in Python, independently of any server. JSON escaping is what costs the server: the seal's
# expression (``seal.TEXT_EXPRESSION``, one ``to_json`` per text column and sixteen concatenations) and
# ``row_to_json`` of the columns (one call, but it looks up every column's type per row) cost it about
# twice a bare ordered COPY. Escaping changes a text only when it holds a double quote, a backslash or a
# control character, so the walk tests the ten text columns at once (one ``to_json`` of their
# concatenation: longer than the text plus its two quotes exactly when some character needed escaping) and
# only then renders the record with the seal's expression. Every other record is written with one
# ``format`` call, the values spliced without escaping, which is then byte for byte the same text. A NULL in
# any column (possible only after someone dropped a NOT NULL) also takes the seal's expression, whose
# result is then NULL like the seal's own. tests/ledger/test_incremental.py holds the two branches byte-equal
# to the seal's expression on awkward values, one column at a time. ``convert_to`` gives the UTF-8 bytes the
# seal hashed, whatever the session's client encoding.
TS = "to_char(r.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
_PLAIN_TEXTS = "(r.dag_id || r.drill || r.kind || r.prev_hash || r.record_type || r.run_id || r.target || r.task_id || r.trigger || r.verdict)"
_PLAIN = (
    f"octet_length(to_json({_PLAIN_TEXTS})::text) = octet_length({_PLAIN_TEXTS}) + 2 AND r.controls IS NOT NULL "
    "AND r.map_index IS NOT NULL AND r.recorded_at IS NOT NULL AND r.result IS NOT NULL AND r.seq IS NOT NULL "
    "AND r.try_number IS NOT NULL"
)
_UNESCAPED = (
    'format(\'%s{"controls":%s,"dag_id":"%s","drill":"%s","kind":"%s","map_index":%s,'
    '"prev_hash":"%s","record_type":"%s","recorded_at":"%s","result":%s,"run_id":"%s",'
    '"seq":%s,"target":"%s","task_id":"%s","trigger":"%s","try_number":%s,"verdict":"%s"}\', '
    f"r.prev_hash, array_to_json(r.controls)::text, r.dag_id, r.drill, r.kind, r.map_index::text, r.prev_hash, "
    f"r.record_type, {TS}, r.result::text, r.run_id, r.seq::text, r.target, r.task_id, r.trigger, "
    "r.try_number::text, r.verdict)"
)
TEXT = f"CASE WHEN {_PLAIN} THEN {_UNESCAPED} ELSE r.prev_hash || {seal.TEXT_EXPRESSION} END"
DIGEST = f"pg_catalog.sha256(pg_catalog.convert_to({TEXT}, 'UTF8'))"
STREAM = (  # a str.format template: the text's own braces doubled
    f"COPY (SELECT r.seq, r.prev_hash, r.hash, {TS}, {DIGEST.replace('{', '{{').replace('}', '}}')} "
    "FROM {table} r WHERE r.seq > {after}{upto} ORDER BY r.seq) TO STDOUT (FORMAT binary)"
)


# The binary COPY's rows are read as raw messages and unpacked with one struct call when they have the
# usual shape (5 fields; seq 8 bytes; prev_hash and hash 64; recorded_at 27; the digest 32): psycopg's
# per-row parsing was ~1.4 us a record. Any other shape (a forged hash of
# another length, a year past 9999, a NULL) goes through ``_fields``, which reads any binary row.
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_ROW = struct.Struct(">hiqi64si64si27si32s")


def _fields(data: bytes) -> tuple[Any, ...]:
    """(seq, prev_hash, hash, recorded_at, digest bytes) of any binary COPY row of these five columns."""
    (count,), off, out = struct.unpack_from(">h", data), 2, []
    for _ in range(count):
        (size,) = struct.unpack_from(">i", data, off)
        off += 4
        out.append(None if size < 0 else data[off : off + size])
        off += max(size, 0)
    seq, prev, digest, at, body = (out + [None] * 5)[:5]
    prev_text, digest_text, at_text = (
        "" if v is None else v.decode("utf-8", "replace") for v in (prev, digest, at)
    )
    if None in (prev, digest, at, body):
        # A NULL (a column someone made nullable and cleared; the record's text and digest are then NULL
        # too) is a bad record: an empty hash matches no digest, so the walk stops here and the re-read words it.
        digest_text, body = "", bytes(32)
    return (
        None if seq is None else int.from_bytes(seq, "big", signed=True),
        prev_text,
        digest_text,
        at_text,
        body,
    )


def stream(
    cur: Any, table: str, after: int, upto: int | None = None
) -> Iterator[tuple[int, str, str, str, bytes]]:
    # The digest is of UTF-8 bytes whatever the session's encoding; the transaction's later reads (the re-read
    # of a bad record, its name in the report) must hold any character too.
    cur.execute("SET LOCAL client_encoding TO 'UTF8'")
    # The COPY runs with only PostgreSQL's own functions in reach: a function in a schema on the session's path
    # (``public`` on PostgreSQL 14 and older is writable by every role; a database owner can set the path)
    # whose argument types match better than the built-in's (``to_json(text)`` over ``to_json(anyelement)``,
    # ``format`` with text arguments over its variadic one) would be chosen even after pg_catalog and could
    # make an edited record hash as the original. The table is named by its schema first; the session's path
    # is restored after the COPY for the walk's later reads.
    cur.execute(
        "SELECT pg_catalog.current_setting('search_path'), (SELECT pg_catalog.format('%%I.%%I', n.nspname, "
        "c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.oid = pg_catalog.to_regclass(%s))",
        (table,),
    )
    path, qualified = cur.fetchone() or ("", None)
    cur.execute("SET LOCAL search_path = pg_catalog, pg_temp")
    ended = False  # the COPY ended cleanly (read to its end): the transaction can take the path back
    try:
        yield from _copy_rows(cur, qualified or table, after, upto)
        ended = True
    except GeneratorExit:
        ended = True  # _copy_rows read the rest of the COPY before passing this on
        raise
    finally:
        if ended:
            cur.execute("SELECT pg_catalog.set_config('search_path', %s, true)", (path,))


def _copy_rows(
    cur: Any, table: str, after: int, upto: int | None
) -> Iterator[tuple[int, str, str, str, bytes]]:
    bound = "" if upto is None else f" AND r.seq <= {int(upto)}"
    with cur.copy(STREAM.format(table=table, after=int(after), upto=bound)) as copy:
        # Each row is one CopyData message. psycopg's ``read`` costs ~3.5 us a message (a generator and a wait
        # per call), a third of the walk's Python; a message libpq already holds is taken straight from it
        # (``get_copy_data`` without blocking), and only when none is buffered does ``read`` wait for the
        # socket. The binary trailer is a message of its own before the COPY's end, so the end itself is
        # always read by psycopg; libpq ending the COPY before the trailer means the server sent an error.
        read, get = copy.read, cur.connection.pgconn.get_copy_data
        unpack, fixed = _ROW.unpack_from, _ROW.size
        data = bytes(read())
        if not data.startswith(_SIGNATURE):
            raise ValueError("the ledger's COPY did not start with the binary COPY signature")
        (extension,) = struct.unpack_from(">i", data, len(_SIGNATURE) + 4)
        data = data[len(_SIGNATURE) + 8 + extension :]
        try:
            while data and bytes(data[:2]) != b"\xff\xff":  # -1 fields: the trailer
                if len(data) >= fixed:
                    count, l1, seq, l2, prev, l3, digest, l4, at, l5, sha = unpack(data)
                    if (count, l1, l2, l3, l4, l5) == (5, 8, 64, 64, 27, 32) and len(data) == fixed:
                        yield seq, prev.decode(), digest.decode(), at.decode(), sha
                        n, data = get(1)
                        if n <= 0:
                            data = read() if n == 0 else _ended_early(copy, cur)
                        continue
                yield _fields(bytes(data))
                n, data = get(1)
                if n <= 0:
                    data = read() if n == 0 else _ended_early(copy, cur)
        except GeneratorExit:
            # The walk stopped at a bad record. Leaving a COPY early makes psycopg send a cancel request, which
            # can land on the walk's next statement (re-reading the bad record) and abort the transaction;
            # the rest of the stream is read unparsed instead.
            while data:
                data = read()
            raise
        while data:  # the trailer, then the end of the COPY
            data = read()


def _ended_early(copy: Any, cur: Any) -> NoReturn:
    """libpq ended the COPY before its binary trailer: the server sent an error (a cancel, a timeout, a
    terminated backend) instead of the rest. Raise that error as psycopg's own ``read`` would, after reading
    the COPY's results and marking it finished, so leaving the ``copy`` block reads nothing more."""
    from psycopg import errors, pq

    pgconn = cur.connection.pgconn
    results = []
    while (res := pgconn.get_result()) is not None:
        results.append(res)
    copy._finished = True  # psycopg's flag (psycopg/_copy_base.py): its exit then reads nothing more
    for res in results:
        if res.status == pq.ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(res, encoding=cur.connection.info.encoding)
    raise errors.OperationalError("the ledger's COPY ended before its binary trailer")


def _closing_walk(stream: Iterator[Any], **options: Any) -> Walk:
    """``walk_stream`` over ``stream``, which is closed however the walk ends: a generator left suspended
    inside its COPY keeps the connection's lock, and the transaction's exit would then wait for it forever."""
    from drillbook.ledger.verify import walk_stream

    try:
        return walk_stream(stream, **options)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def default_workers(records: int) -> int:
    """Connections a walk of ``records`` records is split over: one below ``PARALLEL_MIN``, else one per CPU
    up to ``MAX_WORKERS``."""
    if records < PARALLEL_MIN:
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def walk_chain(
    cur: Any,
    table: str,
    *,
    after: int,
    start_hash: str,
    start_at: str,
    watch: Iterable[int],
    expect_head: str | None,
    workers: int | None,
    connect: Callable[[], Any] | None,
) -> Walk:
    """Walk the records after ``after`` in one stream, or in ranges on several connections (see PARALLEL_MIN)."""
    from psycopg import sql

    from drillbook.ledger.verify import stitch

    k, last, snapshot = 1, after, ""
    if connect is not None and workers != 1:
        cur.execute(f"SELECT max(seq) FROM {table}")
        last = int((cur.fetchone() or (None,))[0] or 0)
        k = default_workers(last - after) if workers is None else min(int(workers), last - after)
    if k > 1:  # not in a savepoint: PostgreSQL exports no snapshot from a subtransaction
        # A standby in recovery may refuse to export one (and the refusal would abort the walk): one stream.
        cur.execute("SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_export_snapshot() END")
        snapshot = str((cur.fetchone() or (None,))[0] or "")
        k = k if snapshot else 1
    if k <= 1:
        return _closing_walk(
            stream(cur, table, after),
            start_seq=after,
            start_hash=start_hash,
            start_at=start_at,
            watch=watch,
            expect_head=expect_head,
        )
    cuts = [after + (last - after) * i // k for i in range(k + 1)]
    ranges: list[tuple[int, int | None]] = [(cuts[i], None if i == k - 1 else cuts[i + 1]) for i in range(k)]
    found: list[Walk | None] = [None] * k

    def walk_range(cursor: Any, i: int) -> Walk:
        return _closing_walk(
            stream(cursor, table, *ranges[i]), watch=watch, expect_head=expect_head, anywhere=True
        )

    def work(i: int, open_other: Callable[[], Any]) -> None:
        try:
            with open_other() as other, other.transaction(), other.cursor() as c:
                c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                c.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
                found[i] = walk_range(c, i)
        except Exception:  # the range is walked again on the main connection below
            found[i] = None

    threads = [
        threading.Thread(target=work, args=(i, connect), name=f"drillbook-verify-{i}") for i in range(1, k)
    ]
    for thread in threads:
        thread.start()
    try:
        found[0] = walk_range(cur, 0)
    finally:
        for thread in threads:
            thread.join()
    parts = [part if part is not None else walk_range(cur, i) for i, part in enumerate(found)]
    return stitch(parts, start_seq=after, start_hash=start_hash, start_at=start_at, expect_head=expect_head)
