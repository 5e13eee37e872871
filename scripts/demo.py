"""``make demo`` / ``make up``: the drills, once, against an embedded demo environment.

A script outside the package (``python -m scripts.demo`` from a checkout): it uses only
drillbook's public API (catalogue loader, ``Ledger``, the sample shop), never the CLI as an API.

What it does, in order, all on this machine and all under ``var/``:
1. starts an embedded PostgreSQL (pgserver) in ``var/demo/pg``;
2. seeds a sample shop database and takes a pg_dump backup (+ .sha256 sidecar)
   into ``var/backups/shop``; writes a demo certificate into ``var/demo/certs``;
   starts a loopback webhook receiver for the alert-path drill;
3. creates and verifies the evidence ledger, validates the shipped catalogue;
4. runs every drill of the catalogue once through Airflow (``dag.test()`` with
   a SQLite metadata DB in ``var/airflow``), printing verdicts, RTO, RPO and
   phase timings from the ledger;
5. shows the Slack messages it would have posted (no Slack connection in the
   demo: they go to the outbox ``var/outbox.jsonl``) and ends with the
   ledger's verify result.
``--up`` then starts ``airflow standalone`` on http://localhost:8080 with the
same environment (embedded PostgreSQL kept running).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drillbook.settings import load_settings
from scripts.demo_up import AIRFLOW_PORT, heading, say
from scripts.demo_up import write_admin_password as write_admin_password

SETTINGS = load_settings()  # the demo is an entry point: its settings (DRILLBOOK_VAR, ...) are read once
REPO = Path(__file__).resolve().parents[1]
VAR = SETTINGS.var or REPO / "var"
CATALOGUE = REPO / "include" / "drills.yaml"
WEBHOOK_PORT = SETTINGS.demo_webhook_port


# --- environment -------------------------------------------------------------------------
def start_postgres():  # type: ignore[no-untyped-def]
    """The embedded server lives as long as this process: through the demo, and through
    ``airflow standalone`` with --up (this process waits on it), then it is stopped."""
    import pgserver

    data = VAR / "demo" / "pg"
    data.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(data, cleanup_mode="stop")


def pg_bin() -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def ensure_database(admin_dsn: str, name: str, *, recreate: bool = False) -> str:
    import psycopg

    from drillbook.resources.pg import quote_ident, with_dbname

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if recreate:
            conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    return with_dbname(admin_dsn, name)


def take_backup(source_dsn: str, *, var: Path | None = None) -> Path:
    """pg_dump -Fc of the shop into var/backups/shop, with a .sha256 sidecar."""
    from drillbook.resources.pg import tool_env

    out_dir = (var or VAR) / "backups" / "shop"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in sorted(out_dir.glob("shop-*.dump*"))[:-4]:  # keep the demo directory small
        old.unlink()
    path = out_dir / f"shop-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.dump"
    subprocess.run(
        [str(pg_bin() / "pg_dump"), "-Fc", "-f", str(path)], env=tool_env(source_dsn), check=True, timeout=600
    )
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    path.with_name(path.name + ".sha256").write_text(f"{digest.hexdigest()}  {path.name}\n")
    return path


def write_demo_certificate(*, var: Path | None = None) -> Path:
    """A self-issued CA and a 200-day leaf for demo.internal, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    certs = (var or VAR) / "demo" / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "demo.internal")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "drillbook demo CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=200))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("demo.internal")]), critical=False)
        # a well-formed leaf: the profile lints (CERT_NO_AKI, CERT_NO_EKU) stay quiet on the demo
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = certs / "demo.internal.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def airflow_environment(home: Path, *, port: int) -> dict[str, str]:
    """The Airflow settings ``make demo`` and ``make up`` run with.

    tests/foundation/test_standalone.py starts ``airflow standalone`` with these same
    settings, so what it proves is what ``make up`` runs.
    """
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "DRILLBOOK_CATALOGUE": str(CATALOGUE),
    }


def set_environment(*, source_dsn: str, scratch_dsn: str, ledger_dsn: str, webhook_token: str) -> None:
    """Airflow settings and connections as AIRFLOW_CONN_* variables (what Airflow and the CLI both read)."""
    from drillbook.resources.pg import airflow_connection_json

    airflow_home = VAR / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = {
        **airflow_environment(airflow_home, port=AIRFLOW_PORT),
        "DRILLBOOK_OUTBOX": str(VAR / "outbox.jsonl"),
        "DRILLBOOK_LEDGER_DSN": ledger_dsn,
        "AIRFLOW_CONN_DRILLBOOK_SOURCE": airflow_connection_json(source_dsn),
        "AIRFLOW_CONN_DRILLBOOK_SCRATCH": airflow_connection_json(scratch_dsn),
        "AIRFLOW_CONN_DRILLBOOK_LEDGER": airflow_connection_json(ledger_dsn),
        # the Evidence view's verify button records its outcome through this connection
        "AIRFLOW_CONN_DRILLBOOK_LEDGER_WRITER": airflow_connection_json(ledger_dsn),
        "AIRFLOW_CONN_DRILLBOOK_DEMO_WEBHOOK": json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": WEBHOOK_PORT,
                "schema": "http",
                "password": webhook_token,
            }
        ),
    }
    os.environ.update(env)
    os.environ.pop("AIRFLOW_CONN_DRILLBOOK_SLACK", None)  # the demo has no Slack: reports go to the outbox


# --- running the drills ----------------------------------------------------------------------
@contextlib.contextmanager
def task_log_to(path: Path) -> Iterator[None]:
    """Send everything Airflow prints while a DAG runs to ``path`` (file descriptors 1 and 2),
    so the demo's own output stays readable; the log is kept for whoever wants the detail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_dags() -> list[tuple[str, str]]:
    """dag.test() every drillbook DAG once; returns (dag_id, run_id) pairs."""
    import logging

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from airflow.utils import db

    with task_log_to(VAR / "demo" / "logs" / "airflow-initdb.log"):
        db.initdb()
    from airflow.dag_processing.dagbag import DagBag

    with task_log_to(VAR / "demo" / "logs" / "dagbag.log"):
        bag = DagBag(dag_folder=str(REPO / "dags"))
    if bag.import_errors:
        for file, error in bag.import_errors.items():
            say(f"import error in {file}:\n{error}")
        raise SystemExit(2)
    runs: list[tuple[str, str]] = []
    order = sorted((d for d in bag.dag_ids if "__" in d), key=lambda d: (not d.startswith("dr_backup"), d))
    for dag_id in order:
        dag = bag.get_dag(dag_id)
        log_file = VAR / "demo" / "logs" / f"{dag_id}.log"
        heading(
            f"run {dag_id} through Airflow (dag.test(); task log: {log_file.relative_to(VAR.parent) if log_file.is_relative_to(VAR.parent) else log_file})"
        )
        started = time.monotonic()
        with task_log_to(log_file):
            dag_run = dag.test()
        say(f"   Airflow run {dag_run.run_id}: {dag_run.state} in {time.monotonic() - started:.1f}s")
        runs.append((dag_id, dag_run.run_id))
    return runs


def show_results(ledger_dsn: str, runs: list[tuple[str, str]]) -> None:
    from drillbook.cli.common import render_text
    from drillbook.ledger.store import Ledger
    from drillbook.result import DrillResult

    ledger = Ledger(ledger_dsn)
    wanted = {run_id for _, run_id in runs}
    heading("results, as recorded in the evidence ledger")
    for record in ledger.query(record_type="drill"):
        if record.run_id in wanted:
            result = DrillResult.model_validate(record.result)
            say(f"-- ledger #{record.seq} {record.dag_id} / {record.task_id}")
            say(render_text(result, with_phases=True))


def show_outbox() -> None:
    heading(f"Slack messages the drills would have posted (outbox {VAR / 'outbox.jsonl'})")
    from drillbook.notify.outbox import render_outbox_text

    say(render_outbox_text(VAR / "outbox.jsonl"))


def verify_ledger(ledger_dsn: str) -> int:
    """Walk the ledger's hash chain (what ``drillbook evidence verify`` does); 0 when intact."""
    from drillbook.ledger.checkpoint import CheckpointSettings
    from drillbook.ledger.store import Ledger

    heading("ledger verify")
    with Ledger(ledger_dsn) as ledger:
        report = ledger.verify(checkpoints=CheckpointSettings.from_settings(SETTINGS))
    for note in report.notes:
        say(f"  {note}")
    if report.ok:
        say(f"ledger OK: {report.checked} records, chain intact, head {report.head_seq}:{report.head_hash}")
        return 0
    say(f"ledger BROKEN ({report.reason}) at seq={report.first_bad_seq}: {report.message}")
    return 1


def init_ledger(ledger_dsn: str) -> None:
    """Create or migrate the ledger schema (what ``drillbook ledger init`` does)."""
    from drillbook.ledger.store import Ledger

    with Ledger(ledger_dsn) as ledger:
        applied = ledger.init_schema()
        say(f"   ledger at {ledger.where}: schema ready (applied {applied or 'nothing, already current'})")


def validate_catalogue(path: Path) -> bool:
    """Load the catalogue (what ``drillbook validate`` does); False after printing every problem."""
    from drillbook.catalogue import load_catalogue
    from drillbook.errors import CatalogueError

    try:
        catalogue = load_catalogue(path, gx_suites=SETTINGS.suite_check_for("cli"))
    except CatalogueError as exc:
        for problem in exc.problems:
            say(str(problem))
        return False
    for d in catalogue.drills:
        say(f"ok  {d.kind:<15} {d.name:<28} schedule={d.schedule!r}{'' if d.enabled else ' (disabled)'}")
    say(f"{path}: {len(catalogue.drills)} drill(s), no problems")
    return True


def start_webhook_receiver(token: str):  # type: ignore[no-untyped-def]
    from drillbook.sample.webhook_receiver import WebhookReceiver

    return WebhookReceiver(port=WEBHOOK_PORT, token=token).start()


def sigterm_as_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt, so ``finally`` blocks run (the default handler would skip them)."""
    import signal

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="drillbook demo")
    parser.add_argument("--up", action="store_true", help="after the demo, start airflow standalone")
    args = parser.parse_args(argv)
    sigterm_as_interrupt()  # SIGTERM stops the demo like Ctrl-C: embedded PostgreSQL and receiver are cleaned up
    from drillbook.safety.redact import install_log_redaction

    install_log_redaction()

    import logging
    import warnings

    warnings.filterwarnings("ignore", module="platformdirs")  # pgserver's runtime-dir notice
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    heading("embedded PostgreSQL")
    server = start_postgres()
    admin = server.get_uri("postgres")
    from drillbook.resources.pg import describe

    say(f"   running at {describe(admin)} (data in {VAR / 'demo' / 'pg'})")
    source = ensure_database(admin, "shop", recreate=True)
    ledger = ensure_database(admin, "drillbook_ledger")
    scratch_admin = admin  # scratch databases are created on the same server, never in the source database

    heading("sample shop database and its backup")
    from drillbook.sample.shop import seed_shop

    facts = seed_shop(source)
    say(f"   seeded: {facts}")
    backup = take_backup(source)
    say(
        f"   backup: {backup.relative_to(REPO) if backup.is_relative_to(REPO) else backup} ({backup.stat().st_size:,} bytes, sha256 sidecar written)"
    )
    cert = write_demo_certificate()
    say(f"   demo certificate: {cert}")
    import secrets

    from drillbook.safety.redact import register_secret

    webhook_token = secrets.token_urlsafe(24)  # a fresh secret per demo run; never written to a file
    register_secret(webhook_token)
    receiver = start_webhook_receiver(webhook_token)
    say(f"   webhook receiver for the alert-path drill on 127.0.0.1:{WEBHOOK_PORT}")

    set_environment(
        source_dsn=source, scratch_dsn=scratch_admin, ledger_dsn=ledger, webhook_token=webhook_token
    )
    outbox = VAR / "outbox.jsonl"
    if outbox.exists():
        outbox.unlink()

    heading("evidence ledger")
    init_ledger(ledger)
    heading("catalogue")
    if not validate_catalogue(CATALOGUE):
        return 2

    runs = run_dags()
    show_results(ledger, runs)
    show_outbox()
    code = verify_ledger(ledger)
    try:
        if args.up:  # the receiver and the embedded PostgreSQL serve the scheduled drills too
            return start_airflow(ledger)
        return code
    finally:
        receiver.stop()
        server.cleanup()


def start_airflow(ledger_dsn: str = "") -> int:
    """``make up``: see ``scripts.demo_up``."""
    from scripts.demo_up import start_airflow as up

    return up(ledger_dsn)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
