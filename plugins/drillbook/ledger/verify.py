"""Walk a hash chain and name the first record that does not match.

Rules this module enforces:
- records are checked strictly in ``seq`` order, one at a time (the caller
  streams them from a server-side cursor or a file), so memory stays flat;
- three checks per record, in this order, and the first failure ends the walk:
  1. ``deleted``   — ``seq`` is not the previous seq + 1 (the chain starts at 1):
                     the missing seq is named;
  2. ``reordered`` — ``prev_hash`` is not the previous record's hash: records were
                     swapped or renumbered, or the one before was replaced
                     together with its hash;
  3. ``edited``    — recomputing ``sha256(prev_hash + canonical JSON)`` from the
                     stored columns does not give the stored ``hash``;
- deleting the newest records leaves a shorter chain that is still intact; an
  auditor who kept the head hash of an earlier verify passes it as
  ``expect_head`` and the walk reports ``deleted`` when that hash is gone;
- ``recorded_at`` never decreases along the chain (the database sets it under
  the chain lock): a record older than the one before it is ``backdated``;
- the newest checkpoint (``drillbook.ledger.checkpoint``) is compared with the
  chain after the walk: ``truncated`` when its seq is past the end of the
  chain, ``rewritten`` when the record at its seq has another hash. With
  ``expect_head`` given as ``SEQ:HASH`` the same two words are used; a bare
  hash that is missing is reported without guessing which of the two;
- ``walk_stream`` is the same walk over what ``drillbook.ledger.chainstream`` streams
  from the database with one binary ``COPY``: (seq, prev_hash, hash,
  canonical recorded_at, the sha256 digest of the UTF-8 bytes of
  ``prev_hash`` + canonical text, built and hashed by PostgreSQL's built-ins
  from the stored columns in the query drillbook sends, not by a function
  stored in the database). Python compares that digest with the stored hash;
  nothing is decoded or re-encoded per record. It finds the first bad record;
  the caller then re-reads that record (and the one before) through
  ``verify_rows``, which re-encodes it in Python, so the report's wording is
  the one above. (Re-verifying an export file offline: ``verify_export``.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drillbook.ledger.canonical import GENESIS_HASH, format_ts, record_hash
from drillbook.ledger.checkpoint import Checkpoint, compare
from drillbook.ledger.records import VerifyReport


def _name(row: Mapping[str, Any]) -> str:
    return f"seq={row['seq']} (drill {row.get('drill')!r}, run_id {row.get('run_id')!r})"


def _expected_head(expect_head: str | None) -> tuple[int | None, str]:
    """``--expect-head`` as ``SEQ:HASH`` (says which of truncation or rewrite) or a bare hash prefix."""
    if expect_head is None:
        return None, ""
    text = expect_head.strip().lower()
    seq: int | None = None
    if ":" in text:
        head, _, text = text.partition(":")
        seq = int(head.removeprefix("seq=")) if head.removeprefix("seq=").isdigit() else -1
    if seq == -1 or len(text) < 12 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(
            f"expected head {expect_head!r} is not SEQ:HASH or a hash prefix of at least 12 hex digits"
        )
    return seq, text


def verify_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    contiguous: bool = True,
    expect_head: str | None = None,
    checkpoint: Checkpoint | None = None,
    start_anywhere: bool = False,
) -> VerifyReport:
    """Check every row of a chain (see the module docstring); stop at the first bad one.

    ``checkpoint``: the newest checkpoint; the hash of the record at its seq is compared with it.
    ``start_anywhere``: the first row may start past seq 1 (an export of a range).
    Rows marked ``omitted`` (a filtered export's link rows) are checked for linkage only.
    """
    expected_seq, expected = _expected_head(expect_head)
    seen_expected = not expected
    watch = {s for s in (checkpoint.seq if checkpoint else None, expected_seq) if s}
    hash_at: dict[int, str] = {}
    checked = 0
    prev_seq = 0
    prev_hash = GENESIS_HASH
    prev_at: Any = None
    prev_name = "the start of the chain"
    head: str | None = None
    first = True
    for row in rows:
        seq = int(row["seq"])
        if first and start_anywhere:
            prev_seq, prev_hash = seq - 1, str(row["prev_hash"])
        first = False
        linked = seq == prev_seq + 1
        if contiguous and not linked:
            missing = prev_seq + 1
            gap = f"seq={missing}" if seq == missing + 1 else f"seq={missing}..{seq - 1}"
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=missing,
                reason="deleted",
                message=f"record {gap} is missing: {_name(row)} follows {prev_name}; "
                "evidence was deleted from the ledger",
                head_hash=head,
                head_seq=prev_seq or None,
            )
        if linked and row["prev_hash"] != prev_hash:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad_seq=seq,
                reason="reordered",
                message=f"record {_name(row)} does not link to {prev_name}: its prev_hash is "
                f"{str(row['prev_hash'])[:12]}… but the record before it hashes to {prev_hash[:12]}…; "
                "records were reordered or renumbered, or the record before it was replaced",
                head_hash=head,
                head_seq=prev_seq or None,
            )
        if not row.get("omitted"):
            computed = record_hash(row)
            if computed != row["hash"]:
                return VerifyReport(
                    ok=False,
                    checked=checked,
                    first_bad_seq=seq,
                    reason="edited",
                    message=f"record {_name(row)} was edited: its stored columns hash to {computed[:12]}… "
                    f"but its recorded hash is {str(row['hash'])[:12]}…",
                    head_hash=head,
                    head_seq=prev_seq or None,
                )
            at = row["recorded_at"]
            if prev_at is not None and at < prev_at:
                return VerifyReport(
                    ok=False,
                    checked=checked,
                    first_bad_seq=seq,
                    reason="backdated",
                    message=f"record {_name(row)} was recorded at {_ts(at)}, before {prev_name} ({_ts(prev_at)}): "
                    "recorded_at never decreases in a sealed ledger; the record was backdated or written with a "
                    "forged time",
                    head_hash=head,
                    head_seq=prev_seq or None,
                )
            prev_at = at
        checked += 0 if row.get("omitted") else 1
        prev_seq, prev_hash, prev_name, head = seq, row["hash"], _name(row), row["hash"]
        if seq in watch:
            hash_at[seq] = head
        seen_expected = seen_expected or (expected_seq in (None, seq) and head.startswith(expected))
    walk = Walk(checked=checked, last_seq=prev_seq, head=head, hash_at=hash_at, seen_expected=seen_expected)
    return finish_walk(walk, checkpoint=checkpoint, expect_head=expect_head, last_name=prev_name)


def _ts(value: Any) -> str:
    return format_ts(value) if isinstance(value, datetime) else str(value)


def _head_reason(expected_seq: int | None, last_seq: int) -> str:
    if expected_seq is not None and expected_seq > last_seq:
        return "truncated"
    return "rewritten" if expected_seq is not None else "head_missing"


def _head_message(expected_seq: int | None, expected: str, last_seq: int, last_name: str) -> str:
    if expected_seq is None:
        return (
            f"the chain (ending at {last_name}) does not contain the head {expected[:12]}… seen by an earlier "
            "verify: records were cut from the end or the chain was rewritten; pass SEQ:HASH (as verify "
            "prints it) to tell which"
        )
    if expected_seq > last_seq:
        missing = expected_seq - last_seq
        return (
            f"{missing} row{'s' if missing != 1 else ''} up to the expected head seq {expected_seq} {'are' if missing != 1 else 'is'} missing "
            f"(seq={last_seq + 1}..{expected_seq}): the chain ends at {last_name}; records were cut from the end"
        )
    return (
        f"record {expected_seq} no longer has the hash an earlier verify saw ({expected[:12]}…): "
        "the chain was rewritten"
    )


# -- the database walk: hash what PostgreSQL streams --------------------------------------------
@dataclass
class Walk:
    """Where ``walk_stream`` stopped: at the end (``bad_seq`` None) or at the first record that fails.

    ``first``: (seq, prev_hash, recorded_at) of the first row streamed, for ``stitch`` (None: no row);
    ``last_at``: the recorded_at text of the last good row.
    """

    checked: int
    last_seq: int
    head: str | None
    bad_seq: int | None = None
    hash_at: dict[int, str] = field(default_factory=dict)
    seen_expected: bool = True
    first: tuple[int, str, str] | None = None
    last_at: str = ""


def walk_stream(
    rows: Iterable[tuple[int, str, str, str, bytes]],
    *,
    start_seq: int = 0,
    start_hash: str = GENESIS_HASH,
    start_at: str = "",
    watch: Iterable[int] = (),
    expect_head: str | None = None,
    anywhere: bool = False,
) -> Walk:
    """Check (seq, prev_hash, hash, recorded_at text, sha256 digest of prev_hash+canonical) rows in seq order.

    The same four checks as ``verify_rows`` (gap, link, hash, time order), one comparison each; stops at the
    first record that fails any of them and names only its seq (``verify_rows`` then words the report).
    ``anywhere``: a range of the chain walked on its own (see ``stitch``): the first row's seq, link and time
    are taken as they are (kept in ``Walk.first`` for ``stitch`` to check), only its hash is checked here.
    """
    expected_seq, expected = _expected_head(expect_head)
    watched = set(watch)
    walk = Walk(
        checked=0, last_seq=start_seq, head=start_hash if start_seq else None, seen_expected=not expected
    )
    prev_seq, prev_hash, prev_at, checked = start_seq, start_hash, start_at, 0
    it = iter(rows)
    if anywhere:
        for seq, row_prev, digest, at, sha in it:
            walk.first = (seq, row_prev, at)
            prev_seq, prev_hash, prev_at = seq - 1, row_prev, at  # the link is stitch's to check
            if sha.hex() != digest:
                walk.bad_seq = seq
                return walk
            checked = 1
            prev_seq, prev_hash = seq, digest
            if seq in watched:
                walk.hash_at[seq] = digest
            if expected and expected_seq in (None, seq) and digest.startswith(expected):
                walk.seen_expected = True
            break
    for seq, row_prev, digest, at, sha in it:
        if seq != prev_seq + 1 or row_prev != prev_hash or at < prev_at or sha.hex() != digest:
            walk.bad_seq = seq
            break
        checked += 1
        prev_seq, prev_hash, prev_at = seq, digest, at
        if seq in watched:
            walk.hash_at[seq] = digest
        if (
            expected
            and not walk.seen_expected
            and expected_seq in (None, seq)
            and digest.startswith(expected)
        ):
            walk.seen_expected = True
    walk.checked, walk.last_seq, walk.last_at = checked, prev_seq, prev_at
    walk.head = prev_hash if prev_seq else None
    return walk


def stitch(
    parts: Iterable[Walk],
    *,
    start_seq: int = 0,
    start_hash: str = GENESIS_HASH,
    start_at: str = "",
    expect_head: str | None = None,
) -> Walk:
    """One walk from consecutive ranges walked with ``anywhere`` (in seq order), as if streamed at once.

    Each range's first row must follow the last good row before it (seq + 1, its hash, not older): the
    checks ``walk_stream`` left to this. The first failure in seq order wins, so the result names the same
    record, with the same last good seq before it, as one ``walk_stream`` over the whole chain.
    """
    total = Walk(
        checked=0,
        last_seq=start_seq,
        head=start_hash if start_seq else None,
        seen_expected=not _expected_head(expect_head)[1],
    )
    prev_seq, prev_hash, prev_at = start_seq, start_hash, start_at
    for part in parts:
        if part.first is None:  # an empty range: nothing to check, the next range links to the same row
            continue
        seq, row_prev, at = part.first
        if seq != prev_seq + 1 or row_prev != prev_hash or at < prev_at:
            total.bad_seq = seq
            break
        total.checked += part.checked
        total.hash_at.update(part.hash_at)
        total.seen_expected = total.seen_expected or part.seen_expected
        if part.bad_seq is not None:
            total.bad_seq = part.bad_seq
            if part.bad_seq != seq:  # else the last good row is the one before this range
                prev_seq, prev_hash, prev_at = part.last_seq, part.head or prev_hash, part.last_at
            break
        prev_seq, prev_hash, prev_at = part.last_seq, part.head or prev_hash, part.last_at
    total.last_seq, total.last_at = prev_seq, prev_at
    total.head = prev_hash if prev_seq else None
    return total


def finish_walk(
    walk: Walk, *, checkpoint: Checkpoint | None, expect_head: str | None, last_name: str, offset: int = 0
) -> VerifyReport:
    """The report of a walk that reached the end: compared with the checkpoint and the expected head."""
    expected_seq, expected = _expected_head(expect_head)
    prev_seq, head = walk.last_seq, walk.head
    done: dict[str, Any] = {"checked": walk.checked + offset, "head_hash": head, "head_seq": prev_seq or None}
    if checkpoint is not None:
        problem = compare(checkpoint, last_seq=prev_seq, hash_at_seq=walk.hash_at.get(checkpoint.seq))
        if problem:
            return VerifyReport(
                ok=False,
                first_bad_seq=min(checkpoint.seq, prev_seq + 1),
                reason=problem[0],
                message=problem[1],
                **done,
            )
    if not walk.seen_expected:
        return VerifyReport(
            ok=False,
            first_bad_seq=prev_seq + 1,
            reason=_head_reason(expected_seq, prev_seq),
            message=_head_message(expected_seq, expected, prev_seq, last_name),
            **done,
        )
    checked = walk.checked + offset
    return VerifyReport(
        ok=True,
        message=f"{checked} records, chain intact" + (f", head seq={prev_seq} {head[:12]}" if head else ""),
        **done,
    )
