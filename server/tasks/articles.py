"""Scheduled publishing and column reminders: thin wrappers over the services."""

from __future__ import annotations

from celery import shared_task

from server.services import columns, publishing


@shared_task
def publish_due_pushes() -> list[int]:
    # Claims are conditional UPDATEs under an advisory lock, failure notices are claimed the same way and sent
    # row by row under SKIP LOCKED: overlapping runs in several processes are harmless. A run killed mid-publish
    # loses its push lock with its connection; the next run (beat: every minute) takes the push over.
    return publishing.run_due()


@shared_task
def settle_orphan_publish(publish_id: str, article_id: str, urls: list[str]) -> str:
    # No retries here: a result not attributable yet ("busy": the push's worker is alive and records the id itself;
    # "later": WeChat did not answer) stays a publish_orphan row; publish_due_pushes tries it again within the minute.
    return publishing.settle_orphan(publish_id, article_id, urls)


@shared_task
def send_column_reminders() -> int:
    return columns.send_gap_reminders()
