"""Slack reporting: render results as Block Kit, route them, deliver them (Slack or the local outbox).

Nothing here imports airflow; the Airflow layer hands over a ready WebClient
(``SlackSender(client=...)``), the CLI uses ``notifier_from_env``.
"""

from drillbook.notify.notifier import Notifier, Outcome, build_notifier, notifier_from_env
from drillbook.notify.outbox import OutboxSender, render_outbox_text
from drillbook.notify.slack import SlackSender

__all__ = [
    "Notifier",
    "OutboxSender",
    "Outcome",
    "SlackSender",
    "build_notifier",
    "notifier_from_env",
    "render_outbox_text",
]
