"""Verify an evidence pack offline: no database, no catalogue, no drillbook configuration.

Rules this module enforces:
- the pack is untrusted input: only the fixed member names are read, never
  extracted; ``manifest.json`` is read only up to ``MAX_MANIFEST`` bytes, and
  every other member only up to the size the manifest gives it (plus one byte to
  notice a longer one), so a zip bomb costs no more than the manifest admits;
- every check runs and every problem is reported, each naming the file (and the
  record's seq or line, where there is one): the manifest's signature (Ed25519,
  checked against ``--public-key`` when given, else against the key the manifest
  names — which proves only that the pack was not changed after signing), each
  file's sha256 and size, no file missing or extra, both record files' chains
  (every hash, every link, with link rows for left-out records), the two files
  holding the same chain, the head in chain.json, each checkpoint's signature
  and its hash in the chain, the sample redrawn from the seed, and the control's
  counts recounted from the population listing;
- an unsigned pack verifies at most as "intact, origin unproven": ``unsigned``
  is set and the command exits 2 (could not verify), never 0.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from drillbook.errors import DrillbookError
from drillbook.evidence.pack_format import (
    FILES,
    MANIFEST,
    MANIFEST_SIG_DOMAIN,
    PACK_FORMAT,
    POPULATION_HEADER,
    SAMPLE_RULE,
    SIGNATURE,
    choose_sample,
)

MAX_MANIFEST = 1 << 20
MAX_SIGNATURE = 1024
MAX_JSON = 256 << 20  # a JSON member is parsed whole: bounded whatever a forged manifest claims
#: what reading a damaged member raises (a flipped byte in the compressed data, a bad CRC, a cut file)
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)

PROVES = (
    "every file in the pack is byte for byte the file drillbook wrote (sha256 per file in manifest.json, "
    "signed with Ed25519 key {key})",
    "every included record hashes to its recorded hash, and the records link (left-out records as link rows) into "
    "one unbroken chain from seq {first} to the head seq {head_seq} ({head_hash}): no record in that range was "
    "edited, dropped or reordered after it was written",
    "each signed checkpoint in chain.json matches the record at its seq",
    "the sample is the one the stored seed draws from population.csv, and the control's counts match that listing",
)
DOES_NOT_PROVE = (
    "completeness beyond the head and the signed checkpoints it carries: records written after the pack, or a "
    "ledger rewritten before its first signed checkpoint, are not visible in it",
    "that the expected occurrences are right: the population comes from the catalogue (schedules) in force when "
    "the pack was made",
    "that a drill measured the truth: a record proves what the drill reported, not the state of the system",
    "who holds the signing key: check the key id against the one your organisation published "
    "(pass --public-key to make verify do it)",
)


@dataclass
class PackReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    signed: bool = False
    trusted_key: bool = False
    key_id: str | None = None
    records: int = 0
    first_seq: int | None = None
    head_seq: int | None = None
    head_hash: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsigned(self) -> bool:
        return not self.signed


class NotAPack(DrillbookError, ValueError):
    """The file is not an evidence pack at all (not a zip, no manifest): bad input, exit 2."""


def _read(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    limit = min(limit, MAX_JSON)
    with zf.open(name) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{name} is larger than {limit} bytes")
    return data


def _stream(zf: zipfile.ZipFile, name: str, limit: int) -> Iterator[bytes]:
    """The member's bytes in chunks, stopping one byte past ``limit``."""
    left = limit + 1
    with zf.open(name) as fh:
        while left > 0:
            chunk = fh.read(min(1 << 16, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _lines(zf: zipfile.ZipFile, name: str, limit: int) -> IO[str]:
    raw = zf.open(name)
    return io.TextIOWrapper(io.BufferedReader(_Capped(raw, limit)), encoding="utf-8", newline="")


class _Capped(io.RawIOBase):
    def __init__(self, inner: Any, limit: int):
        self.inner, self.left = inner, limit + 1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        data = self.inner.read(min(len(buffer), self.left))
        self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def verify_pack(path: str | Path, *, public_key: str | None = None) -> PackReport:
    """Check the pack at ``path``; see the module docstring. Raises ``NotAPack`` for a file that is not one."""
    from drillbook.ledger import checkpoint as cpmod

    file = Path(path)
    if not file.is_file():
        raise NotAPack(f"{file} is not a regular file")
    if not zipfile.is_zipfile(file):
        raise NotAPack(
            f"{file} is not an evidence pack: expected a zip file written by `drillbook evidence pack`"
        )
    report = PackReport()
    with zipfile.ZipFile(file) as zf:
        names = zf.namelist()
        if MANIFEST not in names:
            raise NotAPack(f"{file} is not an evidence pack: it has no {MANIFEST}")
        if len(set(names)) != len(names):
            report.problems.append(
                "the zip holds two members of the same name: one of them was added afterwards"
            )
        try:
            body = _read(zf, MANIFEST, MAX_MANIFEST)
            manifest = json.loads(body)
            if (
                not isinstance(manifest, dict)
                or manifest.get("format") != PACK_FORMAT
                or not isinstance(manifest.get("files"), dict)
            ):
                raise ValueError(f"expected a manifest of format {PACK_FORMAT!r} with a 'files' map")
        except (ValueError, *ZIP_ERRORS) as exc:
            report.problems.append(f"{MANIFEST}: not a readable manifest: {str(exc)[:200]}")
            return report
        report.manifest = manifest
        trusted_hex = (
            cpmod.public_hex(cpmod.load_public_key(public_key, what="--public-key")) if public_key else None
        )
        _check_signature(zf, names, body, manifest, trusted_hex, report)
        signer_hex = trusted_hex or (manifest.get("public_key") if report.signed else None)
        files: dict[str, Any] = manifest["files"]
        sizes = {name: int(meta.get("bytes", 0)) for name, meta in files.items() if isinstance(meta, dict)}
        _check_files(zf, names, files, sizes, report)
        wanted = _checkpoint_seqs(zf, names, sizes)  # read first: the walk keeps only the hashes it needs
        hashes_at = _check_records(zf, names, sizes, report, wanted)
        _check_chain_json(zf, names, sizes, hashes_at, signer_hex, report)
        _check_population(zf, names, sizes, report)
    return report


def _check_signature(
    zf: zipfile.ZipFile,
    names: list[str],
    body: bytes,
    manifest: dict[str, Any],
    trusted_hex: str | None,
    report: PackReport,
) -> None:
    from drillbook.ledger import checkpoint as cpmod

    if SIGNATURE not in names:
        if manifest.get("signed"):
            report.problems.append(
                f"{SIGNATURE} is missing, but {MANIFEST} says the pack was signed: it was removed"
            )
        else:
            report.notes.append(
                f"{MANIFEST} is UNSIGNED (the pack was made without a checkpoint key): the files are "
                "consistent with it, but anyone could have rewritten both"
            )
        return
    key_hex = str(manifest.get("public_key") or "")
    report.key_id = cpmod.key_id(key_hex) if len(key_hex) == 64 else None
    try:
        signature = bytes.fromhex(_read(zf, SIGNATURE, MAX_SIGNATURE).decode("ascii").strip())
        cpmod.load_public_key(key_hex, what=f"{MANIFEST} public_key").verify(
            signature, MANIFEST_SIG_DOMAIN + body
        )
    except Exception:  # InvalidSignature, a malformed key or signature: all mean the same to the auditor
        report.problems.append(
            f"{SIGNATURE}: the signature does not match {MANIFEST} and its key "
            f"{report.key_id or '?'}: the manifest was edited or replaced after signing"
        )
        return
    report.signed = True
    if trusted_hex is not None:
        if key_hex != trusted_hex:
            report.problems.append(
                f"{MANIFEST} is signed by key {report.key_id}, not by the key you trust "
                f"({cpmod.key_id(trusted_hex)}): the pack was re-signed by someone else"
            )
        else:
            report.trusted_key = True


def _check_files(
    zf: zipfile.ZipFile, names: list[str], files: dict[str, Any], sizes: dict[str, int], report: PackReport
) -> None:
    for name in FILES:
        if name not in files:
            report.problems.append(f"{name} is not listed in {MANIFEST}")
    for name in names:
        if name not in files and name not in (MANIFEST, SIGNATURE):
            report.problems.append(f"{name} is in the pack but not in {MANIFEST}: it was added afterwards")
    for name, meta in files.items():
        if name not in names:
            report.problems.append(f"{name} is listed in {MANIFEST} but missing from the pack")
            continue
        sha, size = hashlib.sha256(), 0
        try:
            for chunk in _stream(zf, name, sizes.get(name, 0)):
                sha.update(chunk)
                size += len(chunk)
        except ZIP_ERRORS as exc:
            report.problems.append(
                f"{name}: cannot be read from the zip ({type(exc).__name__}: {str(exc)[:120]}): "
                "the pack file was damaged or changed"
            )
            continue
        if not isinstance(meta, dict) or sha.hexdigest() != meta.get("sha256") or size != meta.get("bytes"):
            report.problems.append(
                f"{name}: its sha256 does not match {MANIFEST} (the file was changed after the pack "
                "was written)"
            )


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


def _check_population(
    zf: zipfile.ZipFile, names: list[str], sizes: dict[str, int], report: PackReport
) -> None:
    if not {"population.csv", "sample.json", "controls.json"} <= set(names):
        return
    outcomes: dict[str, int] = {}
    picked: dict[int, dict[str, str]] = {}
    try:
        sample = json.loads(_read(zf, "sample.json", sizes.get("sample.json", 0)))
        wanted = {int(n) for n in sample["rows"]}
        with _lines(zf, "population.csv", sizes.get("population.csv", 0)) as fh:
            reader = csv.reader(fh)
            if tuple(next(reader, ())) != POPULATION_HEADER:
                report.problems.append("population.csv: its header is not the population listing's")
                return
            count = 0
            for row in reader:
                count += 1
                if len(row) != len(POPULATION_HEADER) or row[0] != str(count):
                    report.problems.append(
                        f"population.csv line {count + 1}: expected row n={count}, found {row[:1]}"
                    )
                    return
                outcomes[row[5]] = outcomes.get(row[5], 0) + 1
                if count in wanted:
                    picked[count] = dict(zip(POPULATION_HEADER, row, strict=True))
        size = dict((word, n) for _limit, word, n in SAMPLE_RULE)[sample["frequency"]]
        redrawn = choose_sample(count, size, int(sample["seed"]))
        if redrawn != sample["rows"] or sample["population_size"] != count:
            report.problems.append(
                f"sample.json: seed {sample['seed']} draws rows {redrawn[:10]} from {count} occurrences, "
                f"the pack lists {sample['rows'][:10]}: the sample was changed"
            )
        elif [picked.get(n) for n in redrawn] != sample["sample"]:
            report.problems.append("sample.json: the sampled rows differ from those rows of population.csv")
        controls = json.loads(_read(zf, "controls.json", sizes.get("controls.json", 0)))
        missed = outcomes.get("MISSED", 0)
        if (controls["expected"], controls["missed"], controls["covered"]) != (count, missed, count - missed):
            report.problems.append(
                f"controls.json: expected {controls['expected']}, missed {controls['missed']}, ran "
                f"{controls['covered']}; population.csv lists {count} occurrences, {missed} missed"
            )
    except (ValueError, KeyError, TypeError, *ZIP_ERRORS) as exc:
        report.problems.append(
            f"population.csv/sample.json/controls.json: not readable ({type(exc).__name__}: {str(exc)[:120]})"
        )


def proof_statements(report: PackReport) -> tuple[list[str], list[str]]:
    """What this verification proved and what it cannot prove, in words."""
    key = (
        f"{report.key_id}, the key you trusted"
        if report.trusted_key
        else f"{report.key_id} named by the pack itself"
        if report.signed
        else "nobody: UNSIGNED"
    )
    proves = [
        PROVES[0].format(key=key),
        PROVES[1].format(first=report.first_seq, head_seq=report.head_seq, head_hash=report.head_hash),
        *PROVES[2:],
    ]
    return proves, list(DOES_NOT_PROVE)
