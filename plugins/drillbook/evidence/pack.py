"""The evidence pack: one zip an auditor takes away for a control and a period, signed, verifiable offline.

Rules this module enforces (what the pack holds and how its sample is drawn: ``pack_format``):
- streaming: records go from PostgreSQL's COPY into the zip entry; the
  population is written to a temporary file while the control is tallied, then
  copied into the zip while the sampled rows are picked. Nothing holds the
  period's records in memory.
"""

from __future__ import annotations

import csv
import secrets
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from drillbook.errors import ConfigurationError
from drillbook.evidence.pack_format import (
    MANIFEST,
    MANIFEST_SIG_DOMAIN,
    PACK_FORMAT,
    POPULATION_HEADER,
    SIGNATURE,
    choose_sample,
    sample_rule,
)
from drillbook.evidence.pack_zip import _copy_population, _head_of, _json, _Zip

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.evidence.controls import ControlRow
    from drillbook.evidence.population import Occurrence
    from drillbook.ledger.checkpoint import CheckpointSettings


def _ts(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class PackResult:
    path: Path
    control: str
    records: int
    population: int
    sample: list[int]
    seed: int
    head_seq: int | None
    head_hash: str | None
    signed: bool
    key_id: str | None
    status: str


def _population_row(n: int, occ: Occurrence) -> list[str]:
    newest = occ.newest
    return [
        str(n),
        occ.series.drill,
        occ.series.kind,
        _ts(occ.due),
        _ts(occ.window_end),
        occ.outcome,
        str(len(occ.runs)),
        newest.run_id if newest else "",
        _ts(newest.last_at) if newest else "",
        str(newest.first_seq) if newest else "",
        str(newest.last_seq) if newest else "",
    ]


def _interval(catalogue: Catalogue, control: str) -> float:
    from drillbook.catalogue.common import schedule_interval_seconds
    from drillbook.evidence.population import series_of

    gaps = [
        s.every if s.every is not None else schedule_interval_seconds(s.schedule)
        for s in series_of(catalogue, control=control)
    ]
    return min(gaps) if gaps else float("inf")


def write_pack(
    ledger: Any,
    catalogue: Catalogue,
    *,
    control: str,
    start: datetime,
    end: datetime,
    output: Path,
    settings: CheckpointSettings,
    seed: int | None = None,
    as_of: datetime | None = None,
    unverifiable: str | None = None,
) -> PackResult:
    """Write the evidence pack of ``control`` over [start, end) to ``output`` (see the module docstring)."""
    from drillbook import __version__
    from drillbook.evidence import oscal
    from drillbook.evidence.controls import control_rows
    from drillbook.ledger import checkpoint as cpmod
    from drillbook.ledger.export import export_records
    from drillbook.ledger.query import Filter

    if not any(control in d.controls for d in catalogue.drills if d.enabled):
        known = sorted({c for d in catalogue.drills if d.enabled for c in d.controls})
        raise ConfigurationError(
            f"--control {control!r} is not mapped to any enabled drill in the catalogue; "
            f"known controls: {', '.join(known) or 'none'}"
        )
    created = as_of or datetime.now(UTC)
    seed = secrets.randbits(63) if seed is None else seed
    conn = ledger.connection
    partial = output.with_name(output.name + ".partial")
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as spill:
        writer = csv.writer(spill)
        writer.writerow(POPULATION_HEADER)
        counter = {"n": 0}

        def each(occ: Occurrence) -> None:
            if occ.outcome == "PENDING":
                return  # not yet due (inside the watchdog's grace): not part of the period's population
            counter["n"] += 1
            writer.writerow(_population_row(counter["n"], occ))

        (row,) = control_rows(
            conn,
            catalogue,
            start=start,
            end=end,
            as_of=created,
            only=control,
            each=each,
            unverifiable=unverifiable,
        )
        population_size = counter["n"]
        frequency, size = sample_rule(_interval(catalogue, control))
        chosen = choose_sample(population_size, size, seed)
        try:
            with zipfile.ZipFile(partial, "w", allowZip64=True) as zf:
                pack = _Zip(zf, created)
                flt = Filter.build(since=start, until=end, control=control)
                # One snapshot for both exports: a record appended between them (drills keep writing) would
                # otherwise give records.csv one more link row than records.json. The exports' own
                # SET TRANSACTION ISOLATION LEVEL REPEATABLE READ is then a no-op (same level, PostgreSQL allows it).
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    conn.execute("SELECT 1")  # take the snapshot now
                    raw, out = pack.open("records.json")
                    count = export_records(conn, cast(IO[bytes], out), flt=flt, fmt="json")
                    pack.close("records.json", raw, out)
                    head_seq, head_hash = _head_of(out.tail)
                    raw, out = pack.open("records.csv")
                    export_records(conn, cast(IO[bytes], out), flt=flt, fmt="csv")
                    pack.close("records.csv", raw, out)
                sampled = _copy_population(spill, pack, set(chosen))
                pack.put(
                    "sample.json",
                    _json(
                        {
                            "seed": seed,
                            "frequency": frequency,
                            "size": len(chosen),
                            "population_size": population_size,
                            "rule": "random.Random(seed).sample(range(1, population_size + 1), min(size, population_size)), "
                            "sorted; size by frequency: daily or more often 25, weekly 10, monthly 3, quarterly 2, annual 1",
                            "rows": chosen,
                            "sample": sampled,
                        }
                    ),
                )
                pack.put("controls.json", _json(_control_doc(row, start=start, end=end)))
                first_seq = _first_seq(conn, flt)
                checkpoints = _checkpoints(ledger, settings, first_seq, head_seq)
                pack.put(
                    "chain.json",
                    _json(
                        {
                            "head": {"seq": head_seq, "hash": head_hash},
                            "first_seq": first_seq,
                            "records": count,
                            "checkpoints": checkpoints,
                            "proof": "records.json and records.csv hold every record of the control in the period and a link row "
                            "(seq, prev_hash, hash) for every other record from first_seq to the head, so the records "
                            "form one chain; each checkpoint signs (seq, hash) of a record in that chain",
                        }
                    ),
                )
                pack.put(
                    "oscal-assessment-results.json",
                    _json(
                        oscal.assessment_results(
                            row,
                            start=start,
                            end=end,
                            head=head_hash or "",
                            created=created,
                            version=__version__,
                        )
                    ),
                )
                pack.put(
                    "report.html",
                    _report(
                        ledger,
                        row,
                        start=start,
                        end=end,
                        sampled=sampled,
                        seed=seed,
                        frequency=frequency,
                        head=(head_seq, head_hash),
                    ).encode(),
                )
                signer = settings.signer()
                manifest: dict[str, Any] = {
                    "format": PACK_FORMAT,
                    "control": control,
                    "since": _ts(start),
                    "until": _ts(end),
                    "created": _ts(created),
                    "drillbook": __version__,
                    "files": pack.hashes,
                    "signed": signer is not None,
                }
                if signer is not None:
                    public = cpmod.public_hex(signer.public_key())
                    manifest.update(public_key=public, key_id=cpmod.key_id(public))
                body = _json(manifest)
                pack.put(MANIFEST, body)
                if signer is not None:
                    zf.writestr(
                        zipfile.ZipInfo(SIGNATURE, date_time=pack.date_time),  # type: ignore[arg-type]
                        signer.sign(MANIFEST_SIG_DOMAIN + body).hex() + "\n",
                    )
            partial.replace(output)
        finally:
            partial.unlink(missing_ok=True)
    return PackResult(
        path=output,
        control=control,
        records=count,
        population=population_size,
        sample=chosen,
        seed=seed,
        head_seq=head_seq,
        head_hash=head_hash,
        signed=signer is not None,
        key_id=manifest.get("key_id"),
        status=row.status,
    )


def build_pack(
    ledger: Any,
    catalogue: Catalogue,
    *,
    control: str,
    start: datetime,
    end: datetime,
    output: Path,
    settings: CheckpointSettings,
    seed: int | None = None,
    verify: bool = True,
) -> tuple[PackResult, Any]:
    """What ``drillbook evidence pack`` and the evidence pages' download both run: verify the chain
    (against the newest checkpoint; unless ``verify`` is False), then ``write_pack`` over it.

    Returns (the pack, the ``VerifyReport`` or None). Over a chain that does not verify, or was not
    checked, the pack is still written but nothing in it is VERIFIED (UNVERIFIABLE instead).
    """
    report = ledger.verify(checkpoints=settings) if verify else None
    if report is None:
        unverifiable: str | None = "ledger not verified (--no-verify)"
    else:
        unverifiable = None if report.ok else f"ledger chain broken at seq {report.first_bad_seq}"
    result = write_pack(
        ledger,
        catalogue,
        control=control,
        start=start,
        end=end,
        output=output,
        settings=settings,
        seed=seed,
        unverifiable=unverifiable,
    )
    return result, report


def _control_doc(row: ControlRow, *, start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "control": row.control,
        "since": _ts(start),
        "until": _ts(end),
        "drills": row.drills,
        "expected": row.expected,
        "covered": row.covered,
        "runs": row.runs,
        "passes": row.passes,
        "missed": row.missed,
        "failed": row.failed,
        "status": row.status,
        "status_words": row.status_words,
        "newest": {"verdict": row.newest.verdict, "at": _ts(row.newest.last_at), "seq": row.newest.last_seq}
        if row.newest
        else None,
        "exceptions": [
            {
                "at": _ts(e.at),
                "drill": e.drill,
                "kind": e.kind,
                "what": e.what,
                "run_id": e.run_id,
                "seq": e.seq,
            }
            for e in row.exceptions
        ],
    }


def _first_seq(conn: Any, flt: Any) -> int | None:
    from psycopg.rows import tuple_row

    from drillbook.ledger.schema import TABLE

    where, params = flt.where()
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(f"SELECT min(seq) FROM {TABLE} WHERE {where}", params)
        found = cur.fetchone()
    return int(found[0]) if found and found[0] is not None else None


def _checkpoints(
    ledger: Any, settings: CheckpointSettings, first: int | None, head: int | None
) -> list[dict[str, Any]]:
    """Checkpoints (database and outside copy) whose seq lies in the pack's chain, oldest first, deduplicated."""
    from dataclasses import asdict

    from psycopg.rows import tuple_row

    from drillbook.ledger import checkpoint as cpmod

    if first is None or head is None:
        return []
    with ledger.connection.cursor(row_factory=tuple_row) as cur:
        found = cpmod.read_db(cur)
    found += cpmod.read_outside(settings.path)[0]
    unique = {(c.seq, c.hash, c.signed_at, c.signature): c for c in found if first <= c.seq <= head}
    return [asdict(c) for c in sorted(unique.values(), key=lambda c: (c.seq, c.signed_at))]


def _report(
    ledger: Any,
    row: ControlRow,
    *,
    start: datetime,
    end: datetime,
    sampled: list[dict[str, str]],
    seed: int,
    frequency: str,
    head: tuple[int | None, str | None],
) -> str:
    from drillbook.evidence.report import render_report

    return render_report(
        ledger, row, start=start, end=end, sampled=sampled, seed=seed, frequency=frequency, head=head
    )
