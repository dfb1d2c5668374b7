"""Tips: chat photo downloads and the notice outbox."""

from __future__ import annotations

import requests
from celery import shared_task
from wechatpy.exceptions import WeChatClientException

from server.extensions import exclusive
from server.services import tips


@shared_task(autoretry_for=(WeChatClientException, requests.RequestException), retry_backoff=True, max_retries=5)
def fetch_chat_photo(photo_id: int) -> None:
    # Idempotent (a photo already stored or refused is skipped); the claim spares WeChat's media quota a second
    # download when a retry and the stalled-photo sweep overlap.
    with exclusive(f"tip-photo:{photo_id}") as mine:
        if mine:
            tips.fetch_chat_photo(photo_id)


@shared_task
def deliver_tip_notices() -> None:
    # Claims rows with SKIP LOCKED and records each outcome; failures wait in the outbox with backoff for the
    # next run (after each transition and every minute from beat), so this task itself never needs a retry.
    tips.deliver_due_notices()


@shared_task
def requeue_stalled_photos() -> None:
    # Downloads are idempotent (a stored or refused photo is skipped), so a photo queued twice costs one lookup.
    for photo_id in tips.stalled_chat_photos():
        fetch_chat_photo.delay(photo_id)
