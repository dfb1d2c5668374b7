"""Keeping the WeChat tag 一线队员 in step with who is bound (the personalised menu targets it)."""

from __future__ import annotations

import requests
from celery import shared_task
from wechatpy.exceptions import WeChatClientException

from server.services import binding

RETRY = {"autoretry_for": (WeChatClientException, requests.RequestException), "retry_backoff": True, "max_retries": 5}


@shared_task(**RETRY)
def tag_officer(staff_id: int) -> None:
    binding.tag_officer(staff_id)  # idempotent: tagging twice is harmless, an unbound staff is skipped


@shared_task(**RETRY)
def untag_openid(openid: str) -> None:
    binding.untag_openid(openid)  # skipped if the openid belongs to an officer again
