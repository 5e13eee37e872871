"""The physical drill's recovery phases: start the cluster, recover to the target, promote, prove the target.

Rules this module enforces (called by drill.py):
- ``recover``: start, the same assertion as ``safety`` from pg_settings first
  (``SCRATCH_UNSAFE``), wait for the target, read the last replayed commit,
  promote; a recovery to the archive's end that stops before the newest
  segment the archive check vouched for is ``WAL_GAP``;
- ``pitr_proof``: the catalogue's queries run read-only in the recovered
  database; rows where none are expected, or none where some are, is
  ``PITR_PROOF_FAILED``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drillbook.drills.backup_restore.catalogue import PitrProof
from drillbook.drills.backup_restore.physical import archive_check
from drillbook.drills.backup_restore.physical.cluster import Recovery
from drillbook.drills.backup_restore.physical.cluster_safety import ClusterUnsafe
from drillbook.drills.backup_restore.physical.restored import RecoveryProblem
from drillbook.drills.backup_restore.physical.source import Latest

if TYPE_CHECKING:
    from drillbook.drills.backup_restore.physical.drill import _Physical

PROOF_TIMEOUT_MS = 60_000


def recover_phase(run: _Physical) -> None:
    assert run.cluster is not None
    with run.b.phase("recover") as ph:
        try:
            run.cluster.start()
            run.b.details["scratch_network"] = run.cluster.network
            run.b.details["scratch_running"] = run.cluster.assert_safe_running()
            run.b.checked()
            run.recovery = rec = run.cluster.wait_recovery(
                has_target=not isinstance(run.target, Latest), timeout_s=run.drill.restore.timeout
            )
            _replayed_what_was_checked(run, ph, rec)
            run.cluster.promote()
        except ClusterUnsafe as exc:
            run.fail(ph, "SCRATCH_UNSAFE", str(exc), "recover", "refused after start; stopped")
        except RecoveryProblem as exc:
            run.b.checked()
            run.fail(ph, exc.code, f"{run.target.describe()}: {exc.message}", "recover")
        run.b.checked()
        run.b.measurements.values.update(
            {
                "last_replayed_commit": rec.last_replay.isoformat() if rec.last_replay else None,
                "replay_lsn": rec.replay_lsn,
                "recovery_seconds": round(rec.seconds, 3),
            }
        )
        ph.detail = (
            f"reached {rec.reached} at {rec.replay_lsn}, last replayed commit "
            f"{rec.last_replay.isoformat() if rec.last_replay else 'none after the backup'}; promoted"
        )


def _replayed_what_was_checked(run: _Physical, ph: Any, rec: Recovery) -> None:
    """Recovery to the archive's end must replay through the newest segment the archive check vouched for.

    The check remembers what earlier runs verified and does not list it again; a segment deleted since is
    only seen here, when recovery ends on the hole and would promote without every later transaction.
    """
    bk = run.backup
    if rec.reached != "end of archive" or run.archive_last is None or bk is None or not rec.replay_lsn:
        return
    hi, _, lo = rec.replay_lsn.partition("/")
    try:
        pos = (int(hi, 16) << 32) | int(lo, 16)
    except ValueError:
        return
    size = bk.wal_segment_size
    segno = pos // size if pos % size == 0 else pos // size + 1  # the segment recovery could not read next
    per_log = archive_check.segments_per_log(size)
    _, last_log, last_seg = archive_check.split(run.archive_last)
    if segno <= last_log * per_log + last_seg:
        missing = f"{bk.timeline:08X}{segno // per_log:08X}{segno % per_log:08X}"
        run.b.details["wal_archive"]["replay_ended_before"] = missing
        run.fail(
            ph,
            "WAL_GAP",
            f"recovery ended at {rec.replay_lsn}, before the end of the WAL the archive check "
            f"vouched for (through {run.archive_last}): segment {missing} is missing or unreadable in the "
            f"archive of {run.source.describe()} (removed since it was verified?); every transaction after "
            "it would be lost",
            "recover",
        )


def pitr_proof_phase(run: _Physical, proof: PitrProof) -> None:
    assert run.cluster is not None
    import psycopg

    with run.b.phase("pitr_proof") as ph:
        results = {}
        for key, sql, want_rows in (
            ("must_exist", proof.must_exist, True),
            ("must_not_exist", proof.must_not_exist, False),
        ):
            if not sql:
                continue
            try:
                with psycopg.connect(
                    run.cluster.dsn(proof.database), autocommit=False, connect_timeout=30
                ) as conn:
                    conn.execute("set transaction read only")
                    conn.execute(f"set local statement_timeout = {PROOF_TIMEOUT_MS}")
                    cur = conn.execute(sql)  # type: ignore[arg-type]  # the catalogue's query, read-only txn
                    n = len(cur.fetchmany(1000)) if cur.description else 0
                    conn.rollback()
            except psycopg.Error as exc:
                run.fail(
                    ph,
                    "SEMANTICS_ERROR",
                    f"pitr_proof.{key} could not run in {proof.database!r}: "
                    f"{type(exc).__name__}: {str(exc).strip()[:300]}",
                    "pitr_proof",
                )
            run.b.checked()
            results[key] = n
            if bool(n) != want_rows:
                run.b.find(
                    "PITR_PROOF_FAILED",
                    f"pitr_proof.{key} returned {n} row(s) at {run.target.describe()}; expected "
                    f"{'at least one' if want_rows else 'none'}: {sql.strip()[:200]}",
                    subject=f"pitr_proof.{key}",
                )
                ph.status = "failed"
        run.b.details["pitr_proof"] = results
        ph.detail = ", ".join(f"{k}: {v} row(s)" for k, v in results.items())
