"""Events: notices (sent now, retried by a minute sweep), reminders, expiring waiting-list holds, old personal data."""

from __future__ import annotations

from celery import shared_task

from server.services import events


@shared_task
def deliver_event_notice(notice_id: int) -> None:
    events.deliver_notice(notice_id)  # claims its row first: a duplicated task or the sweep never sends it twice


@shared_task
def send_event_notice(registration_id: int, kind: str) -> None:
    # The previous signature, for tasks queued before an upgrade: queues the row if missing, then one attempt.
    events.send_notice(registration_id, kind)


@shared_task
def retry_event_notices() -> None:
    events.deliver_due_notices()  # failed attempts past their backoff, lost tasks, rows of a worker that died


@shared_task
def send_event_reminders() -> None:
    events.send_due_reminders()  # each reminder row is inserted by one worker and claimed before it is sent


@shared_task
def expire_event_holds() -> None:
    events.expire_holds()  # every move re-checks its row under the session lock: overlapping runs are harmless


@shared_task
def anonymise_old_events() -> None:
    events.anonymise_due()
