"""Measure what Airflow's DAG processor pays to parse drillbook's drill DAGs: one file for every kind vs one per kind.

The baseline is the layout before the drill-kind registry: one DAG file per kind
(``build_dags("<kind>")``), each parsed in its own process as the DAG processor
does, so each reads the catalogue again. The candidate is ``dags/dr_drills.py``
(``build_all_dags()``): one file, one catalogue read. Both are written into
temporary folders from the same code and parsed with ``DagBag`` in fresh
subprocesses that have already imported Airflow (its import is not DAG-file
cost); the script prints the wall time of each, the ratio of the totals, and the
peak resident memory (``VmHWM``) of the worst parse.

    python bench/dag_parse.py [--drills 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"
KINDS = (
    "backup_restore",
    "data_quality",
    "certificates",
    "alert_path",
)  # the four per-kind files of the baseline

PARSE = """
import json, os, sys, time
import airflow  # noqa: F401 - loaded before the clock starts: the DAG processor has it already
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - start
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "dags": len(bag.dags), "errors": len(bag.import_errors), "hwm_kb": hwm}))
"""


def catalogue(drills: int) -> str:
    """The shipped catalogue's four drills, repeated to ``drills`` entries (names made unique)."""
    import yaml

    doc = yaml.safe_load((REPO / "include" / "drills.yaml").read_text())
    shipped = doc["drills"]
    doc["drills"] = [
        {**shipped[i % len(shipped)], "name": f"{shipped[i % len(shipped)]['name']}_{i}"}
        for i in range(drills)
    ]
    return yaml.safe_dump(doc, sort_keys=False)


def parse(path: Path, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", PARSE, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"parsing {path} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise SystemExit(f"{path}: {result['errors']} import error(s)")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--drills", type=int, default=40, help="catalogue entries (the shipped four, repeated)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drillbook-bench-parse-") as tmp:
        root = Path(tmp)
        (root / "expectations").symlink_to(REPO / "include" / "expectations")
        for extra in ("references", "certs"):
            if (REPO / "include" / extra).exists():
                (root / extra).symlink_to(REPO / "include" / extra)
        (root / "drills.yaml").write_text(catalogue(args.drills))
        per_kind, one = root / "per_kind", root / "one"
        per_kind.mkdir()
        one.mkdir()
        head = "from drillbook.airflow.factory import {name}\n\nglobals().update({name}({arg}))\n"
        for kind in KINDS:
            (per_kind / f"dr_{kind}.py").write_text(head.format(name="build_dags", arg=repr(kind)))
        (one / "dr_drills.py").write_text(head.format(name="build_all_dags", arg=""))
        env = {
            **os.environ,
            "PYTHONPATH": str(PLUGINS),
            "DRILLBOOK_CATALOGUE": str(root / "drills.yaml"),
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        base_totals, new_totals, peaks = [], [], []
        for _ in range(args.rounds):
            runs = [parse(per_kind / f"dr_{kind}.py", env) for kind in KINDS]
            base_totals.append(sum(r["seconds"] for r in runs))
            new = parse(one / "dr_drills.py", env)
            assert new["dags"] == sum(r["dags"] for r in runs), (new, runs)
            new_totals.append(new["seconds"])
            peaks += [r["hwm_kb"] for r in runs] + [new["hwm_kb"]]
        base, cand = statistics.median(base_totals), statistics.median(new_totals)
        print(f"catalogue: {args.drills} drills, {len(KINDS)} kinds, {args.rounds} round(s), median of each")
        print(f"baseline  one file per kind, each its own process: {base:7.3f} s in total")
        print(f"candidate dags/dr_drills.py, one process:          {cand:7.3f} s")
        print(f"ratio baseline/candidate: {base / cand:.2f}x")
        print(f"peak RSS of the worst parse: {max(peaks) / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
