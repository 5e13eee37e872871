"""Under Airflow with retries, a drill whose ledger is down leaves its evidence in the spool, never nowhere."""

from __future__ import annotations

import tempfile
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drillbook.ledger.spool import EvidenceSpool
from drillbook.ledger.store import Ledger
from drillbook.resources.pg import airflow_connection_json
from tests.ledger.test_spool import PrivateServer


def _certificate(folder: Path) -> None:
    """A self-signed certificate valid for a year: the drill passes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spool.example")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    folder.mkdir()
    (folder / "spool.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.mark.airflow
def test_a_dag_run_with_the_ledger_down_spools_and_the_flush_keeps_every_row(
    airflow_db, tmp_path, monkeypatch
):
    from drillbook.airflow.factory import build_dags

    server = PrivateServer(Path(tempfile.mkdtemp(prefix="drillbook-spool-af-")))
    try:
        Ledger(server.dsn, spool=None).init_schema()
        spool = EvidenceSpool(tmp_path / "evidence-spool.jsonl")
        monkeypatch.setenv("DRILLBOOK_SPOOL", str(spool.path))
        monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_LEDGER", airflow_connection_json(server.dsn))
        monkeypatch.delenv("AIRFLOW_CONN_DRILLBOOK_SLACK", raising=False)
        _certificate(tmp_path / "certs")
        catalogue = tmp_path / "drills.yaml"
        catalogue.write_text(
            textwrap.dedent(f"""
            version: 1
            defaults:
              retries: 1
              retry_delay: 0s
            drills:
              - name: spool_certs
                kind: certificates
                schedule: "@daily"
                controls: ["ISO27001:A.8.24"]
                files: [{tmp_path / "certs"}]
        """)
        )
        monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(catalogue))
        dag = build_dags("certificates")["dr_certificates__spool_certs"]
        server.stop()  # the ledger goes down before the drill reports
        dag.test()
        pending = spool.read().pending
        drill_rows = [e for e in pending if e.record_type == "drill"]
        assert drill_rows, "the drill's evidence was neither written nor spooled"
        assert all(e.result["drill"] == "spool_certs" for e in drill_rows)
        server.start()
        with Ledger(server.dsn, spool=spool) as ledger:
            report = ledger.flush_spool()
            assert report.remaining == 0 and not report.failed
            records = [r for r in ledger.query(drill="spool_certs") if r.record_type == "drill"]
            assert {(r.task_id, r.map_index) for r in records} == {
                (e.ctx["task_id"], e.ctx["map_index"]) for e in drill_rows
            }
            assert ledger.verify().ok
            assert ledger.flush_spool().records == []  # nothing twice
    finally:
        server.server.cleanup()
