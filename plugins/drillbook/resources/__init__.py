"""Resources: connection ids turned into typed clients (Postgres targets, Slack, boto3, ledger, notifier)."""
