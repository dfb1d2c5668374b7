"""Alert notices to the duty roster, and the SLA sweep (escalation) run by beat."""

from __future__ import annotations

from celery import shared_task

from server.services import alerts


@shared_task
def notify_alert(alert_id: int, round_name: str) -> None:
    # Each recipient's notice is claimed before it is sent; failures wait out their backoff in the notice row and
    # the minute sweep sends them again (a Celery retry would outlast no outage longer than its own backoff).
    alerts.notify(alert_id, round_name)


@shared_task
def sweep_alerts() -> None:
    alerts.sweep()  # the conditional UPDATE claims each escalation, so overlapping sweeps are harmless
