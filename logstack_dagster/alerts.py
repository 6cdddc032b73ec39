"""Alerts: one JSON message to a webhook (Slack-compatible body), and always the log.

The webhook comes from `LOGSTACK_ALERT_WEBHOOK`. Its URL is a secret for most chat tools,
so it is never logged; a webhook that fails is logged and never fails the caller.
"""

import json
import logging
import urllib.request
from collections.abc import Mapping

from dagster import (
    ConfigurableResource,
    DefaultSensorStatus,
    RunFailureSensorContext,
    run_failure_sensor,
)

log = logging.getLogger(__name__)


def alert_body(title: str, details: Mapping[str, object]) -> dict:
    """The message: `text` for Slack and kin, and the details as fields for machines."""
    lines = [f"*{title}*", *(f"{key}: {value}" for key, value in details.items())]
    return {"text": "\n".join(lines), "title": title,
            "details": {k: _plain(v) for k, v in details.items()}}


class AlertResource(ConfigurableResource):
    """Where alerts go: a webhook URL, or empty for the log alone."""

    webhook: str = ""
    timeout: float = 5.0

    def send(self, title: str, details: Mapping[str, object]) -> bool:
        """Log the alert and post it to the webhook; True when the webhook took it."""
        log.warning("ALERT %s %s", title, json.dumps({k: _plain(v) for k, v in details.items()}))
        if not self.webhook:
            return False

        request = urllib.request.Request(
            self.webhook, data=json.dumps(alert_body(title, details)).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return 200 <= response.status < 300
        except OSError as exc:
            log.error("the alert webhook did not take the alert: %s", exc.__class__.__name__)
            return False


def _plain(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


@run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description="Posts an alert for every failed run of this code location (ingest included).",
)
def run_failure_alert_sensor(context: RunFailureSensorContext, alerts: AlertResource) -> None:
    run = context.dagster_run
    alerts.send(f"logstack: run of {run.job_name} failed", {
        "run_id": run.run_id, "job": run.job_name,
        "error": (_dataflow_error(context.instance, run.run_id)
                  or context.failure_event.message or "see the run's log")})


def _dataflow_error(instance, run_id: str) -> str | None:
    """The ingest dataflow's own error, from the run's log: the run's failure says only
    that the step's process exited with code 1."""
    from logstack_dagster.streaming.run import FAILED

    for entry in reversed(instance.all_logs(run_id)):
        if entry.dagster_event is None and FAILED in (entry.user_message or ""):
            return entry.user_message.split(FAILED, 1)[1]
    return None
