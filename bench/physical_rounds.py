"""The timing loop both physical-backup benchmarks share (bench/physical.py: pgBackRest, bench/barman.py: Barman).

Each round times the bare tool (restore + start + recovery, given as ``bare``) and then the whole drill
on the same backup, in the same process; the medians' ratio and the peak RSS are printed.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def physical_drill(name: str, backup: dict[str, Any], rows: int) -> Any:
    """A backup-restore drill of ``backup`` (a ``{pgbackrest: ...}`` or ``{barman: ...}`` mapping)."""
    from drillbook.drills.backup_restore.catalogue import BackupRestoreDrill

    return BackupRestoreDrill.model_validate(
        {
            "name": name,
            "kind": "backup_restore",
            "schedule": "@daily",
            "backup": backup,
            "scratch": {"connection": "drillbook_scratch"},
            "objectives": {"rto": "4h", "rpo": "26h"},
            "restore": {"timeout": "1h"},
            "verify": {"min_rows": {"public.bench": rows}, "amcheck": True},
        }
    )


def compare_rounds(drill: Any, bare: Callable[[], float], *, rounds: int, bare_label: str, tools: str) -> int:
    """Alternate ``bare()`` and the whole drill ``rounds`` times; print the ratio and peak RSS; 1 if the drill fails."""
    from drillbook.drills.backup_restore.physical.drill import run_physical
    from drillbook.drills.backup_restore.tree_removal import wait_pending

    bare_times, drill_times, fixed, removal = [], [], [], []
    load_before = os.getloadavg()[0]
    state = Path(tempfile.mkdtemp(prefix="drillbook-bench-state-"))
    try:
        for i in range(rounds):
            bare_times.append(bare())
            t0 = time.monotonic()
            result = run_physical(drill=drill, state_dir=state)
            drill_times.append(time.monotonic() - t0)
            # the teardown's directory removal runs after the drill returned (as the bare run's rmtree runs after
            # its timing ends): wait for it here, untimed, so it never overlaps the next round's bare restore
            t1 = time.monotonic()
            wait_pending()
            removal.append(time.monotonic() - t1)
            if result.verdict.value != "PASS":
                print(
                    f"drill verdict {result.verdict.value}: {[(f.code, f.message[:200]) for f in result.findings]}"
                )
                return 1
            tool_s = sum(p.seconds for p in result.phases if p.name in ("restore", "recover"))
            fixed.append(drill_times[-1] - tool_s)
            print(
                f"round {i + 1}: bare {bare_times[-1]:.1f}s, drill {drill_times[-1]:.1f}s "
                f"(phases: {', '.join(f'{p.name} {p.seconds:.1f}s' for p in result.phases)})"
            )
    finally:
        shutil.rmtree(state, ignore_errors=True)
    base, whole = statistics.median(bare_times), statistics.median(drill_times)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{bare_label} median {base:.2f}s, whole drill median {whole:.2f}s")
    print(f"ratio drill / bare: {whole / base:.2f}x (target <= 1.30x)")
    # on a shared machine the tool's own restore varies by several seconds between rounds: the ratio of each
    # round (bare and drill run back to back) and the drill's own part (everything but the tool's restore and
    # the server's start + recovery) are steadier than the ratio of the medians
    paired = statistics.median(d / b for d, b in zip(drill_times, bare_times, strict=True))
    print(
        f"median of per-round ratios: {paired:.2f}x; drill's own part (not restore/recover): median "
        f"{statistics.median(fixed):.2f}s"
    )
    print(
        f"teardown's background directory removal, waited for after each round (untimed, as the bare run's "
        f"rmtree): median {statistics.median(removal):.2f}s"
    )
    print(f"load average (1 min): {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(f"peak RSS: drill process {self_rss:.0f} MB, largest child ({tools}) {child_rss:.0f} MB")
    return 0
