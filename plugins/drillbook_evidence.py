"""drillbook's Airflow plugin: the auditors' evidence pages (the plugin manager loads top-level files only)."""

from drillbook.airflow.evidence_plugin import DrillbookEvidencePlugin

__all__ = ["DrillbookEvidencePlugin"]
