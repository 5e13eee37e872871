"""drillbook: scheduled disaster-recovery drills with a tamper-evident evidence ledger."""

from drillbook.safety.redact import install_log_redaction

__version__ = "0.1.0"

# Every log line in a process that uses drillbook passes through drillbook.safety.redact.redact.
install_log_redaction()
