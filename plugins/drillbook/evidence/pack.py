"""The evidence pack: one zip an auditor takes away for a control and a period, signed, verifiable offline.

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
- streaming: records go from PostgreSQL's COPY into the zip entry; the
  population is written to a temporary file while the control is tallied, then
  copied into the zip while the sampled rows are picked. Nothing holds the
  period's records in memory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import secrets
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from drillbook.errors import ConfigurationError

if TYPE_CHECKING:
    from drillbook.catalogue.models import Catalogue
    from drillbook.evidence.controls import ControlRow
    from drillbook.evidence.population import Occurrence
    from drillbook.ledger.checkpoint import CheckpointSettings

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


def _ts(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes, counts and keeps the last writes (they hold the export's final row)."""

    def __init__(self, inner: IO[bytes]):
        self.inner, self.sha, self.size, self.tail, self.last = inner, hashlib.sha256(), 0, b"", b""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.inner.write(chunk)
        self.sha.update(chunk)
        self.size += len(chunk)
        # COPY hands over one row per chunk: keep the last two writes, not a sliding copy of 64 KB per row
        self.tail = self.last + chunk if len(chunk) < 65536 else chunk
        self.last = chunk
        return len(chunk)


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


class _Zip:
    def __init__(self, zf: zipfile.ZipFile, stamp: datetime):
        self.zf, self.date_time = zf, stamp.astimezone(UTC).timetuple()[:6]
        self.hashes: dict[str, dict[str, Any]] = {}

    def open(self, name: str) -> tuple[Any, _Hashing]:
        info = zipfile.ZipInfo(name, date_time=self.date_time)  # type: ignore[arg-type]
        info.compress_type = zipfile.ZIP_DEFLATED
        raw = self.zf.open(info, "w", force_zip64=True)
        return raw, _Hashing(raw)

    def close(self, name: str, raw: Any, out: _Hashing) -> None:
        raw.close()
        self.hashes[name] = {"sha256": out.sha.hexdigest(), "bytes": out.size}

    def put(self, name: str, data: bytes) -> None:
        raw, out = self.open(name)
        out.write(data)
        self.close(name, raw, out)


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


def _head_of(tail: bytes) -> tuple[int | None, str | None]:
    lines = [line.strip().rstrip(b",") for line in tail.splitlines() if line.strip() not in (b"", b"[", b"]")]
    if not lines:
        return None, None
    last = json.loads(lines[-1])
    return int(last["seq"]), str(last["hash"])


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


def _json(doc: Any) -> bytes:
    # no indent: the C encoder (indent falls back to pure Python, 10x slower on a year's exceptions)
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _copy_population(spill: IO[str], pack: _Zip, chosen: set[int]) -> list[dict[str, str]]:
    """Copy the spilled population into the zip; return the sampled rows."""
    spill.seek(0)
    raw, out = pack.open("population.csv")
    sampled: list[dict[str, str]] = []
    for number, line in enumerate(spill):
        out.write(line.encode())
        if number and number in chosen:
            sampled.append(dict(zip(POPULATION_HEADER, next(csv.reader([line])), strict=True)))
    pack.close("population.csv", raw, out)
    return sampled


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
