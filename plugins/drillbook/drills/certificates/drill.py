"""Run a certificates drill: one DrillResult per endpoint, per file certificate and per ACM certificate.

Rules this module enforces:
- one result per certificate source item, so the ledger has one row per
  endpoint (an auditor can ask "when was api.example.com:443 last checked?");
- every item is judged by the same rules (``judge.py``); an endpoint that cannot
  be probed, a file that cannot be read and an ACM API that cannot be queried are
  ERROR results with a blocking finding, never silently missing and never PASS
  (``endpoints``, ``at_rest``);
- the Slack side gets one summary for the whole drill (``summarize``): the
  soonest expiries and every failure, built from compact per-item dicts so the
  Airflow layer can pass them through XCom.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillbook.drills.base import ResultBuilder
from drillbook.drills.certificates.at_rest import check_acm, check_files
from drillbook.drills.certificates.endpoints import check_endpoints
from drillbook.drills.certificates.results import _builder
from drillbook.result import DrillResult, Phase, Severity

if TYPE_CHECKING:
    from drillbook.drills.certificates.catalogue import AcmSpec, CertificatesDrill

SOONEST = 10  # expiries listed in the summary


# --- the whole drill -------------------------------------------------------------------------------
def run_certificates(
    drill: CertificatesDrill,
    *,
    base_dir: Path | None = None,
    acm_client: Any = None,
    acm_client_factory: Callable[[AcmSpec], Any] | None = None,
    now: datetime | None = None,
) -> list[DrillResult]:
    """Every endpoint, file certificate and ACM certificate of ``drill``, one DrillResult each."""
    now = now or datetime.now(UTC)
    results = check_endpoints(drill, base_dir=base_dir, now=now) if drill.endpoints else []
    if drill.files:
        results += check_files(drill, base_dir=base_dir, now=now)
    if drill.acm is not None:
        results += check_acm(drill, client=acm_client, client_factory=acm_client_factory, now=now)
    return results


def task_suffix(target: str) -> str:
    """A ledger-key-safe suffix naming one certificate source (distinct per endpoint / file / ACM cert)."""
    return re.sub(r"[^A-Za-z0-9_.:#-]+", "_", target).strip("_")[:200]


# --- the one summary -------------------------------------------------------------------------------
def compact(result: DrillResult) -> dict[str, Any]:
    """The few facts of one item the summary needs (small enough for XCom)."""
    values = result.measurements.values
    return {
        "target": result.target,
        "verdict": result.verdict.value,
        "source": result.details.get("source"),
        "days_left": values.get("chain_days_left", values.get("days_left")),
        "not_after": values.get("chain_not_after", values.get("not_after")),
        "seconds": round(result.duration_seconds, 3),
        "findings": [
            f.model_dump(mode="json") for f in result.findings if f.severity.at_least(Severity.MEDIUM)
        ],
    }


def summarize(
    items: Sequence[DrillResult | dict[str, Any]],
    *,
    drill: CertificatesDrill,
    soonest: int = SOONEST,
    missing_groups: list[str] | None = None,
) -> DrillResult:
    """One DrillResult for the whole drill: worst verdict, every failure, the soonest expiries."""
    from drillbook.result import Finding

    rows = [compact(i) if isinstance(i, DrillResult) else i for i in items]
    dated = sorted((r for r in rows if r.get("days_left") is not None), key=lambda r: r["days_left"])
    target = f"{len(rows)} certificate source(s)"
    if dated:  # the Slack report shows the target: make it say what expires first
        target += f"; soonest {dated[0]['target']} in {dated[0]['days_left']:.1f} d"
    builder = _builder(drill, target)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        for f in row["findings"]:
            builder.add(Finding.model_validate(f))
    checked = sum(1 for r in rows if r["verdict"] in ("PASS", "FAIL"))
    builder.checked(checked)
    for group in missing_groups or []:
        builder.find(
            "DRILL_CRASHED",
            f"the {group} check produced no results (its task failed); see its log",
            subject=group,
        )
    _group_phases(builder, rows)
    builder.details.update(
        {
            "summary": True,
            "verdicts": counts,
            "soonest": [
                {"target": r["target"], "days_left": r["days_left"], "not_after": r["not_after"]}
                for r in dated[:soonest]
            ],
            "failures": [
                {"target": r["target"], "verdict": r["verdict"], "codes": [f["code"] for f in r["findings"]]}
                for r in rows
                if r["verdict"] in ("FAIL", "ERROR")
            ],
        }
    )
    builder.measurements.counts.update({f"verdict_{k.lower()}": v for k, v in counts.items()})
    builder.measurements.counts["items"] = len(rows)
    if dated:
        builder.measurements.values["soonest_days_left"] = dated[0]["days_left"]
    return builder.finish()


def _group_phases(builder: ResultBuilder, rows: list[dict[str, Any]]) -> None:
    """One phase line per source group: how many were checked, the verdicts, and what expires first."""
    for source in ("endpoint", "file", "acm"):
        group = [r for r in rows if r.get("source") == source]
        if not group:
            continue
        verdicts: dict[str, int] = {}
        for r in group:
            verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
        soon = sorted((r for r in group if r.get("days_left") is not None), key=lambda r: r["days_left"])[:3]
        detail = f"{len(group)} checked: " + ", ".join(f"{v} {k}" for k, v in sorted(verdicts.items()))
        if soon:
            detail += "; soonest " + ", ".join(f"{r['target']} {r['days_left']:.1f} d" for r in soon)
        bad = any(r["verdict"] in ("FAIL", "ERROR") for r in group)
        seconds = max((float(r.get("seconds") or 0.0) for r in group), default=0.0)
        builder.phases.append(
            Phase(name=f"{source}s", status="failed" if bad else "ok", seconds=seconds, detail=detail)
        )


def summary_lines(summary: DrillResult) -> list[str]:
    """Plain text lines of a summary (for the CLI and a notifier that wants text)."""
    d = summary.details
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(d.get("verdicts", {}).items()))
    lines = [f"certificates drill {summary.drill!r}: {summary.verdict.value} ({verdicts})"]
    if d.get("soonest"):
        lines.append("soonest expiries:")
        lines += [f"  {s['days_left']:>8.1f} d  {s['target']}  ({s['not_after']})" for s in d["soonest"]]
    if d.get("failures"):
        lines.append("failures:")
        lines += [
            f"  {f['verdict']:<5} {f['target']}: {', '.join(f['codes']) or 'no finding'}"
            for f in d["failures"]
        ]
    return lines
