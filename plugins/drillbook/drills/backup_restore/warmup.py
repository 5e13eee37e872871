"""Warm the drill's own tools up outside the RTO: the "warm-up" phase.

Rule this module enforces: RTO measures restoring and verifying the data, not drillbook's
cost of loading itself. Importing Great Expectations takes 5-8 s idle and far more under load,
and building a suite's expectations takes more; inside the quality rung it used to land in the
measured RTO (24-81 s of "dq orders: load suite" around a 0.5 s restore). So the modules the
verify ladder needs, GX and every suite of ``verify.suites`` are loaded here, in a phase of
their own whose seconds are recorded (``phase_seconds["warm-up"]`` and
``measurements.values["warm_up_seconds"]``), and the drill subtracts them from its RTO.

A warm-up that fails never decides anything: a suite that does not load, or GX that is not
installed, is left for the quality rung, which reports it as it always has; the warm-up phase
only says what it could not prepare.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from drillbook.drills.base import ResultBuilder

PHASE = "warm-up"


def warm_up(builder: ResultBuilder, *, suites: Sequence[str], suites_dir: Path) -> float:
    """Import the verify ladder and, when suites are named, GX and each suite; return the phase's seconds."""
    started = time.monotonic()
    with builder.phase(PHASE) as ph:
        notes: list[str] = []
        try:  # the ladder's modules: psycopg and the rungs
            import drillbook.drills.backup_restore.verify
        except ImportError as exc:
            notes.append(f"verify ladder not importable ({exc.name or exc}); the verify phase reports it")
        if suites:
            try:
                from drillbook.drills.data_quality.suites import SuiteInvalid, import_gx, load_suite

                import_gx()
                import drillbook.drills.data_quality.engine  # noqa: F401
            except ImportError as exc:
                notes.append(
                    f"data-quality engine not importable ({exc.name or exc}); the quality rung reports it"
                )
            else:
                for suite in suites:
                    try:
                        load_suite(suite, suites_dir=suites_dir, gx_check=True)
                    except SuiteInvalid:
                        notes.append(f"suite {suite!r} does not load; the quality rung reports it")
        loaded = f"GX and {len(suites)} suite(s)" if suites else "no suites to load"
        ph.detail = "; ".join([f"tools loaded outside the RTO ({loaded})", *notes])
    seconds = round(time.monotonic() - started, 4)
    builder.measurements.values["warm_up_seconds"] = seconds
    return seconds
