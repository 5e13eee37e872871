"""Every DAG kind reports the catalogue's owner where Airflow shows it (issue 11 item 8).

Airflow computes a DAG's owners (``DagModel.owners``: the UI, the REST API)
from the serialized DAG's unmapped tasks only; ``dr_alert_path__*``, whose one
task was mapped, showed ``airflow``. Checked through the real path: DagBag of
``dags/``, then ``sync_bag_to_db`` into the metadata DB.
"""

from __future__ import annotations

import pytest

from tests.foundation.test_dag_integrity import REPO


@pytest.mark.airflow
def test_every_dag_reports_the_catalogue_owner(airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    from drillbook.catalogue import load_catalogue

    catalogue = load_catalogue(REPO / "include" / "drills.yaml")
    monkeypatch.setenv("DRILLBOOK_CATALOGUE", str(REPO / "include" / "drills.yaml"))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    expected: dict[str, str] = {}
    for dag_id, dag in bag.dags.items():
        drill = next((d for d in catalogue.drills if dag_id.endswith(f"__{d.name}")), None)
        expected[dag_id] = catalogue.owner_of(drill) if drill is not None else catalogue.defaults.owner
        assert LazyDeserializedDAG.from_dag(dag).owner == expected[dag_id], dag_id
    kinds = {dag_id.split("__")[0] for dag_id in expected}
    assert {"dr_backup_restore", "dr_data_quality", "dr_certificates", "dr_alert_path"} <= kinds

    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        owners = {
            m.dag_id: m.owners for m in session.query(DagModel).filter(DagModel.dag_id.in_(list(expected)))
        }
    assert owners == expected
