"""Events: offer notices, reminders, expiring waiting-list holds, anonymising old personal data."""

from __future__ import annotations

from celery import shared_task

from server.services import events


@shared_task
def send_event_notice(registration_id: int, kind: str) -> None:
    events.send_notice(registration_id, kind)  # the unique (registration, kind) row makes a duplicate a no-op


@shared_task
def send_event_reminders() -> None:
    events.send_due_reminders()  # each reminder is claimed by inserting its row: several workers send it once


@shared_task
def expire_event_holds() -> None:
    events.expire_holds()  # every move re-checks its row under the session lock: overlapping runs are harmless


@shared_task
def anonymise_old_events() -> None:
    events.anonymise_due()
