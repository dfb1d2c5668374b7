"""Material library: chat photo downloads, derivation, officers told of lost photos, processing and WeChat uploads."""

from __future__ import annotations

import requests
from celery import Task, shared_task
from wechatpy.exceptions import WeChatClientException

from server.extensions import exclusive
from server.services import lost_photos, materials


@shared_task(autoretry_for=(WeChatClientException, requests.RequestException), retry_backoff=True, max_retries=5)
def fetch_chat_photo(item_id: int) -> None:
    # Idempotent (an item already stored or refused is skipped); the claim spares WeChat's media quota a second
    # download when a retry and the stalled-item sweep overlap.
    with exclusive(f"material-photo:{item_id}") as mine:
        if mine:
            materials.fetch_chat_photo(item_id)


@shared_task
def derive_item(item_id: int) -> None:
    materials.derive_item(item_id)


@shared_task
def requeue_stalled_items() -> None:
    # Both steps are idempotent (an item past PENDING is skipped), so an item queued twice costs one lookup.
    materials.expire_stalled_items()
    downloads, derivations = materials.stalled_items()
    for item_id in downloads:
        fetch_chat_photo.delay(item_id)
    for item_id in derivations:
        derive_item.delay(item_id)


@shared_task
def tell_lost_photos() -> None:
    # Each officer under a claim, each photo's outcome recorded: overlapping or repeated runs tell nobody twice, and
    # a refusal (45015: no message from the officer for 48 hours) is recorded, not raised, so nothing retries it.
    lost_photos.tell_officers()


@shared_task
def render_item(item_id: int, recipe: dict) -> None:
    materials.render(item_id, [materials.make_recipe(**recipe)])


@shared_task(
    bind=True, autoretry_for=(WeChatClientException, requests.RequestException), retry_backoff=True, max_retries=5
)
def upload_rendition(self: Task, rendition_id: int) -> None:
    # Only transient failures are raised (and retried); the last try records them. Run inline and propagating (the
    # demo, tests) a failure is never retried, so every try is the last. The claim keeps a duplicated delivery from
    # sending the same file alongside: WeChat would keep both.
    inline = bool(self.request.is_eager and self.app.conf.task_eager_propagates)
    with exclusive(f"material-upload:{rendition_id}") as mine:
        if mine:
            materials.upload_queued(
                rendition_id, retried=self.request.retries, last_try=inline or self.request.retries >= self.max_retries
            )


@shared_task
def upload_to_wechat(item_id: int, recipe: dict) -> None:
    # Queued (and audited) before uploads had a state: made and queued as a request is now, so it gets one too.
    materials.request_upload(item_id, materials.make_recipe(**recipe), audited=False)
