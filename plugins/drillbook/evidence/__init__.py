"""Auditors' evidence: the views over the ledger (pages, pack) and their shared HTML rendering."""
