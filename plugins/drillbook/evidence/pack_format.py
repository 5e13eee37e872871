"""What an evidence pack holds and how its sample is drawn: the names both the writer and the offline verify use.

Rules this module enforces:
- the pack holds (names are fixed, see ``FILES``): the control's records as
  ``records.json`` and ``records.csv`` (the ledger export's canonical form,
  with link rows for every record left out from the first included one to the
  head, so the included records form one unbroken chain that a dropped row
  breaks), ``population.csv`` (every expected occurrence, numbered, with its
  outcome), ``sample.json`` (the sample, its seed and the rule), ``controls.json``
  (the control's row with every exception), ``chain.json`` (head, signed
  checkpoints inside the range), ``oscal-assessment-results.json``, a static
  ``report.html``, and ``manifest.json`` with the sha256 and size of each file,
  signed (Ed25519, the checkpoint key) in ``manifest.sig``. Without a key the
  manifest says ``"signed": false`` and verify refuses to call the pack authentic;
- the sample size follows the usual audit practice for the control's frequency
  (the most frequent of its drills): daily or more often 25, weekly 10, monthly 3,
  quarterly 2, annual 1 (the whole population when smaller). The sample is
  ``random.Random(seed).sample(range(1, N + 1), k)`` over the numbered rows of
  population.csv, sorted; the seed is printed, stored in sample.json and chosen
  at random unless given, so anyone can redraw it;
- standard library only: the offline verify imports this without a database driver.
"""

from __future__ import annotations

import random

PACK_FORMAT = "drillbook-evidence-pack/1"
FILES = (
    "records.json",
    "records.csv",
    "population.csv",
    "sample.json",
    "controls.json",
    "chain.json",
    "oscal-assessment-results.json",
    "report.html",
)
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
#: (longest interval between runs, frequency, sample size): AICPA-style sampling for a control's frequency
SAMPLE_RULE = (
    (86400.0, "daily", 25),
    (7 * 86400.0, "weekly", 10),
    (31 * 86400.0, "monthly", 3),
    (92 * 86400.0, "quarterly", 2),
    (float("inf"), "annual", 1),
)
POPULATION_HEADER = (
    "n",
    "drill",
    "kind",
    "due_utc",
    "window_end_utc",
    "outcome",
    "runs",
    "newest_run_id",
    "newest_run_at_utc",
    "newest_first_seq",
    "newest_last_seq",
)
MANIFEST_SIG_DOMAIN = b"drillbook-evidence-pack/1 manifest\n"


def sample_rule(interval_seconds: float) -> tuple[str, int]:
    """(frequency word, sample size) for a control whose drills run at most ``interval_seconds`` apart."""
    return next((word, size) for limit, word, size in SAMPLE_RULE if interval_seconds <= limit * 1.01)


def choose_sample(population_size: int, size: int, seed: int) -> list[int]:
    """The 1-based population rows of the sample: reproducible from ``seed`` alone."""
    # not a secret: the point is that anyone redraws the same rows from the printed seed
    return sorted(random.Random(seed).sample(range(1, population_size + 1), min(size, population_size)))  # noqa: S311
