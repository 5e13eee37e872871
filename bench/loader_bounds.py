"""Measure the YAML loader on hostile shapes and on a realistic 1,000-drill catalogue.

Each shape is loaded by ``load_catalogue`` in a fresh subprocess, which prints
its wall time and peak resident memory (``VmHWM``); the import cost is measured
the same way (an empty catalogue) and printed as the baseline. Every hostile
shape must be refused in under 1 s and under 100 MB; the realistic catalogue
must load.

    python bench/loader_bounds.py [--drills 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
sys.path.insert(0, str(PLUGINS))

from drillbook.catalogue.reader import MAX_NODES, MAX_YAML_BYTES  # noqa: E402

DRILL = """\
  - name: shop_{i}
    kind: backup_restore
    description: Restore last night's dump of shop {i} and prove the orders came back.
    schedule: "30 3 * * *"
    owner: dba-team
    controls: ["SOC2:A1.2", "SOC2:A1.3", "ISO27001:A.8.13", "NIST:CP-9(1)", "DORA:Art.12"]
    source:
      connection: drillbook_source
    backup:
      location: /var/backups/shop{i}
      pattern: "shop-*.dump"
    scratch:
      connection: drillbook_scratch
      max_age: 6h
    objectives:
      rto: 15m
      rpo: 26h
    verify:
      min_rows:
        public.customers: 100
        public.orders: 1000
      drift_tolerance: 0.1
      rpo_probe: "select max(created_at) from public.orders"
      checks:
        - name: every order has a customer
          sql: "select count(*) from public.orders o left join public.customers c on c.id = o.customer_id where c.id is null"
          expect: "== 0"
"""


def realistic(drills: int) -> str:
    return "version: 1\ndefaults:\n  owner: ops\ndrills:\n" + "".join(
        DRILL.format(i=i) for i in range(drills)
    )


def _fill(prefix: str, item: str, suffix: str, budget: int = MAX_YAML_BYTES) -> str:
    """``prefix + item*n + suffix`` as large as fits under ``budget`` bytes."""
    n = (budget - len(prefix) - len(suffix)) // len(item)
    return prefix + item * n + suffix


def hostile_shapes() -> dict[str, str]:
    """Name -> document; each must be refused quickly and in little memory."""
    anchors = "a: [" + ", ".join(f"&a{i} x" for i in range(300_000)) + "]\n"
    aliased = "a: [&m {k: v}" + ", *m" * 300_000 + "]\n"
    small_maps = "a:\n" + "".join(f"  - &m{i} {{k: v}}\n" for i in range(300_000))
    laughs = ["lol0: &a0 [" + ", ".join(['"lol"'] * 9) + "]"]
    laughs += [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return {
        "300k anchors": anchors,
        "300k aliases of one mapping": aliased,
        "300k small anchored mappings": small_maps,
        "billion laughs 9x9": "\n".join(laughs) + "\n",
        "deep flow 10k": "a: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "long key 4 MiB": '"' + "k" * (MAX_YAML_BYTES - 8) + '": 1\n',
        "many long keys": "".join(f'"{i:08d}' + "k" * 990 + '": 1\n' for i in range(MAX_YAML_BYTES // 1004)),
        "many small documents": _fill("", "---\na: 1\n", ""),
        "16 MiB flat list": _fill("[", "1,", "1]\n", 16 * 1024 * 1024),
        "4 MiB flat list": _fill("[", "1,", "1]\n"),
        "4 MiB flat mapping": _fill("{", "a: 1,", "b: 1}\n"),
        "4 MiB block list": _fill("a:\n", "- 1\n", ""),
    }


def largest_within_bounds() -> str:
    """The costliest document the reader lets through: ``MAX_NODES`` plain items (refused later by the schema)."""
    return "a: [" + "x, " * (MAX_NODES - 4) + "x]\n"


PROBE = textwrap.dedent("""\
    import sys, time
    from drillbook.catalogue import load_catalogue
    from drillbook.errors import CatalogueError
    start = time.perf_counter()
    try:
        load_catalogue(sys.argv[1])
        outcome = "loaded"
    except CatalogueError as exc:
        outcome = exc.problems[0].split(": ", 1)[1][:90]
    seconds = time.perf_counter() - start
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(f"{seconds:.3f} {hwm // 1024} {outcome}")
""")


def measure(path: Path) -> tuple[float, int, str]:
    """Load ``path`` in a fresh process: (seconds, peak MB, outcome)."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(PLUGINS), "PATH": "/usr/bin:/bin"},
    )
    if proc.returncode != 0:
        return float("nan"), 0, "CRASHED: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    seconds, mb, outcome = proc.stdout.strip().split(" ", 2)
    return float(seconds), int(mb), outcome


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--drills", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="drillbook-bench-loader-"))
    cases = {
        "baseline (empty catalogue)": "version: 1\ndrills: []\n",
        f"realistic {args.drills} drills": realistic(args.drills),
        f"{MAX_NODES:,} nodes (within bounds)": largest_within_bounds(),
        **hostile_shapes(),
    }
    print(f"{'shape':34} {'bytes':>10} {'median s':>9} {'peak MB':>8}  outcome")
    results: dict[str, tuple[float, int]] = {}
    for name, text in cases.items():
        path = tmp / (name.replace(" ", "_") + ".yaml")
        path.write_text(text)
        runs = [measure(path) for _ in range(args.rounds)]
        seconds = statistics.median(r[0] for r in runs)
        results[name] = (seconds, max(r[1] for r in runs))
        print(f"{name:34} {len(text):>10,} {seconds:>9.3f} {results[name][1]:>8}  {runs[0][2]}", flush=True)
    hostile = [results[name] for name in hostile_shapes()]
    realistic_s = results[f"realistic {args.drills} drills"][0]
    print(f"ratio slowest hostile refusal / realistic load: {max(h[0] for h in hostile) / realistic_s:.2f}x")
    print(
        f"peak RSS of the worst hostile shape: {max(h[1] for h in hostile)} MB "
        f"(baseline {results['baseline (empty catalogue)'][1]} MB)"
    )


if __name__ == "__main__":
    main()
