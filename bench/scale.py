"""Issue 14's Targets table in one run: a 1M-record ledger and a 1,000-drill catalogue, each row vs its baseline.

    nice .venv/bin/python bench/scale.py                 # full size: 1,000,000 records, 1,000 drills, 300 endpoints
    .venv/bin/python bench/scale.py --small              # toy size (tests/foundation/test_bench_smoke.py)

Rows, each printed as ``ratio ... N.NNx`` against a baseline measured in this run, with peak RSS:

- DAG parse of every file in ``dags/`` against the 1,000-drill catalogue, each file in a forked child of
  a process that has imported Airflow (as Airflow's DAG processor forks one per file), with the on-disk
  compiled catalogue warm and cold; baseline: Airflow building the same DAGs (same ids, schedules, task
  ids and edges) from a Python literal, in the same kind of child. Target <= 1.5x. The warm parses and the
  literals run ``--rounds`` times (default 5), alternating, and the row reports each one's median: one sample
  of each, as before, swung the ratio from 1.4x to 2.1x between two runs minutes apart at load 3.
- ``drillbook validate`` of the shipped catalogue (CPU and peak RSS of the process); baseline: a bare
  ``python -c pass``. Target < 0.5 s CPU and < 80 MB.
- the ledger rows (digest daily/monthly, full verify vs COPY, list vs count(*)): ``bench/ledger.py
  --rows N`` builds the ledger once and prints them; its lines are relayed as they are.
- certificates at 300 endpoints vs the sequential openssl loop: ``bench/certificates.py``, relayed.

Heap: Airflow's DAG processor manager calls ``gc.freeze()`` before it forks a parser per file, so the DAG-parse
row's parent does too before forking either side's children; ``--no-gc-freeze`` forks from an unfrozen heap,
where a full collection in a child also scans the parent's ~170,000 objects (0.1-0.17 s each) and lands on
whichever side happens to cross the collector's threshold.

Bytecode: an installed drillbook has its modules (and its dependencies') compiled (``pip install`` compiles
``.pyc`` files, the Dockerfile installs with pip), but the development venv has none and the Makefile sets
``PYTHONDONTWRITEBYTECODE``, so every process of this bench would compile pydantic, pydantic-settings and
drillbook from source and count it as drillbook's cost. The DAG-parse and validate rows therefore run with a
private bytecode cache in the bench's temporary directory (``PYTHONPYCACHEPREFIX``), warmed by one untimed
run; ``--no-bytecode`` runs with the environment as it is (under ``make``: nothing written, so whatever
``.pyc`` files the venv happens to hold; none in a fresh ``uv sync``, and never any for ``plugins/``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "plugins"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the catalogue -----------------------------------------------------------------------------------
def build_catalogue(dest: Path, drills: int) -> Path:
    """``drills`` drills cycling through the shipped catalogue's four, with its references and suites beside."""
    dest.mkdir(parents=True, exist_ok=True)
    for sub in ("references", "expectations"):
        shutil.copytree(REPO / "include" / sub, dest / sub, dirs_exist_ok=True)
    text = (REPO / "include" / "drills.yaml").read_text()
    head, body = text.split("\ndrills:\n", 1)
    items = [item.strip("\n") for item in re.split(r"\n(?=  - name: )", "\n" + body) if item.strip()]
    out = [head, "\ndrills:\n"]
    for n in range(drills):
        item = items[n % len(items)]
        out.append(
            re.sub(r"^  - name: (\w+)", lambda m, n=n: f"  - name: {m.group(1)}_{n}", item, count=1) + "\n"
        )
    path = dest / "drills.yaml"
    path.write_text("".join(out))
    return path


# -- forked children, as Airflow's DAG processor parses each file ---------------------------------
def in_child(fn: Any) -> tuple[float, float, Any]:
    """Run ``fn()`` in a forked child; return its CPU seconds, its peak RSS (MB) and its JSON result."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        code = 0
        try:
            start = time.process_time()
            value = fn()
            payload = json.dumps({"cpu": time.process_time() - start, "value": value})
        except BaseException as exc:  # report, never hang the parent
            payload, code = json.dumps({"error": f"{type(exc).__name__}: {exc}"[:4000]}), 1
        with os.fdopen(write, "w") as handle:
            handle.write(payload)
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as handle:
        payload = handle.read()
    _, _, usage = os.wait4(pid, 0)
    doc = json.loads(payload)
    if "error" in doc:
        raise RuntimeError(doc["error"])
    return float(doc["cpu"]), usage.ru_maxrss / 1024, doc["value"]


def parse_dag_file(path: Path) -> Any:
    """Child: run a DAG file like the DAG processor and describe every DAG it made (for the baseline literal)."""
    import runpy

    from airflow.sdk import DAG

    found = runpy.run_path(str(path), run_name=f"unusual_prefix_{path.stem}")
    shapes = []
    for dag in found.values():
        if isinstance(dag, DAG):
            shapes.append(
                [
                    dag.dag_id,
                    str(dag.schedule) if dag.schedule is not None else None,
                    [[t.task_id, sorted(t.downstream_task_ids)] for t in dag.tasks],
                ]
            )
    return shapes


def build_from_literal(shapes: list[Any]) -> int:
    """Child: the baseline, Airflow building the same DAGs from a Python literal (PythonOperator tasks)."""
    from datetime import datetime

    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    def noop() -> None:
        return None

    count = 0
    for dag_id, schedule, tasks in shapes:
        with DAG(
            dag_id=dag_id,
            schedule=schedule,
            start_date=datetime(2026, 1, 1),
            catchup=False,
            max_active_runs=1,
            tags=["baseline"],
            default_args={"owner": "ops", "retries": 1},
        ):
            made = {task_id: PythonOperator(task_id=task_id, python_callable=noop) for task_id, _ in tasks}
            for task_id, downstream in tasks:
                for other in downstream:
                    made[task_id] >> made[other]
        count += 1
    return count


def dag_parse_row(
    catalogue: Path, cache: Path, *, warm_up: bool, gc_freeze: bool = True, rounds: int = 1
) -> None:
    os.environ["DRILLBOOK_CATALOGUE"] = str(catalogue)
    os.environ["DRILLBOOK_CACHE_DIR"] = str(cache)
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    # the DAG processor has Airflow loaded before it forks a file's parser; the baseline's operator module too,
    # so both sides pay construction, not a first import
    import airflow.providers.standard.operators.python
    import airflow.sdk  # noqa: F401

    if gc_freeze:
        # as Airflow's DagFileProcessorManager.before_run does before it forks a parser per file
        # (airflow/dag_processing/manager.py: gc.freeze(), "to prevent COW in forked process"): the parent's
        # heap is in the permanent generation, so a full collection in a child scans what the child made, not
        # Airflow's ~170,000 objects. Without it, whichever side happened to cross the full-collection
        # threshold paid 0.1-0.17 s for one collection (--no-gc-freeze measures that layout). Both sides alike.
        import gc

        gc.collect()
        gc.freeze()
    files = sorted((REPO / "dags").glob("*.py"))
    results: dict[str, dict[str, float]] = {"cold": {}, "warm": {}}
    shapes_of: dict[str, list[Any]] = {}
    rss = 0.0
    if warm_up:  # untimed: writes the bytecode of every module a parse or the baseline imports
        for path in files:
            _, _, shapes = in_child(lambda path=path: parse_dag_file(path))
            in_child(lambda shapes=shapes: build_from_literal(shapes))
    shutil.rmtree(cache, ignore_errors=True)
    for path in files:  # cold: the first file compiles the catalogue, the others share it
        cpu, child_rss, shapes = in_child(lambda path=path: parse_dag_file(path))
        results["cold"][path.name] = cpu
        shapes_of[path.name] = shapes
        rss = max(rss, child_rss)
    # warm, and the baseline: `rounds` rounds, each file's parse and its literal alternately (on a shared machine
    # one sample of each swings by a third), the median of each
    warm: dict[str, list[float]] = {path.name: [] for path in files}
    literal: dict[str, list[float]] = {path.name: [] for path in files}
    for _ in range(rounds):
        for path in files:
            cpu, child_rss, shapes = in_child(lambda path=path: parse_dag_file(path))
            if shapes != shapes_of[path.name]:
                raise RuntimeError(f"{path.name}: a warm parse made other DAGs than the cold one")
            warm[path.name].append(cpu)
            rss = max(rss, child_rss)
            cpu, child_rss, _ = in_child(lambda shapes=shapes_of[path.name]: build_from_literal(shapes))
            literal[path.name].append(cpu)
            rss = max(rss, child_rss)
    results["warm"] = {name: statistics.median(v) for name, v in warm.items()}
    base = {name: statistics.median(v) for name, v in literal.items()}
    dags = sum(len(s) for s in shapes_of.values())
    tasks = sum(len(d[2]) for s in shapes_of.values() for d in s)
    total_base = sum(base.values())
    for path in files:
        name = path.name
        print(
            f"  {name:<24} {len(shapes_of[name]):5d} DAGs   drillbook {results['warm'][name]:6.2f} s CPU "
            f"(cold cache {results['cold'][name]:5.2f} s)   Airflow from a literal {base[name]:6.2f} s"
        )
    total, cold = sum(results["warm"].values()), sum(results["cold"].values())
    print(
        f"DAG parse, every file ({dags} DAGs, {tasks} tasks; medians of {rounds} round(s)): drillbook {total:.2f} s CPU, "
        "Airflow from a literal "
        f"{total_base:.2f} s   ratio {total / total_base:.2f}x (target <= 1.5x: {'met' if total <= 1.5 * total_base else 'NOT met'})"
    )
    print(
        f"DAG parse, first parse after a catalogue change (cold cache): {cold:.2f} s CPU   ratio {cold / total_base:.2f}x"
    )
    print(f"DAG parse peak RSS of one file's parse: {rss:.0f} MB")


# -- drillbook validate ------------------------------------------------------------------------------
# ru_maxrss of a forked child keeps the parent's size from before exec; VmHWM of the exec'd process does not
REPORT = (
    "import atexit, re, sys\n"
    "def _report():\n"
    "    hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
    "    sys.stderr.write(f'VmHWM {int(hwm.group(1)) if hwm else 0}\\n')\n"
    "atexit.register(_report)\n"
)


def use_bytecode_cache(prefix: Path) -> None:
    """Load and write bytecode only under ``prefix`` (never ``__pycache__`` beside the sources, whatever another
    run left in the shared venv) in this process and its children, as an installed package has it."""
    prefix.mkdir(parents=True, exist_ok=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)
    sys.dont_write_bytecode = False
    sys.pycache_prefix = str(prefix)


def child_usage(code: str) -> tuple[float, float, int]:
    """CPU seconds (``wait4``: this child's own), peak RSS (MB, its VmHWM) and exit code of ``python -c code``."""
    env = {**os.environ, "PYTHONPATH": str(PLUGINS)}
    env.pop("DRILLBOOK_SUITE_CHECK", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", REPORT + code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(err[-2000:])
    found = re.findall(r"VmHWM (\d+)", err)
    return usage.ru_utime + usage.ru_stime, (int(found[-1]) / 1024 if found else 0.0), proc.returncode


def validate_row(rounds: int, *, warm_up: bool) -> None:
    shipped = str(REPO / "include" / "drills.yaml")
    if warm_up:  # untimed: writes the bytecode the timed runs load
        child_usage(f"from drillbook.cli import main\nsys.exit(main(['validate', {shipped!r}]))")
    runs = [
        child_usage(f"from drillbook.cli import main\nsys.exit(main(['validate', {shipped!r}]))")
        for _ in range(rounds)
    ]
    bare = [child_usage("pass") for _ in range(rounds)]
    if any(code for _, _, code in runs):
        print("drillbook validate: FAILED (non-zero exit); see stderr")
        return
    cpu = sorted(r[0] for r in runs)[len(runs) // 2]
    rss = max(r[1] for r in runs)
    base_cpu = sorted(b[0] for b in bare)[len(bare) // 2]
    met = cpu < 0.5 and rss < 80
    print(
        f"drillbook validate (shipped catalogue): {cpu:.2f} s CPU, peak RSS {rss:.0f} MB; bare python {base_cpu:.2f} s"
        f"   ratio {cpu / base_cpu:.2f}x (target < 0.5 s CPU and < 80 MB: {'met' if met else 'NOT met'})"
    )


# -- relayed benchmarks ------------------------------------------------------------------------------
def relay(title: str, argv: list[str], timeout: float) -> None:
    print(f"--- {title}: {' '.join(argv[1:])}", flush=True)
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(PLUGINS)},
    )
    for line in proc.stdout.splitlines():
        print(f"  {line}")
    if proc.returncode:
        print(f"  {title}: FAILED with exit {proc.returncode}: {proc.stderr.strip()[-1500:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--small",
        action="store_true",
        help="toy size for the smoke test: 40 drills, 2,000 records, 12 endpoints",
    )
    parser.add_argument("--drills", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--endpoints", type=int, default=None)
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="DAG-parse and validate rows without compiled bytecode (every import compiles from source)",
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="DAG-parse row: fork the children from an unfrozen heap (Airflow's DAG processor freezes it)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="DAG-parse row: rounds of warm parses and literals, alternating, medians (default 5; 1 with --small)",
    )
    parser.add_argument(
        "--only",
        choices=["dags", "validate", "ledger", "certificates"],
        action="append",
        help="run only these rows (repeatable)",
    )
    args = parser.parse_args()
    drills = args.drills or (40 if args.small else 1000)
    rows = args.rows or (2000 if args.small else 1_000_000)
    endpoints = args.endpoints or (12 if args.small else 300)
    only = set(args.only or ["dags", "validate", "ledger", "certificates"])
    print(
        f"bench/scale.py: {drills} drills, {rows:,} ledger records, {endpoints} endpoints; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    # the relayed benchmarks first: a child forked after Airflow is imported here would report this
    # process's size as its own peak RSS (ru_maxrss survives exec)
    if "ledger" in only:
        ledger_bench = REPO / "bench" / "ledger.py"
        # bench/ledger.py builds the ledger once; with --scale-only (issue 14 part A) it prints only the scale rows
        scale_only = ["--scale-only"] if "--scale-only" in ledger_bench.read_text() else []
        relay("ledger", [sys.executable, str(ledger_bench), "--rows", str(rows), *scale_only], timeout=7200)
    if "certificates" in only:
        relay(
            "certificates",
            [sys.executable, str(REPO / "bench" / "certificates.py"), "--endpoints", str(endpoints)],
            timeout=1800,
        )
    with tempfile.TemporaryDirectory(prefix="drillbook-scale-") as tmp:
        bytecode = not args.no_bytecode
        print(
            "DAG-parse and validate rows: "
            + ("bytecode compiled once, as installed" if bytecode else "no bytecode (--no-bytecode)")
        )
        if bytecode:
            use_bytecode_cache(Path(tmp) / "pycache")
        if "dags" in only:
            catalogue = build_catalogue(Path(tmp) / "include", drills)
            print(
                "DAG-parse row: children forked "
                + (
                    "from a frozen heap (gc.freeze(), as Airflow's DAG processor)"
                    if not args.no_gc_freeze
                    else "from an unfrozen heap (--no-gc-freeze)"
                )
            )
            dag_parse_row(
                catalogue,
                Path(tmp) / "cache",
                warm_up=bytecode,
                gc_freeze=not args.no_gc_freeze,
                rounds=args.rounds or (1 if args.small else 5),
            )
        if "validate" in only:
            validate_row(3 if args.small else 5, warm_up=bytecode)
    print(f"peak RSS of bench/scale.py itself: {peak_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(PLUGINS))
    sys.exit(main())
