"""Verify an evidence pack offline: no database, no catalogue, no drillbook configuration.

Rules this module enforces:
- the pack is untrusted input: only the fixed member names are read, never
  extracted, each read bounded (``pack_members``);
- every check runs and every problem is reported, each naming the file (and the
  record's seq or line, where there is one): the manifest's signature (Ed25519,
  checked against ``--public-key`` when given, else against the key the manifest
  names — which proves only that the pack was not changed after signing), each
  file's sha256 and size, no file missing or extra, the records and chain.json
  (``pack_verify_records``), the sample redrawn from the seed, and the control's
  counts recounted from the population listing;
- an unsigned pack verifies at most as "intact, origin unproven": ``unsigned``
  is set and the command exits 2 (could not verify), never 0.
"""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from drillbook.evidence.pack_members import MAX_MANIFEST, MAX_SIGNATURE, ZIP_ERRORS, _lines, _read, _stream
from drillbook.evidence.pack_verify_records import _check_chain_json, _check_records, _checkpoint_seqs

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
