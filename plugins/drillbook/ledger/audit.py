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

from dataclasses import replace
from typing import Any

from drillbook.ledger import checkpoint as cpmod
from drillbook.ledger.checkpoint import Checkpoint, CheckpointSettings
from drillbook.ledger.guards import guard_problems, guard_summary, pin_note
from drillbook.ledger.records import VerifyReport


def _checkpoints(conn: Any, settings: CheckpointSettings) -> tuple[list[Checkpoint], list[str]]:
    from psycopg.rows import tuple_row

    with conn.cursor(row_factory=tuple_row) as cur:
        found = cpmod.read_db(cur)
    outside, problems = cpmod.read_outside(settings.path)
    return found + outside, problems


def verify_ledger(conn: Any, table: str, columns: str, *, expect_head: str | None, batch: int,
                  settings: CheckpointSettings) -> VerifyReport:
    """Checkpoint signatures, chain walk and comparison with the newest checkpoint, guards."""
    from psycopg.rows import tuple_row

    from drillbook.ledger.verify import verify_rows

    trusted = settings.trusted_public_hex()
    checkpoints, notes = _checkpoints(conn, settings)
    for cp in checkpoints:
        problem = cpmod.signature_problem(cp, trusted)
        if problem:
            return VerifyReport(ok=False, checked=0, first_bad_seq=cp.seq, reason="checkpoint", message=problem,
                                notes=tuple(notes))
    if trusted:
        # With a trusted key, only a signature is evidence: the writer role may INSERT checkpoint rows (the
        # digest checkpoints as the writer) but holds no key, so an unsigned row proves nothing either way.
        unsigned = [cp for cp in checkpoints if not cp.signed]
        checkpoints = [cp for cp in checkpoints if cp.signed]
        if unsigned:
            notes.append(f"{len(unsigned)} unsigned checkpoint(s) ignored (newest claims seq={max(c.seq for c in unsigned)}):"
                         f" a signing key is configured, so only checkpoints signed with it are compared")
    newest = cpmod.newest(checkpoints)
    notes.append(_checkpoint_note(newest, trusted, settings))
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        problems = guard_problems(cur)
        pending = pin_note(cur)
        if pending:
            notes.append(pending)
        with conn.cursor(name="drillbook_verify") as rows:
            rows.itersize = batch
            # result as its stored text: hashed byte for byte, and not parsed (faster, memory flat).
            rows.execute(f"SELECT {columns} FROM {table} ORDER BY seq ASC")
            report = verify_rows(rows, expect_head=expect_head, checkpoint=newest)
    notes.append(guard_summary(problems))
    report = replace(report, notes=tuple(notes))
    if report.ok and problems:
        return replace(report, ok=False, reason="unguarded", first_bad_seq=None,
                       message="the ledger is no longer append-only: " + "; ".join(problems)
                       + " (every hash still matches, but rows can now be changed or removed; restore the triggers "
                       "with `drillbook ledger init` as the owner and find out who removed them)")
    return report


def _checkpoint_note(newest: Checkpoint | None, trusted: str | None, settings: CheckpointSettings) -> str:
    if newest is None:
        return ("no checkpoint yet: rows cut from the end cannot be detected until `drillbook evidence checkpoint` "
                "or a digest has run")
    if not newest.signed:
        how = "UNSIGNED (no signing key was configured when it was taken)"
    elif trusted:
        how = f"signature verified with the trusted key {cpmod.key_id(trusted)}"
    else:
        how = (f"signature checked against the key stored with it ({newest.key_id}); set "
               f"{cpmod.PUBLIC_KEY_ENV} to trust only your key")
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
