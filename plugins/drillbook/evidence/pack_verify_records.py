"""Check an evidence pack's records and its chain.json offline.

Rules this module enforces:
- both record files' chains are walked (every hash, every link, with link rows
  for left-out records) and must hold the same chain; the head in chain.json
  must be the last record of records.json; each checkpoint's signature is
  checked and its hash compared with the record at its seq.
"""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from drillbook.evidence.pack_members import ZIP_ERRORS, _lines, _read

if TYPE_CHECKING:
    from drillbook.evidence.pack_verify import PackReport


def _json_records(fh: IO[str], name: str, problems: list[str]) -> Iterator[dict[str, Any]]:
    from drillbook.ledger.verify_export import _from_export

    for number, line in enumerate(fh, 1):
        text = line.strip().rstrip(",")
        if text in ("", "[", "]"):
            continue
        try:
            yield _from_export(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(
                f"{name} line {number}: not a ledger record ({type(exc).__name__}): the record there was changed"
            )
            return


def _csv_records(fh: IO[str], name: str, problems: list[str]) -> Iterator[dict[str, Any]]:
    import sys

    from drillbook.ledger.verify_export import _from_export

    csv.field_size_limit(sys.maxsize)
    reader = csv.DictReader(fh)
    for raw in reader:
        try:
            yield _from_export(raw)
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(
                f"{name} line {reader.line_num}: not a ledger record ({type(exc).__name__}): the record "
                "there was changed"
            )
            return


def _checkpoint_seqs(zf: zipfile.ZipFile, names: list[str], sizes: dict[str, int]) -> set[str]:
    """The seqs chain.json's checkpoints sign (unreadable: none; ``_check_chain_json`` names the problem)."""
    try:
        chain = (
            json.loads(_read(zf, "chain.json", sizes.get("chain.json", 0))) if "chain.json" in names else {}
        )
        return {str(doc["seq"]) for doc in chain.get("checkpoints", [])}
    except (ValueError, KeyError, TypeError, AttributeError, *ZIP_ERRORS):
        return set()


def _walk(
    rows: Iterator[dict[str, Any]], name: str, report: PackReport, watch: dict[str, str], wanted: set[str]
) -> tuple[Any, str, int | None]:
    """Walk one record file's chain; return the verify report, a digest of its (seq, hash) sequence, its first seq.

    Memory stays flat: only the hashes at ``wanted`` seqs (the checkpoints) are kept.
    """
    from drillbook.ledger.verify import verify_rows

    digest = hashlib.sha256()
    first: list[int] = []

    def tap() -> Iterator[dict[str, Any]]:
        for row in rows:
            digest.update(f"{row['seq']}:{row['hash']}\n".encode())
            if not first:
                first.append(int(row["seq"]))
            if str(row["seq"]) in wanted:
                watch[str(row["seq"])] = str(row["hash"])
            yield row

    result = verify_rows(tap(), contiguous=True, start_anywhere=True)
    if not result.ok:
        report.problems.append(f"{name}: {result.message}")
    return result, digest.hexdigest(), (first[0] if first else None)


def _check_records(
    zf: zipfile.ZipFile, names: list[str], sizes: dict[str, int], report: PackReport, wanted: set[str]
) -> dict[str, str]:
    hashes_at: dict[str, str] = {}  # seq -> hash at the checkpoints' seqs, as records.json holds them
    digests = {}
    for name, reader in (("records.json", _json_records), ("records.csv", _csv_records)):
        if name not in names:
            continue
        seen: dict[str, str] = {} if name == "records.csv" else hashes_at
        try:
            with _lines(zf, name, sizes.get(name, 0)) as fh:
                result, digests[name], first_seq = _walk(
                    reader(fh, name, report.problems), name, report, seen, wanted
                )
        except UnicodeDecodeError as exc:
            report.problems.append(
                f"{name}: byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not UTF-8 text: "
                "the file was changed"
            )
            continue
        except ZIP_ERRORS as exc:
            report.problems.append(
                f"{name}: its records cannot be read from the zip ({type(exc).__name__}): "
                "the pack file was damaged or changed"
            )
            continue
        if name == "records.json":
            report.records, report.head_seq, report.head_hash = (
                result.checked,
                result.head_seq,
                result.head_hash,
            )
            report.first_seq = first_seq
    if len(digests) == 2 and digests["records.json"] != digests["records.csv"]:
        report.problems.append("records.csv and records.json do not hold the same chain of records")
    return hashes_at


def _check_chain_json(
    zf: zipfile.ZipFile,
    names: list[str],
    sizes: dict[str, int],
    hashes_at: dict[str, str],
    signer_hex: str | None,
    report: PackReport,
) -> None:
    from drillbook.ledger import checkpoint as cpmod

    if "chain.json" not in names:
        return
    try:
        chain = json.loads(_read(zf, "chain.json", sizes.get("chain.json", 0)))
        head = chain["head"]
        checkpoints = [cpmod._from_doc(doc) for doc in chain["checkpoints"]]
    except (ValueError, KeyError, TypeError, *ZIP_ERRORS) as exc:
        report.problems.append(f"chain.json: not readable ({type(exc).__name__})")
        return
    if (head.get("seq"), head.get("hash")) != (report.head_seq, report.head_hash):
        report.problems.append(
            f"chain.json: its head seq={head.get('seq')} {str(head.get('hash'))[:12]}… is not the last "
            f"record of records.json (seq={report.head_seq})"
        )
    for cp in checkpoints:
        problem = cpmod.signature_problem(cp, signer_hex)
        if problem:
            report.problems.append(f"chain.json: {problem}")
        found = hashes_at.get(str(cp.seq))
        if found is None:
            report.problems.append(
                f"chain.json: {cp.describe()} signs seq={cp.seq}, which records.json does not hold"
            )
        elif found != cp.hash:
            report.problems.append(
                f"chain.json: {cp.describe()} signed record seq={cp.seq} with hash {cp.hash[:12]}…, "
                f"records.json has {found[:12]}…: the record was rewritten"
            )
    signed = [cp for cp in checkpoints if cp.signed]
    report.notes.append(
        f"{len(checkpoints)} checkpoint(s) in the pack's range, {len(signed)} signed"
        + (f"; newest seq={checkpoints[-1].seq}" if checkpoints else "")
    )
