"""Scheduled publishing and column reminders: thin wrappers over the services."""

from __future__ import annotations

import requests
from celery import shared_task
from wechatpy.exceptions import WeChatClientException

from server.services import columns, publishing


@shared_task
def publish_due_pushes() -> list[int]:
    # Claims are conditional UPDATEs under an advisory lock, failure notices are claimed the same way and sent
    # row by row under SKIP LOCKED: overlapping runs in several processes are harmless. A run killed mid-publish
    # loses its push lock with its connection; the next run (beat: every minute) takes the push over.
    return publishing.run_due()


@shared_task(
    bind=True, autoretry_for=(WeChatClientException, requests.RequestException), retry_backoff=True, max_retries=6
)
def settle_orphan_publish(self, publish_id: str, article_id: str, urls: list[str]) -> str:  # noqa: ANN001
    # "busy": the push's worker is alive and will record the id itself; asking again then finds it recorded.
    outcome = publishing.settle_orphan(publish_id, article_id, urls)
    if outcome == "busy":
        raise self.retry(countdown=20)
    return outcome


@shared_task
def send_column_reminders() -> int:
    return columns.send_gap_reminders()
