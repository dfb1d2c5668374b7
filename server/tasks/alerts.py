"""Alert notices to the duty roster, and the SLA sweep (escalation) run by beat."""

from __future__ import annotations

import requests
from celery import shared_task
from wechatpy.exceptions import WeChatClientException

from server.services import alerts

RETRY = {
    "autoretry_for": (WeChatClientException, requests.RequestException, alerts.NoticeFailed),
    "retry_backoff": True,
    "max_retries": 5,
}


@shared_task(**RETRY)
def notify_alert(alert_id: int, round_name: str) -> None:
    alerts.notify(alert_id, round_name)  # idempotent: each recipient's notice is sent once per round


@shared_task
def sweep_alerts() -> None:
    alerts.sweep()  # the conditional UPDATE claims each escalation, so overlapping sweeps are harmless
