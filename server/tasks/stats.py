"""Statistics: the daily datacube sync and the monthly report."""

from __future__ import annotations

import logging
from datetime import date

import requests
from celery import shared_task
from wechatpy.exceptions import WeChatClientException

from server.services import datacube, reports

log = logging.getLogger(__name__)

# WeChat publishes yesterday's figures at about 10:00 Beijing; until then (or on an error) retry, 30 min apart, for
# most of the day. The day's later beat run catches whatever is still missing.
RETRY = {
    "autoretry_for": (WeChatClientException, datacube.DatacubeNotReady, requests.RequestException),
    "retry_backoff": 1800,
    "retry_backoff_max": 1800,
    "retry_jitter": False,
    "max_retries": 16,
}


@shared_task
def sync_datacube() -> None:
    """Beat entry: one task per endpoint, so one failing endpoint retries alone."""
    for name in datacube.ENDPOINTS:
        sync_datacube_endpoint.delay(name)


# Answers no retry changes: no permission for the API, a refused date range, a wrong appid. The error is kept on the
# endpoint's sync state (the console shows it); half a day of retries would only spend the API quota.
PERMANENT = {40013, 48001, 61500, 61501}


@shared_task(**RETRY)
def sync_datacube_endpoint(name: str, start: str | None = None) -> None:
    # Idempotent: the days already stored are skipped; a second worker finds the lock taken and returns.
    try:
        datacube.sync_endpoint(name, start=date.fromisoformat(start) if start else None)
        if name == "getarticletotaldetail":
            datacube.fill_titles()
    except WeChatClientException as exc:
        if exc.errcode not in PERMANENT:
            raise
        log.error("datacube %s: WeChat refused (%s %s); not retried", name, exc.errcode, exc.errmsg)


@shared_task
def generate_scheduled_reports() -> None:
    reports.generate_scheduled()  # stored once per (kind, period): a rerun replaces the file


@shared_task
def generate_report(kind: str, start: str, by: str) -> None:
    reports.generate(kind, date.fromisoformat(start), by=by)
