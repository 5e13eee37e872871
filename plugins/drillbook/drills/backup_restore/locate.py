"""Phase 1, locate: find the newest backup (S3 prefix, local directory or file, or a live dump).

Rules this module enforces:
- the newest backup is chosen by the storage's own clock (S3 ``LastModified``,
  file ``mtime``), among names matching the configured pattern; digest
  sidecars (``*.sha256``) and hidden files are never candidates;
- ``live`` takes a fresh ``pg_dump -Fc`` from the source inside a read-only
  transaction (pg_dump's own ``READ ONLY`` snapshot, plus
  ``default_transaction_read_only=on`` for the session) with the password in
  the environment, never in argv; the dump and a ``.sha256`` sidecar are kept
  in the configured directory;
- a live dump that cannot be taken raises ``LiveDumpFailed`` carrying its
  finding code, never a bare RuntimeError (which would be DRILL_CRASHED): no
  pg_dump at least as new as the source -> ``VERSION_MISMATCH``; pg_dump
  cannot connect, authenticate or read (permission) -> ``SOURCE_UNREACHABLE``;
  a timeout or any other pg_dump failure -> ``LIVE_DUMP_FAILED``;
- nothing found -> ``BACKUP_MISSING``; the newest is older than the RPO
  objective -> ``BACKUP_STALE`` (the drill still restores it: an old backup
  that restores is better evidence than none).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drillbook.catalogue.common import resolve_relative
from drillbook.drills.backup_restore import tools
from drillbook.drills.backup_restore.lifetime import die_with_parent
from drillbook.errors import DrillbookError
from drillbook.resources import pg

SIDECAR_SUFFIXES = (".sha256", ".md5", ".sha256sum")
CHUNK = 1 << 20


# pg_dump stderr that means "the source would not let us in or read": not a broken dump.
_UNREACHABLE_RE = re.compile(
    r"connection to server|could not connect|could not translate host name|password authentication failed"
    r"|no password supplied|authentication failed|permission denied|role \"[^\"]*\" does not exist"
    r"|database \"[^\"]*\" does not exist|no pg_hba.conf entry|must be superuser|server closed the connection",
    re.IGNORECASE,
)


class LiveDumpFailed(DrillbookError):
    """A live ``pg_dump`` could not be taken; ``code`` is the finding it becomes."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def classify_dump_failure(stderr: str) -> str:
    """Finding code of a failed pg_dump from its stderr."""
    return "SOURCE_UNREACHABLE" if _UNREACHABLE_RE.search(stderr) else "LIVE_DUMP_FAILED"


@dataclass
class Artefact:
    """One backup: where it lives, how big, how old, and (once fetched) the local path."""

    uri: str  # s3://bucket/key or a local path, as shown to people
    name: str
    modified: datetime
    size: int | None = None
    bucket: str | None = None
    key: str | None = None
    path: Path | None = None  # local file or directory-format dump
    metadata: dict[str, str] = field(default_factory=dict)
    live: bool = False
    #: A directory-format dump on S3: (key, size) of every member object under ``key``.
    members: list[tuple[str, int]] = field(default_factory=list)

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None


def split_s3(url: str) -> tuple[str, str]:
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix


def _is_candidate(name: str, pattern: str | None) -> bool:
    if not name or name.startswith(".") or name.endswith(SIDECAR_SUFFIXES):
        return False
    return pattern is None or fnmatch.fnmatchcase(name, pattern)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def locate_s3(*, url: str, pattern: str | None, s3_client: Any) -> Artefact | None:
    """The newest object under ``url`` whose name (relative to the prefix) matches ``pattern``.

    A prefix holding ``toc.dat`` is a directory-format dump: it is one candidate
    (named after its folder, as old as its newest member), and its member files
    (``toc.dat``, ``NNNN.dat.gz``) are never candidates of their own.
    """
    bucket, prefix = split_s3(url)
    objects: list[dict[str, Any]] = []
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        objects += [obj for obj in page.get("Contents", []) or [] if not obj["Key"].endswith("/")]
    dump_dirs = {obj["Key"].rsplit("/", 1)[0] for obj in objects if obj["Key"].endswith("/toc.dat")}
    members: dict[str, list[dict[str, Any]]] = {}
    newest: dict[str, Any] | None = None
    for obj in objects:
        key = obj["Key"]
        folder = key.rsplit("/", 1)[0] if "/" in key else ""
        if folder and folder in dump_dirs:
            members.setdefault(folder, []).append(obj)
            continue
        relative = key[len(prefix) :].lstrip("/") if key != prefix else key.rsplit("/", 1)[-1]
        if not _is_candidate(relative.rsplit("/", 1)[-1], None) or not _is_candidate(relative, pattern):
            continue
        if newest is None or obj["LastModified"] > newest["LastModified"]:
            newest = obj
    candidates: list[Artefact] = []
    if newest is not None:
        candidates.append(
            Artefact(
                uri=f"s3://{bucket}/{newest['Key']}",
                name=newest["Key"].rsplit("/", 1)[-1],
                modified=_aware(newest["LastModified"]),
                size=int(newest["Size"]),
                bucket=bucket,
                key=newest["Key"],
            )
        )
    for folder, objs in members.items():
        name = folder.rsplit("/", 1)[-1]
        relative = folder[len(prefix) :].lstrip("/") if len(folder) > len(prefix.rstrip("/")) else ""
        if relative and (not _is_candidate(name, None) or not _is_candidate(relative, pattern)):
            continue  # an empty relative name: the location is itself the dump (as for local directories)
        files = [o for o in objs if _is_candidate(o["Key"].rsplit("/", 1)[-1], None)]
        candidates.append(
            Artefact(
                uri=f"s3://{bucket}/{folder}/",
                name=name,
                modified=max(_aware(o["LastModified"]) for o in files),
                size=sum(int(o["Size"]) for o in files),
                bucket=bucket,
                key=folder + "/",
                members=[(o["Key"], int(o["Size"])) for o in files],
            )
        )
    return max(candidates, key=lambda a: a.modified) if candidates else None


def _artefact_of(path: Path) -> Artefact:
    st = path.stat()
    size = st.st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return Artefact(
        uri=str(path), name=path.name, modified=datetime.fromtimestamp(st.st_mtime, UTC), size=size, path=path
    )


def locate_local(*, location: str, pattern: str | None, base_dir: Path | None) -> Artefact | None:
    """A file, a directory-format dump, or the newest matching entry of a directory."""
    path = resolve_relative(location, base_dir)
    if path.is_file():
        return _artefact_of(path)
    if not path.is_dir():
        return None
    if (path / "toc.dat").is_file():
        return _artefact_of(path)  # the location is itself a directory-format dump
    newest: Path | None = None
    newest_mtime = -1.0
    for entry in path.iterdir():
        if not _is_candidate(entry.name, pattern):
            continue
        if entry.is_dir() and not (entry / "toc.dat").is_file():
            continue
        mtime = entry.stat().st_mtime
        if mtime > newest_mtime:
            newest, newest_mtime = entry, mtime
    return _artefact_of(newest) if newest is not None else None


def take_live_dump(
    *, source_dsn: str, drill: str, keep_in: Path, bin_dir: str | None, timeout: float, now: datetime
) -> tuple[Artefact, str]:
    """Run ``pg_dump -Fc`` against the source read-only; return the artefact and the tool version used."""
    with pg.connect(source_dsn) as conn:
        server_major = int(conn.info.server_version) // 10000
    tool, seen = tools.choose("pg_dump", min_major=server_major, bin_dir=bin_dir)
    if tool is None:
        raise LiveDumpFailed(
            "VERSION_MISMATCH",
            f"the source server is PostgreSQL {server_major} but no pg_dump >= {server_major} was found "
            f"(found: {tools.describe(seen)}); install newer client tools or set restore.bin_dir",
        )
    keep_in.mkdir(parents=True, exist_ok=True)
    target = keep_in / f"{drill}-{now.strftime('%Y%m%dT%H%M%SZ')}.dump"
    env = pg.tool_env(source_dsn)
    # Belt and braces: pg_dump already runs in a READ ONLY transaction; this makes
    # the whole session read-only so no statement on the source can ever write.
    env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " -c default_transaction_read_only=on").strip()
    try:
        proc = subprocess.run(
            [tool.path, "-Fc", "--no-password", "-f", str(target)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=die_with_parent(),  # a SIGKILLed drill does not leave pg_dump reading the source
        )
    except subprocess.TimeoutExpired as exc:
        target.unlink(missing_ok=True)
        raise LiveDumpFailed(
            "LIVE_DUMP_FAILED", f"pg_dump of the source did not finish within {timeout:.0f}s"
        ) from exc
    if proc.returncode != 0:
        target.unlink(missing_ok=True)
        err = proc.stderr.strip()[-400:]
        raise LiveDumpFailed(
            classify_dump_failure(err), f"pg_dump {tool.version} exited {proc.returncode}: {err}"
        )
    digest = hashlib.sha256()
    with target.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    Path(str(target) + ".sha256").write_text(f"{digest.hexdigest()}  {target.name}\n")
    artefact = _artefact_of(target)
    artefact.live = True
    return artefact, tool.version


def keep_on_s3(artefact: Artefact, *, url: str, s3_client: Any) -> str:
    """Upload a live dump and its sidecar under the S3 prefix ``url`` (streamed; sha256 also as metadata)."""
    assert artefact.path is not None
    bucket, prefix = split_s3(url)
    key = (prefix.rstrip("/") + "/" if prefix else "") + artefact.name
    sidecar = Path(str(artefact.path) + ".sha256")
    digest = sidecar.read_text().split()[0]
    s3_client.upload_file(str(artefact.path), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}})
    s3_client.upload_file(str(sidecar), bucket, key + ".sha256")
    return f"s3://{bucket}/{key}"


def newest_age_seconds(artefact: Artefact, now: datetime) -> float:
    return max(0.0, (now - artefact.modified).total_seconds())
