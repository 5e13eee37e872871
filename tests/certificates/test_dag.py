"""End to end through Airflow: dag.test() fans out per source group, one ledger row per certificate, one Slack summary."""

from __future__ import annotations

import json
import textwrap

import pytest

from drillbook.resources.pg import airflow_connection_json
from tests.certificates.pki import DAY, make_leaf, now


@pytest.fixture
def cert_catalogue(tmp_path, monkeypatch, pki, serve, refused_address, ledger_dsn, slack, boto):
    monkeypatch.setenv("AIRFLOW_CONN_DRILLBOOK_LEDGER", airflow_connection_json(ledger_dsn))
    t = now()
    good = serve(make_leaf(pki.inter))
    expired = serve(make_leaf(pki.inter, not_before=t - 100 * DAY, not_after=t - DAY))
    files = tmp_path / "certs"
    files.mkdir()
    make_leaf(pki.inter, not_before=t - 345 * DAY, not_after=t + 20 * DAY).write(
        files, "soon", with_chain=False
    )
    leaf = make_leaf(pki.inter, names=["www.example.com"])
    arn = boto("acm").import_certificate(Certificate=leaf.pem, PrivateKey=leaf.key_pem())["CertificateArn"]
    catalogue = tmp_path / "drills.yaml"
    catalogue.write_text(
        textwrap.dedent(f"""
        version: 1
        defaults:
          retries: 0
        drills:
          - name: dag_certs
            kind: certificates
            schedule: "@daily"
            controls: ["ISO27001:A.8.24"]
            timeout: 3s
            ca_bundle: {pki.bundle}
            endpoints:
              - {{address: "{good.address}", sni: localhost}}
              - {{address: "{expired.address}", sni: localhost}}
              - {{address: "{refused_address}"}}
            files: [certs]
            acm: {{region: us-east-1}}
    """)
    )
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(catalogue))
    monkeypatch.setattr("drillbook.drills.certificates.dag.BATCH", 2)
    return {"good": good.address, "expired": expired.address, "refused": refused_address, "arn": arn}


@pytest.mark.airflow
def test_dag_records_one_row_per_certificate_and_posts_one_summary(
    airflow_db, cert_catalogue, ledger_dsn, slack
):
    from drillbook.airflow.factory import build_dags
    from drillbook.ledger.store import Ledger

    dag = build_dags("certificates")["dr_certificates__dag_certs"]
    assert set(dag.tags) == {"drillbook", "certificates"}
    assert {t.task_id for t in dag.tasks} == {"check_endpoints", "check_files", "check_acm", "summarize"}
    run = dag.test()
    assert run.state == "failed"  # an expired and an unreachable endpoint: the summary fails the run

    with Ledger(ledger_dsn) as ledger:
        records = [r for r in ledger.query(drill="dag_certs") if r.record_type == "drill"]
        assert ledger.verify().ok
    by_target = {r.target: r for r in records}
    a = cert_catalogue
    assert by_target[a["good"] + " (sni localhost)"].verdict == "PASS"
    assert by_target[a["expired"] + " (sni localhost)"].verdict == "FAIL"
    assert by_target[a["refused"]].verdict == "ERROR"
    keys = {(r.task_id, r.map_index) for r in records}
    assert len(keys) == len(records) == 6  # 3 endpoints + 1 file + 1 ACM certificate + the summary
    endpoint_rows = [r for r in records if r.task_id.startswith("check_endpoints.")]
    assert sorted(r.map_index for r in endpoint_rows) == [0, 0, 1]  # batches of 2
    [file_row] = [r for r in records if r.task_id.startswith("check_files.")]
    assert file_row.result["findings"][0]["code"] == "CERT_EXPIRING" and file_row.verdict == "PASS"
    [acm_row] = [r for r in records if r.task_id.startswith("check_acm.")]
    assert acm_row.verdict == "PASS" and acm_row.result["details"]["arn"] == a["arn"]
    [summary] = [r for r in records if r.task_id == "summarize"]
    assert summary.verdict == "ERROR"
    assert {f["target"] for f in summary.result["details"]["failures"]} == {
        a["expired"] + " (sni localhost)",
        a["refused"],
    }
    # one Slack message for the whole drill, not one per certificate
    posted = [m for m in slack.posted() if m.thread_ts is None]
    assert (
        len(posted) == 1
        and slack.posted("#dr-oncall")
        and posted[0].channel == slack.posted("#dr-oncall")[0].channel
    )
    assert "dag_certs" in posted[0].text and "ENDPOINT_UNREACHABLE" in json.dumps(posted[0].blocks)
