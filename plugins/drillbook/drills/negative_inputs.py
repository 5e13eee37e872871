"""The broken inputs of the negative drills, and the inner runs each kind names in its ``DrillKind.negative``.

drillbook makes each broken input itself, never touching anything in production:

| kind           | broken input                                            | expected code(s)                |
|----------------|---------------------------------------------------------|---------------------------------|
| backup_restore | a copy of the newest backup cut to half its size        | ARCHIVE_TRUNCATED               |
| certificates   | an expired certificate served by a loopback listener    | CERT_EXPIRED                    |
| alert_path     | a webhook path pointed at a closed loopback port        | ALERT_PATH_UNREACHABLE / ALERT_NOT_DELIVERED |
| data_quality   | the drill's table with a suite no table can satisfy     | DQ_EXPECTATION_FAILED           |

Rule this module enforces: the backup-restore variant restores only into the drill's own
scratch server and reads no source: ``source_dsn`` is never passed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from drillbook.drills import registry as _registry
from drillbook.result import DrillResult

CLOSED_PORT_CONN = "drillbook_negative_closed_port"
IMPOSSIBLE_SUITE = "drillbook_negative_impossible"

Resources = _registry.Resources


# --- broken inputs -------------------------------------------------------------------------
def _truncate_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` cut to half its size (a directory dump: its largest data file cut)."""
    if src.is_dir():
        shutil.copytree(src, dst)
        data = [p for p in dst.iterdir() if p.is_file() and p.name != "toc.dat"]
        victim = max(data or [dst / "toc.dat"], key=lambda p: p.stat().st_size)
        with victim.open("r+b") as fh:
            fh.truncate(victim.stat().st_size // 2)
        return
    half = src.stat().st_size // 2
    with src.open("rb") as fin, dst.open("wb") as fout:
        left = half
        while left > 0:
            chunk = fin.read(min(1 << 20, left))
            if not chunk:
                break
            fout.write(chunk)
            left -= len(chunk)


def _truncated_backup(drill: Any, *, work_dir: Path, base_dir: Path | None, resources: Resources) -> Path:
    """A directory holding a half-size copy of the drill's newest backup; raises LookupError when there is none."""
    from drillbook.drills.backup_restore import locate

    out_dir = work_dir / "broken-backup"
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = drill.backup
    if spec.is_live:
        if drill.source is None:
            raise LookupError("a live backup drill has no source connection to dump")
        artefact, _ = locate.take_live_dump(
            source_dsn=resources.dsn(drill.source.connection),
            drill=drill.name,
            keep_in=work_dir / "live",
            bin_dir=drill.restore.bin_dir,
            timeout=drill.restore.timeout,
            now=dt.datetime.now(dt.UTC),
        )
        assert artefact.path is not None
        _truncate_copy(artefact.path, out_dir / artefact.name)
        return out_dir
    if spec.is_s3:
        if not spec.connection:
            raise LookupError(f"backup location {spec.location!r} has no AWS connection")
        s3 = resources.aws(spec.connection, "s3", None)
        found = locate.locate_s3(url=spec.location, pattern=spec.pattern, s3_client=s3)
        if found is None or found.key is None:
            raise LookupError(f"no backup found under {spec.location!r} to make a broken copy of")
        half = max(1, (found.size or 2) // 2)
        body = s3.get_object(Bucket=found.bucket, Key=found.key, Range=f"bytes=0-{half - 1}")["Body"]
        with (out_dir / found.name).open("wb") as fh:
            for chunk in iter(lambda: body.read(1 << 20), b""):
                fh.write(chunk)
        return out_dir
    found = locate.locate_local(location=spec.location, pattern=spec.pattern, base_dir=base_dir)
    if found is None or found.path is None:
        raise LookupError(f"no backup found at {spec.location!r} to make a broken copy of")
    _truncate_copy(found.path, out_dir / found.name)
    return out_dir


def _expired_certificate(work_dir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` that expired yesterday, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "drillbook negative drill")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = work_dir / "expired.pem", work_dir / "expired.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@contextlib.contextmanager
def _tls_listener(cert: Path, key: Path) -> Iterator[int]:
    """Serve TLS handshakes with ``cert`` on a loopback port until the block ends."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(5)
            with contextlib.suppress(OSError, ssl.SSLError), ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
            with contextlib.suppress(OSError):
                conn.close()

    thread = threading.Thread(target=serve, name="drillbook-negative-tls", daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ClosedPortClients:
    """The entry point's clients, with one extra HTTP connection: a closed loopback port."""

    def __init__(self, inner: Resources, port: int):
        self.inner, self.port = inner, port

    def slack(self, conn_id: str) -> Any:
        return self.inner.slack(conn_id)

    def aws(self, conn_id: str, service: str, region: str | None) -> Any:
        return self.inner.aws(conn_id, service, region)

    def http(self, conn_id: str) -> Any:
        from drillbook.resources.connections import Connection

        if conn_id != CLOSED_PORT_CONN:
            return self.inner.http(conn_id)
        return Connection(conn_id=conn_id, conn_type="http", host="127.0.0.1", port=self.port, schema="http")


# --- the inner runs (each kind names its own in its DrillKind.negative) --------------------------------------------------------------------------
def broken_backup_restore(
    drill: Any,
    *,
    work_dir: Path,
    base_dir: Path | None,
    resources: Resources,
    on_phase: Callable[..., None] | None,
) -> DrillResult:
    from drillbook.drills.backup_restore.catalogue import BackupSpec
    from drillbook.drills.backup_restore.drill import run_backup_restore

    broken = _truncated_backup(drill, work_dir=work_dir, base_dir=base_dir, resources=resources)
    variant = drill.model_copy(update={"backup": BackupSpec(location=str(broken))})
    (work_dir / "restore").mkdir(exist_ok=True)
    return run_backup_restore(
        drill=variant,
        scratch_dsn=resources.dsn(drill.scratch.connection),
        work_dir=work_dir / "restore",
        base_dir=base_dir,
        previous={},
        on_phase=on_phase,
    )


def broken_certificates(
    drill: Any,
    *,
    work_dir: Path,
    base_dir: Path | None,
    resources: Resources,
    on_phase: Callable[..., None] | None,
) -> DrillResult:
    from drillbook.drills.certificates import run_certificates
    from drillbook.drills.certificates.catalogue import CertificatesDrill, EndpointSpec

    cert, key = _expired_certificate(work_dir)
    with _tls_listener(cert, key) as port:
        variant = CertificatesDrill(
            name=drill.name,
            kind="certificates",
            schedule=drill.schedule,
            controls=list(drill.controls),
            endpoints=[EndpointSpec(address=f"127.0.0.1:{port}", sni="localhost")],
            ca_bundle=str(cert),
            thresholds=drill.thresholds,
            timeout=10.0,
        )
        results = run_certificates(variant, base_dir=base_dir)
    return results[0]


def broken_alert_path(
    drill: Any,
    *,
    work_dir: Path,
    base_dir: Path | None,
    resources: Resources,
    on_phase: Callable[..., None] | None,
) -> DrillResult:
    from drillbook.drills.alert_path import run_path
    from drillbook.drills.alert_path.catalogue import AlertPathDrill

    variant = AlertPathDrill.model_validate(
        {
            "name": drill.name,
            "kind": "alert_path",
            "schedule": drill.schedule,
            "controls": list(drill.controls),
            "objectives": {"delivery": 5.0},
            "poll_interval": 0.5,
            "paths": [
                {
                    "name": "negative_closed_port",
                    "type": "webhook",
                    "connection": CLOSED_PORT_CONN,
                    "flavour": "generic",
                    "endpoint": "/alerts",
                    "request_timeout": 5.0,
                }
            ],
        }
    )
    return run_path(
        drill=variant,
        path_name="negative_closed_port",
        clients=_ClosedPortClients(resources, _closed_port()),
        on_phase=on_phase,
    )


def broken_data_quality(
    drill: Any,
    *,
    work_dir: Path,
    base_dir: Path | None,
    resources: Resources,
    on_phase: Callable[..., None] | None,
) -> DrillResult:
    from drillbook.drills.data_quality import run_data_quality

    suite = {
        "name": IMPOSSIBLE_SUITE,
        "expectations": [
            {
                "type": "expect_table_row_count_to_be_between",
                "kwargs": {"min_value": 10**18},
                "meta": {"severity": "critical", "why": "no table has 10^18 rows: this suite must fail"},
            }
        ],
    }
    (work_dir / f"{IMPOSSIBLE_SUITE}.json").write_text(json.dumps(suite))
    return run_data_quality(
        drill_name=drill.name,
        dsn=resources.dsn(drill.connection),
        table=drill.table,
        query=drill.query,
        suite=IMPOSSIBLE_SUITE,
        suites_dir=work_dir,
        sample=0,
        sensitive=drill.sensitive_columns,
        controls=drill.controls,
        on_phase=on_phase,
    )
