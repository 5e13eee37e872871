"""Reporting over the ledger: the scorecard's shape, the periodic digest and the watchdog."""
