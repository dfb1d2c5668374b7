"""Followers: the weekly pass over WeChat's follower list."""

from __future__ import annotations

from celery import shared_task

from server.services import follower_sync


@shared_task
def sync_followers() -> None:
    # Not retried: a run reads the whole list again, and the next week's (or a click in the console) does that too.
    follower_sync.sync_from_wechat()
