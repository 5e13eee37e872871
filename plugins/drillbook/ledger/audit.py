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

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from drillbook.ledger import checkpoint as cpmod
from drillbook.ledger.chainstream import TS, walk_chain
from drillbook.ledger.checkpoint import Checkpoint, CheckpointSettings
from drillbook.ledger.guards import guard_problems, guard_summary, pin_note
from drillbook.ledger.records import VerifyReport


def _checkpoints(conn: Any, settings: CheckpointSettings) -> tuple[list[Checkpoint], list[str]]:
    from psycopg.rows import tuple_row

    with conn.cursor(row_factory=tuple_row) as cur:
        found = cpmod.read_db(cur)
    outside, problems = cpmod.read_outside(settings.path)
    return found + outside, problems


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
            f"SELECT r.hash, {TS}, (SELECT max(seq) FROM {table}) FROM {table} r WHERE r.seq = %s",
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
    walk = walk_chain(
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
