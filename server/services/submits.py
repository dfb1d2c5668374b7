"""A create form's submit key, claimed before its write: a double click or a resent form saves once.

The page carries a random key; with what was sent it names the submit (server/console/once.py). The first copy of
the POST inserts that name (the primary key decides, under concurrency too), does its work and records where it led.
A second copy finds the row and is sent there; if the first is still running it waits a moment for it. A refused
submit gives its name back, so the same form sent again after a failure goes through.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import FormSubmit, utcnow
from server.extensions import db, dialect_insert
from server.services import ServiceError

KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")
WAIT = 5.0  # seconds a second copy waits for the first to finish
STALE = timedelta(minutes=2)  # a claim this old without a result was lost with its process: the next copy takes it
STILL_RUNNING = "上一次提交仍在处理，请稍候刷新页面查看结果，不要重复提交。"


def new_key() -> str:
    return secrets.token_urlsafe(24)


def valid(key: str | None) -> bool:
    return bool(key and KEY.fullmatch(key))


def claim(key: str) -> str | None:
    """None: this copy goes ahead. A URL: an earlier copy already saved, and led there.
    ServiceError: an earlier copy is still running (past WAIT)."""
    deadline = time.monotonic() + WAIT
    insert = dialect_insert(FormSubmit).values(key=key, claimed_at=utcnow()).on_conflict_do_nothing()
    while True:
        mine = db.session.scalar(insert.returning(FormSubmit.key))  # a copy in flight: waits for its commit
        db.session.commit()
        if mine is not None:
            return None
        row = db.session.get(FormSubmit, key, populate_existing=True)
        if row is not None and row.result_url:
            return row.result_url
        if row is not None and _take_over(key, utcnow() - STALE):
            return None
        db.session.rollback()  # a fresh snapshot for the next look
        if time.monotonic() >= deadline:
            raise ServiceError(STILL_RUNNING)
        time.sleep(0.1)


def _take_over(key: str, before: datetime) -> bool:
    result = db.session.execute(
        sa.update(FormSubmit)
        .where(FormSubmit.key == key, FormSubmit.result_url.is_(None), FormSubmit.claimed_at < before)
        .values(claimed_at=utcnow())
    )
    db.session.commit()
    return result.rowcount == 1


def done(key: str, result_url: str) -> None:
    db.session.execute(sa.update(FormSubmit).where(FormSubmit.key == key).values(result_url=result_url[:512]))
    db.session.commit()


def release(key: str) -> None:
    """The submit was refused or failed: the key is free for the corrected form."""
    db.session.rollback()
    db.session.execute(sa.delete(FormSubmit).where(FormSubmit.key == key, FormSubmit.result_url.is_(None)))
    db.session.commit()


def forget_old(before: datetime) -> int:
    """Keys outlive any double click by far after a day; the hourly retention job drops them."""
    result = db.session.execute(sa.delete(FormSubmit).where(FormSubmit.claimed_at < before))
    db.session.commit()
    return result.rowcount
