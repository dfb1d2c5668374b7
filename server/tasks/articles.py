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
def send_column_reminders() -> int:
    return columns.send_gap_reminders()
