"""The evidence pages served inside Airflow's api-server (see drillbook.web.app)."""

# Where the api-server mounts the pages (``drillbook.airflow.evidence_plugin``); the Slack reports link a
# record's page from it (``drillbook.notify.render.evidence_url``). Kept here, free of imports, so the
# notifier does not import Airflow or FastAPI to build a link.
URL_PREFIX = "/drillbook"


def record_url(base_url: str, seq: int) -> str:
    """The evidence page of ledger record ``seq`` under the Airflow UI at ``base_url``."""
    return f"{base_url.rstrip('/')}{URL_PREFIX}/record/{int(seq)}"
