"""``drillbook evidence verify``: walk the chain or an export file, and say plainly whether it holds.

Rules this module enforces:
- exit codes: 0 success / chain intact, 1 tamper found (``verify`` names the
  first bad record, the checkpoint it contradicts, or the guard that is off),
  2 bad input, configuration, or could not verify (the ledger cannot be
  reached), as every drillbook command: a crash or an outage never looks like tampering;
- a file that is not an export (a directory, a device, a pipe, bytes that are not
  UTF-8) is bad input, exit 2, said before a byte of it is read where possible.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drillbook.cli.ledger_base import EXIT_OK, EXIT_TAMPER, EXIT_USAGE, _err, _guarded, _ledger


def _not_an_export_file(path: Path) -> str | None:
    """Why ``path`` cannot be an export, before it is read (a device like /dev/zero never ends), or None."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"export file {str(path)!r} does not exist"
    except OSError as exc:
        return f"export file {str(path)!r} cannot be read: {exc.strerror or type(exc).__name__}"
    if stat.S_ISREG(mode):
        return None
    found = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a character device"
        if stat.S_ISCHR(mode)
        else "a block device"
        if stat.S_ISBLK(mode)
        else "a named pipe"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    return f"{path} is not a drillbook export: expected a JSON-lines or CSV export file, found {found}"


@_guarded
def cmd_evidence_verify(args: argparse.Namespace) -> int:
    """Walk the chain (or an export file), compare it with the newest checkpoint, check the guards."""
    from drillbook.cli.config import settings_of
    from drillbook.ledger.checkpoint import CheckpointSettings

    if getattr(args, "pack", None):  # offline: no database, no configuration
        from drillbook.cli.auditor import cmd_verify_pack

        return cmd_verify_pack(args)
    settings = CheckpointSettings.from_settings(settings_of(args))
    if args.file:
        from drillbook.ledger import checkpoint as cpmod
        from drillbook.ledger.verify_export import verify_export

        path = Path(args.file)
        problem = _not_an_export_file(path)
        if problem:
            _err(problem)
            return EXIT_USAGE
        outside, _ = cpmod.read_outside(settings.path)
        try:
            # every exported range reaches the head at export time: an export ending before the newest
            # outside checkpoint had its tail cut (or predates the checkpoint; export again)
            report = verify_export(path, checkpoint=cpmod.newest(outside))
        except UnicodeDecodeError as exc:
            _err(
                f"{path} is not a drillbook export: expected a JSON-lines or CSV export (UTF-8 text), "
                f"found byte 0x{exc.object[exc.start]:02x} at offset {exc.start}, which is not UTF-8 text"
            )
            return EXIT_USAGE
        except ValueError as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            _err(
                f"{path} is not a drillbook export: "
                + (message if message.startswith("expected ") else f"{type(exc).__name__}: {message}")
            )
            return EXIT_USAGE
        except KeyError as exc:
            _err(f"{path} is not a drillbook export: {type(exc).__name__}: {exc}")
            return EXIT_USAGE
        subject = f"export {path}"
        intact = "every record's hash matches, the chain is unbroken from its first row (left-out records as links)"
    else:
        with _ledger(args) as ledger:
            try:
                report = ledger.verify(expect_head=args.expect_head, checkpoints=settings, full=args.full)
            except ValueError as exc:
                _err(str(exc))
                return EXIT_USAGE
        subject = "ledger"
        intact = "chain intact"
        if report.since_seq is not None:
            intact = (
                f"chain intact after the trusted signed checkpoint seq={report.since_seq} (incremental; "
                "`--full` re-hashes every record)"
            )
    for note in report.notes:
        print(f"  {note}")
    if report.ok:
        head = f", head {report.head_seq}:{report.head_hash}" if report.head_hash else ""
        print(f"{subject} OK: {report.checked} records, {intact}{head}")
        return EXIT_OK
    where = f" at seq={report.first_bad_seq}" if report.first_bad_seq is not None else ""
    print(f"{subject} BROKEN ({report.reason}){where}: {report.message}")
    print(f"  {report.checked} records before it verified", file=sys.stderr)
    return EXIT_TAMPER
