"""``drillbook ledger flush`` and ``drillbook evidence checkpoint``: the spool and the signed head.

Rules this module enforces:
- ``ledger flush`` replays the local evidence spool into the ledger in order
  and idempotently, prints every record it replayed, and exits 0 only when
  nothing owed to this ledger is left; an unreachable ledger exits 2 (could
  not run: ERROR, never 1), like every ledger command;
- ``evidence checkpoint`` says plainly whether the checkpoint is signed (and
  with which key) or UNSIGNED, and where it was stored;
- handlers share ``drillbook.cli.ledger_base``' DSN rules and exit codes with the other ledger commands.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from drillbook.cli.config import settings_of
from drillbook.cli.ledger_base import EXIT_OK, EXIT_USAGE, _guarded, _ledger


@_guarded
def cmd_ledger_flush(args: argparse.Namespace) -> int:
    """Replay the local evidence spool into the ledger, in order, idempotently."""
    from drillbook.ledger.spool import EvidenceSpool

    spool = EvidenceSpool(args.spool or settings_of(args).spool_file)
    if not spool.read().lines:
        print(f"evidence spool {spool.path} is empty: nothing to replay")
        return _print_rejected(spool)
    with _ledger(args, spool=spool) as ledger:
        report = ledger.flush_spool()
        here = ledger.where
    for record in report.records:
        state = "written" if record.created else "already in the ledger"
        print(f"  replayed {record.describe()}: {state}")
    for line in report.unreadable + report.failed:
        print(f"  NOT replayed: {line}", file=sys.stderr)
    for line in report.quarantined:
        print(f"  QUARANTINED: {line}", file=sys.stderr)
    print(
        f"evidence spool {spool.path}: {len(report.records)} record(s) replayed, {report.remaining} left"
        + (f", {len(report.quarantined)} moved to {spool.rejected_path}" if report.quarantined else "")
    )
    _print_rejected(spool)
    if report.other_ledgers:
        # Entries are keyed by the ledger's host:port/dbname as the spooling run spelt it; another spelling of
        # the same server (localhost, 127.0.0.1, a socket) is another key, and nothing must be left in silence.
        others = sorted({e.ledger for e in spool.read().pending if e.ledger != here})
        print(
            f"  NOT replayed: {report.other_ledgers} record(s) owed to another ledger ({', '.join(others)}), not "
            f"{here}; run `drillbook ledger flush --ledger-dsn DSN` with the DSN those runs used (the same server "
            "spelt as they spelt it)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # a quarantine is loud once (exit 2 on the flush that made it), then the spool is clean again
    return (
        EXIT_OK if not report.remaining and not report.unreadable and not report.quarantined else EXIT_USAGE
    )


def _print_rejected(spool: Any) -> int:
    rejected = spool.rejected()
    if rejected:
        print(
            f"  {rejected} entr{'y' if rejected == 1 else 'ies'} kept for an auditor in {spool.rejected_path}",
            file=sys.stderr,
        )
    return EXIT_OK


@_guarded
def cmd_evidence_checkpoint(args: argparse.Namespace) -> int:
    """Sign the chain head now and store the checkpoint in the database (and outside it when configured)."""
    from drillbook.cli.config import settings_of
    from drillbook.ledger.checkpoint import PATH_ENV, CheckpointSettings

    settings = CheckpointSettings.from_settings(settings_of(args))
    with _ledger(args) as ledger:
        cp = ledger.checkpoint(source="cli", settings=settings)
    print(f"checkpoint seq={cp.seq} hash={cp.hash} at {cp.signed_at}")
    if cp.signed:
        print(f"  signed with Ed25519 key {cp.key_id} (public key {cp.public_key})")
    else:
        print(
            "  UNSIGNED: no signing key is configured (DRILLBOOK_CHECKPOINT_KEY or the drillbook_checkpoint_key "
            "connection); it catches rows cut from the end, but not someone who can also rewrite checkpoints"
        )
    print(
        f"  stored in the ledger database{f' and in {settings.path}' if settings.path else ''}"
        + ("" if settings.path else f"; set {PATH_ENV} to keep a copy outside the database")
    )
    return EXIT_OK
