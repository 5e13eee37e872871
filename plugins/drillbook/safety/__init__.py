"""Cross-cutting safety rules every layer passes through: secret redaction (``redact``)."""
