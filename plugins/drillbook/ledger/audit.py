"""A plain verify that needs no one's memory: chain walk, newest signed checkpoint, guards.

Rules this module enforces:
- ``verify_ledger`` reads the checkpoints (database and outside copy) first,
  checks every signature (a forged or foreign-key checkpoint is reported as
  ``checkpoint``), then walks the chain in one REPEATABLE READ snapshot
  and compares it with the newest checkpoint, so rows cut from the end and a
  rewritten chain are found without anyone passing a head hash;
- the append-only and seal triggers are checked on every verify (present,
  enabled, their functions unchanged); a broken guard makes the verify fail
  as ``unguarded`` even when every hash still matches, because from then on
  rows can change without a trace in the chain's own terms;
- every report carries notes saying what was checked against what, in words:
  which checkpoint, signed or UNSIGNED, which key was trusted;
- ``take_checkpoint`` reads the head and stores the signed (or plainly
  unsigned) checkpoint in the database and, when configured, outside it.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn

from drillbook.ledger import checkpoint as cpmod
from drillbook.ledger import seal
from drillbook.ledger.checkpoint import Checkpoint, CheckpointSettings
from drillbook.ledger.guards import guard_problems, guard_summary, pin_note
from drillbook.ledger.records import VerifyReport

if TYPE_CHECKING:
    from drillbook.ledger.verify import Walk

# A full walk of at least PARALLEL_MIN records is split into consecutive seq ranges, each streamed on its own
# connection in its own thread, all reading the walk's one snapshot (``pg_export_snapshot``), and stitched
# back in seq order (``verify.stitch``): record i needs only its own columns and record i-1's hash, time and
# seq, so each range is checked on its own and the joins between ranges are checked after. The report is the
# one a single stream gives (the first failing record in seq order, worded by ``verify_rows``).
PARALLEL_MIN = 50_000
MAX_WORKERS = 4


def _checkpoints(conn: Any, settings: CheckpointSettings) -> tuple[list[Checkpoint], list[str]]:
    from psycopg.rows import tuple_row

    with conn.cursor(row_factory=tuple_row) as cur:
        found = cpmod.read_db(cur)
    outside, problems = cpmod.read_outside(settings.path)
    return found + outside, problems


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
_TS = "to_char(r.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
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
    f"r.record_type, {_TS}, r.result::text, r.run_id, r.seq::text, r.target, r.task_id, r.trigger, "
    "r.try_number::text, r.verdict)"
)
_TEXT = f"CASE WHEN {_PLAIN} THEN {_UNESCAPED} ELSE r.prev_hash || {seal.TEXT_EXPRESSION} END"
_DIGEST = f"pg_catalog.sha256(pg_catalog.convert_to({_TEXT}, 'UTF8'))"
_STREAM = (  # a str.format template: the text's own braces doubled
    f"COPY (SELECT r.seq, r.prev_hash, r.hash, {_TS}, {_DIGEST.replace('{', '{{').replace('}', '}}')} "
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


def _stream(
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
    with cur.copy(_STREAM.format(table=table, after=int(after), upto=bound)) as copy:
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


def _trusted_start(
    checkpoints: list[Checkpoint], trusted: str | None
) -> tuple[Checkpoint | None, str | None, str]:
    """(newest checkpoint signed with the trusted key, forgery found on the way, why none) newest first."""
    if not trusted:
        return (
            None,
            None,
            (
                f"no trusted public key ({cpmod.PUBLIC_KEY_ENV} or {cpmod.KEY_ENV}), so no checkpoint "
                "can be trusted"
            ),
        )
    for cp in sorted(checkpoints, key=lambda c: (c.seq, c.signed_at), reverse=True):
        problem = cpmod.signature_problem(cp, trusted)
        if problem:
            return None, problem, ""
        if cp.signed:
            return cp, None, ""
    return None, None, "no checkpoint signed with the trusted key yet"


def verify_ledger(
    conn: Any,
    table: str,
    columns: str,
    *,
    expect_head: str | None,
    batch: int,
    settings: CheckpointSettings,
    full: bool = False,
    workers: int | None = None,
    connect: Callable[[], Any] | None = None,
) -> VerifyReport:
    """Checkpoint signatures, chain walk and comparison with the newest checkpoint, guards.

    Incremental unless ``full`` (or ``expect_head``, which may name any record): the walk starts at the newest
    checkpoint signed with the trusted key, after checking that the record at its seq still has the signed
    hash; records at or before it are not re-hashed (``evidence verify --full`` does that). Without a trusted
    checkpoint the walk is full and a note says why.

    ``connect`` opens another connection to the same ledger (same credentials); with it, a walk of at least
    ``PARALLEL_MIN`` records is split over ``workers`` connections (None: ``default_workers``; 1: one
    stream), all in this walk's snapshot. A range whose connection cannot be opened or read is walked again
    on ``conn`` in the same snapshot, so the split never changes what is checked.
    """
    from psycopg.rows import tuple_row

    trusted = settings.trusted_public_hex()
    checkpoints, notes = _checkpoints(conn, settings)
    start: Checkpoint | None = None
    if full or expect_head:
        mode = (
            "full verify (--full): every record re-hashed from seq=1"
            if full
            else "full verify: --expect-head may name any record, so every record is re-hashed from seq=1"
        )
    else:
        # Newest first, down to the first checkpoint signed with the trusted key: those are checked here.
        start, problem, why = _trusted_start(checkpoints, trusted)
        if problem:
            return VerifyReport(
                ok=False,
                checked=0,
                first_bad_seq=None,
                reason="checkpoint",
                message=problem,
                notes=tuple(notes),
            )
        mode = (
            f"incremental verify: records after the trusted signed checkpoint seq={start.seq} re-hashed; records "
            f"up to seq={start.seq} are not re-hashed here (a change to them is found by `evidence verify --full`)"
            if start
            else f"full verify: {why}; every record re-hashed from seq=1"
        )
    if start is None:  # a full walk checks every checkpoint's signature
        for cp in checkpoints:
            problem = cpmod.signature_problem(cp, trusted)
            if problem:
                return VerifyReport(
                    ok=False,
                    checked=0,
                    first_bad_seq=cp.seq,
                    reason="checkpoint",
                    message=problem,
                    notes=tuple(notes),
                )
    if trusted:
        # With a trusted key, only a signature is evidence: the writer role may INSERT checkpoint rows (the
        # digest checkpoints as the writer) but holds no key, so an unsigned row proves nothing either way.
        unsigned = [cp for cp in checkpoints if not cp.signed]
        checkpoints = [cp for cp in checkpoints if cp.signed]
        if unsigned:
            notes.append(
                f"{len(unsigned)} unsigned checkpoint(s) ignored (newest claims seq={max(c.seq for c in unsigned)}):"
                f" a signing key is configured, so only checkpoints signed with it are compared"
            )
    newest = cpmod.newest(checkpoints)
    notes.append(_checkpoint_note(newest, trusted, settings))
    notes.append(mode)
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        problems = guard_problems(cur)
        pending = pin_note(cur)
        if pending:
            notes.append(pending)
        report = _walk(
            cur,
            table,
            columns,
            start=start,
            newest=newest,
            expect_head=expect_head,
            workers=workers,
            connect=connect,
        )
    notes.append(guard_summary(problems))
    report = replace(report, notes=tuple(notes), since_seq=start.seq if start else None)
    if report.ok and problems:
        return replace(
            report,
            ok=False,
            reason="unguarded",
            first_bad_seq=None,
            message="the ledger is no longer append-only: "
            + "; ".join(problems)
            + " (every hash still matches, but rows can now be changed or removed; restore the triggers "
            "with `drillbook ledger init` as the owner and find out who removed them)",
        )
    return report


def _walk(
    cur: Any,
    table: str,
    columns: str,
    *,
    start: Checkpoint | None,
    newest: Checkpoint | None,
    expect_head: str | None,
    workers: int | None = None,
    connect: Callable[[], Any] | None = None,
) -> VerifyReport:
    """Stream the chain after ``start`` (from seq 1 without one) and word the first failure like ``verify_rows``."""
    from drillbook.ledger.canonical import GENESIS_HASH
    from drillbook.ledger.verify import finish_walk, verify_rows

    after, start_hash, start_at = 0, GENESIS_HASH, ""
    if start is not None:
        cur.execute(
            f"SELECT r.hash, {_TS}, (SELECT max(seq) FROM {table}) FROM {table} r WHERE r.seq = %s",
            (start.seq,),
        )
        row = cur.fetchone()
        if row is None or row[0] != start.hash:
            cur.execute(f"SELECT max(seq) FROM {table}")
            last = (cur.fetchone() or (None,))[0] or 0
            if row is None and last > start.seq:  # a hole where the checkpointed record was
                return VerifyReport(
                    ok=False,
                    checked=0,
                    first_bad_seq=start.seq,
                    reason="deleted",
                    message=f"record seq={start.seq} is missing: it is the record the {start.describe()} "
                    "signed; evidence was deleted from the ledger",
                    head_seq=last,
                )
            problem = cpmod.compare(
                start,
                last_seq=last if row is None else max(last, start.seq),
                hash_at_seq=row[0] if row else None,
            )
            assert problem is not None
            return VerifyReport(
                ok=False,
                checked=0,
                first_bad_seq=min(start.seq, last + 1),
                reason=problem[0],
                message=problem[1],
                head_seq=last or None,
            )
        after, start_hash, start_at = start.seq, start.hash, row[1]
    watch = [s for s in (newest.seq if newest else None,) if s]
    walk = _walk_chain(
        cur,
        table,
        after=after,
        start_hash=start_hash,
        start_at=start_at,
        watch=watch,
        expect_head=expect_head,
        workers=workers,
        connect=connect,
    )
    if walk.bad_seq is None:
        last_name = f"seq={walk.last_seq}"
        if walk.last_seq:
            cur.execute(f"SELECT drill, run_id FROM {table} WHERE seq = %s", (walk.last_seq,))
            named = cur.fetchone()
            last_name = (
                f"seq={walk.last_seq} (drill {named[0]!r}, run_id {named[1]!r})" if named else last_name
            )
        if start is not None and newest is not None and newest.seq == start.seq:
            walk.hash_at[start.seq] = start_hash  # checked against the signed hash before the walk
        return finish_walk(walk, checkpoint=newest, expect_head=expect_head, last_name=last_name)
    # Re-read the failing record (and the good one before it) through the reference walk for its wording.
    cur.execute(
        f"SELECT {columns} FROM {table} WHERE seq >= %s ORDER BY seq LIMIT %s",
        (walk.last_seq, 2 if walk.last_seq else 1),
    )
    names = [d.name for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    report = verify_rows(rows, start_anywhere=walk.last_seq > 0, contiguous=True)
    if report.ok:  # the two walks disagree: never report that as intact
        return VerifyReport(
            ok=False,
            checked=walk.checked,
            first_bad_seq=walk.bad_seq,
            reason="edited",
            message=f"record seq={walk.bad_seq} does not verify (its stored columns, link or time do "
            "not match the chain)",
            head_hash=walk.head,
            head_seq=walk.last_seq or None,
        )
    return replace(report, checked=walk.checked)


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


def _walk_chain(
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
            _stream(cur, table, after),
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
            _stream(cursor, table, *ranges[i]), watch=watch, expect_head=expect_head, anywhere=True
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


def _checkpoint_note(newest: Checkpoint | None, trusted: str | None, settings: CheckpointSettings) -> str:
    if newest is None:
        return (
            "no checkpoint yet: rows cut from the end cannot be detected until `drillbook evidence checkpoint` "
            "or a digest has run"
        )
    if not newest.signed:
        how = "UNSIGNED (no signing key was configured when it was taken)"
    elif trusted:
        how = f"signature verified with the trusted key {cpmod.key_id(trusted)}"
    else:
        how = (
            f"signature checked against the key stored with it ({newest.key_id}); set "
            f"{cpmod.PUBLIC_KEY_ENV} to trust only your key"
        )
    outside = f"; outside copy {settings.path}" if settings.path else "; no outside copy configured"
    return f"compared with {newest.describe()}: {how}{outside}"


def take_checkpoint(conn: Any, table: str, *, source: str, settings: CheckpointSettings) -> Checkpoint:
    """Sign the head now and store the checkpoint in the database (and the outside copy when configured)."""
    from psycopg.rows import tuple_row

    from drillbook.ledger.canonical import GENESIS_HASH

    signer = settings.signer()
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(f"SELECT seq, hash FROM {table} ORDER BY seq DESC LIMIT 1")
        row = cur.fetchone()
        seq, head = (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)
        cp = cpmod.sign(seq, head, signer=signer, source=source)
        cpmod.store_in_db(cur, cp)
    if settings.path:
        cpmod.store_outside(settings.path, cp)
    return cp
