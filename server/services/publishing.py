"""Publishing pushes to WeChat exactly once: claim, draft/add, freepublish/submit, then the result.

Exactly once, whatever runs concurrently or dies:
- a push is claimed by a conditional UPDATE (scheduled → publishing) under a transaction-level advisory lock, and
  only while no other push is mid-publish or waiting out a retry, so pushes leave in their scheduled order;
- the claiming process holds a session-level advisory lock on the push, on a connection of its own, until it is
  done: a process that dies (SIGKILL, OOM) loses its connection and the lock with it, and the next run - the next
  minute - takes the push over; a live one is never overtaken. (Without PostgreSQL a 5-minute lease stands in.)
- the draft media_id and the publish_id are committed as soon as WeChat gives them: a retry after a crash resumes
  (no second draft/add, no second submit);
- submit_started_at is committed before freepublish/submit is sent. An attempt that finds it set without a publish_id
  never submits again: the first submit may be publishing (the draft stays in the draft box until WeChat is done, so
  looking it up proves nothing). The push becomes UNCERTAIN and waits for WeChat's event (below) or a person, who
  checks the WeChat platform, then marks it published or retries on purpose. Only when WeChat answered the submit
  with an error is the mark cleared.
The result comes from the PUBLISHJOBFINISH push event; freepublish/get is only a fallback, within a daily budget.
An event naming a publish_id never recorded - the lost answer above, or one still on its way - goes to a task (the
/wechat handler must not call WeChat): settle_orphan reads a successful job's articles (freepublish/getarticle) and
settles the one push waiting for a submit answer with the same titles, UNCERTAIN or not yet, as published. It and the
worker storing its answer (_submitted) both write under the push's row lock on a fresh read, so neither undoes the
other; while the worker is alive the id is left to it, and the event is kept (a publish_orphan row) for the next
run_due. No match, several, or a failed job (nothing to match on): the editor checks, as before.
Failures and uncertain pushes are red in the console and sent once each to the duty editors as template messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload
from wechatpy.exceptions import WeChatClientException

from models import (
    AlertDuty,
    Article,
    ArticlePush,
    ArticleStatus,
    PublishOrphan,
    PushNotice,
    PushStatus,
    Role,
    Staff,
)
from server.extensions import db, dialect_insert, get_redis
from server.services import ServiceError, audit, images, materials
from server.services.articles import display_title, library_item_ids, locked_push, sent_content
from server.services.columns import LOCAL_TZ
from server.services.htmlclean import image_sources
from server.urls import public_url
from server.wechat.client import UnreadableAnswer, describe, get_client, send_template

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)  # without PostgreSQL: how long a claim keeps other runs off (no lock to ask)
MAX_ATTEMPTS = 5
POLL_AFTER = timedelta(minutes=3)  # the push event normally arrives within seconds
POLL_DAILY_BUDGET = 80  # freepublish/get allows 100 a day; leave room for people
ADVISORY_KEY = 0x0A871C1E  # serialises claims across processes (PostgreSQL)
HOLD_KEY = 0x0A871C1F  # (HOLD_KEY, push id): held by the process publishing that push, for as long as it lives
TRANSIENT_CODES = {-1, 40001, 42001, 45011}  # busy, token trouble, rate: try again later
NO_AUTH = 48001
PUBLISH_FAILURES = {
    2: "原创声明失败",
    3: "发布失败（常规失败）",
    4: "平台审核不通过",
    5: "发布成功后已被删除",
    6: "发布成功后被系统封禁",
}
# Refusals with a way out of their own in publishing (export and publish by hand, tomorrow, a new cover), said first
# for the duty notice's 20 characters; any other code reads as describe() has it.
REFUSAL_TEXT = {
    48001: "公众号没有发布接口权限（48001）：请导出 HTML 在公众号后台手动发布，再把文章链接粘贴回来标记为已发布",
    45009: "今日接口调用次数已用完（45009），请明天再试或手动发布",
    40007: "素材无效（40007）：封面或草稿已失效",
    # freepublish/submit's own refusals: the draft itself, not the moment
    53503: "草稿未通过微信的发布检查（53503）：请检查标题、正文和封面有无违规内容或外部链接，修改后重新排期",
    53504: "需在公众平台发表这篇草稿（53504）：请在公众号后台「草稿箱」打开它并发表，再粘贴文章链接标记为已发布",
    53505: "需先在公众平台手动保存草稿（53505）：请在公众号后台「草稿箱」打开、保存后发表，再粘贴文章链接标记为已发布",
}
UNCERTAIN_TEXT = "发布状态不明，请在公众平台核对后标记"
DRAFT_GONE_TEXT = "草稿已不在草稿箱（40007）：多半已经发表，请在公众平台核对；已发表的粘贴链接标记为已发布"
EDITORS = (Role.ADMIN, Role.EDITOR)
NOTICE_MAX_ATTEMPTS = 5
DEMO_TEMPLATE_FAILED = "demo-publish-failed-template"


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# -- claiming ---------------------------------------------------------------------------------------------------

# pg_locks, for the one question no row can answer: is the process that claimed this push still alive?
_pg_locks = sa.table(
    "pg_locks",
    sa.column("locktype"),
    sa.column("database"),
    sa.column("classid"),
    sa.column("objid"),
    sa.column("objsubid"),
    sa.column("granted"),
)
_pg_database = sa.table("pg_database", sa.column("oid"), sa.column("datname"))


def _postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _held() -> sa.ColumnElement[bool]:
    """Some live connection holds the push's (HOLD_KEY, id) advisory lock, in this database."""
    this_database = sa.select(_pg_database.c.oid).where(_pg_database.c.datname == sa.func.current_database())
    return sa.exists().where(
        _pg_locks.c.locktype == "advisory",
        _pg_locks.c.database == this_database.scalar_subquery(),
        sa.cast(_pg_locks.c.classid, sa.BigInteger) == HOLD_KEY,
        sa.cast(_pg_locks.c.objid, sa.BigInteger) == ArticlePush.id,
        _pg_locks.c.objsubid == 2,  # the two-key form
        _pg_locks.c.granted.is_(True),
    )


def _working(now: datetime, postgresql: bool) -> sa.ColumnElement[bool]:
    """Mid-publish, or waiting out a retry backoff (lease_until): later pushes wait behind it."""
    waiting = sa.and_(ArticlePush.lease_until.is_not(None), ArticlePush.lease_until > now)
    return sa.and_(ArticlePush.status == PushStatus.PUBLISHING, sa.or_(_held(), waiting) if postgresql else waiting)


def _due(now: datetime, postgresql: bool) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(ArticlePush.status == PushStatus.SCHEDULED, ArticlePush.scheduled_at <= now),
        sa.and_(ArticlePush.status == PushStatus.PUBLISHING, sa.not_(_working(now, postgresql))),  # its worker died
    )


class Hold:
    """The session advisory locks a publishing process holds on the pushes it works on, on `connection`.

    PostgreSQL drops them when the connection closes, so when the process dies (SIGKILL, OOM, a lost host) its push
    is free for the next run at once; a claim with a live holder is never taken over, however long it takes.
    Without PostgreSQL (development, SQLite) there is no lock: the claim's lease stands in for it.
    """

    def __init__(self, connection: sa.Connection | None, *, commit: bool = True) -> None:
        self.connection, self.commit = connection, commit
        self.lost = False

    def _call(self, fn: Any, push_id: int) -> bool:
        if self.connection is None:
            return True
        if self.lost:
            return False
        try:
            ok = self.connection.scalar(sa.select(fn(sa.cast(HOLD_KEY, sa.Integer), sa.cast(push_id, sa.Integer))))
            if self.commit:
                self.connection.commit()  # session-level locks outlive the transaction; do not sit idle in one
        except sa.exc.SQLAlchemyError as exc:
            # The lock connection is gone (a network blip, a restarted pooler), and its locks with it: the work done
            # stands, but nothing more may be claimed without a lock. The next run starts on a fresh connection.
            log.warning("publishing lock connection lost (%s): no further claims in this run", type(exc).__name__)
            self.lost = True
            return False
        return bool(ok)

    def take(self, push_id: int) -> bool:
        return self._call(sa.func.pg_try_advisory_lock, push_id)

    def release(self, push_id: int) -> None:
        self._call(sa.func.pg_advisory_unlock, push_id)


@contextmanager
def holding() -> Iterator[Hold]:
    """A Hold on a connection of this process's own (PostgreSQL), closed afterwards."""
    bind = db.session.get_bind()
    if bind.dialect.name != "postgresql":
        yield Hold(None)
    elif isinstance(bind, sa.Connection):  # the session is bound to one connection (tests): hold on that one
        yield Hold(bind, commit=False)
    else:
        with bind.connect() as connection:
            try:
                yield Hold(connection)
            finally:
                try:  # a pooled connection keeps its session locks: return none with it
                    connection.execute(sa.select(sa.func.pg_advisory_unlock_all()))
                    connection.commit()
                except sa.exc.SQLAlchemyError:
                    connection.invalidate()  # broken anyway; never back to the pool, its locks go with it


def claim_next(now: datetime | None = None, *, hold: Hold) -> int | None:
    """Claim the earliest due push, unless another is mid-publish (order); returns its id, or None.

    The claim is committed with `hold` holding the push's lock: the process publishing it keeps the lock until done.
    """
    now = _now(now)
    postgresql = _postgresql()
    try:
        if postgresql:
            db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_KEY)))
        busy = db.session.scalar(sa.select(ArticlePush.id).where(_working(now, postgresql)).limit(1))
        if busy is not None:
            return None
        push_id = db.session.scalar(
            sa.select(ArticlePush.id)
            .where(_due(now, postgresql))
            .order_by(ArticlePush.scheduled_at, ArticlePush.id)
            .limit(1)
        )
        if push_id is None:
            return None
        claimed = db.session.execute(
            sa.update(ArticlePush)
            .where(ArticlePush.id == push_id, _due(now, postgresql))  # the condition again: only one claimant wins
            .values(
                status=PushStatus.PUBLISHING,
                lease_until=None if postgresql else now + LEASE,  # with PostgreSQL the lock is the lease
                attempts=ArticlePush.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        # Locked before the claim commits: no other run ever sees this push publishing without a live holder.
        if claimed != 1 or not hold.take(push_id):
            db.session.rollback()
            return None
        return push_id
    finally:
        db.session.commit()  # ends the transaction, releasing the advisory lock


def run_due(now: datetime | None = None, *, limit: int = 20) -> list[int]:
    """The beat job: publish every due push in order, then poll stragglers. Safe to run in many processes."""
    done = []
    settle_pending_orphans(now)  # before claims: a dead worker's push is settled, not made UNCERTAIN
    with holding() as hold:
        for _ in range(limit):
            push_id = claim_next(now, hold=hold)
            if push_id is None:
                break
            try:
                publish_claimed(push_id, now)
            finally:
                hold.release(push_id)  # settled, or waiting out a backoff; if it raised, the next run resumes it
            done.append(push_id)
    poll_submitted(now)
    send_failure_notices()  # also those recorded from PUBLISHJOBFINISH since the last run
    return done


# -- publishing -------------------------------------------------------------------------------------------------


def _upload(endpoint: str, data: bytes, params: dict[str, str] | None = None) -> dict[str, Any]:
    return get_client().post(endpoint, params=params or {}, files={"media": ("image.jpg", data, "image/jpeg")})


def _shrink(data: bytes, limit: int) -> bytes:
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(data)) as img:
        img = img.convert("RGB")
        while True:
            out = BytesIO()
            img.save(out, "JPEG", quality=75, optimize=True)
            if out.tell() <= limit or img.width < 200:
                return out.getvalue()
            img = img.resize((img.width * 3 // 4, img.height * 3 // 4))


def _read_media(article: Article, relative: str, what: str) -> bytes:
    try:
        return images.media_path(relative, under="articles").read_bytes()
    except (OSError, ValueError):  # a lost file is a plain failure to fix, not a worker crash retried forever
        raise ServiceError(f"《{article.title}》的{what}文件丢失，请重新上传后再排期") from None


def _prepare(article: Article) -> dict[str, Any]:
    """Upload the cover and body images not yet on WeChat (each recorded at once), then the draft article."""
    if not article.cover_media_id:
        if not article.cover_path:
            raise ServiceError(f"《{article.title}》没有封面")
        data = _read_media(article, article.cover_path, "封面")
        article.cover_media_id = _upload("material/add_material", data, {"type": "image"})["media_id"]
        db.session.commit()
    body = article.body_html
    mapping = dict(article.wechat_images or {})
    for src in image_sources(body):
        if src.startswith("/admin/articles/media/") and src not in mapping:
            data = _read_media(article, src.removeprefix("/admin/articles/media/"), "正文图片")
            mapping[src] = _upload("media/uploadimg", _shrink(data, 1024 * 1024 - 1024))["url"]
            article.wechat_images = dict(mapping)  # a new object: the one assigned before is not seen as changed
            db.session.commit()
    for local, remote in mapping.items():
        body = body.replace(f'src="{local}"', f'src="{remote}"')
    content = sent_content(article, body)
    return {
        "article_type": "news",
        "title": display_title(article),
        "author": article.author,
        "digest": article.digest,
        "content": content,
        "content_source_url": article.source_url,
        "thumb_media_id": article.cover_media_id,
        "need_open_comment": 0,
        "only_fans_can_comment": 0,
    }


def _lost_draft(client: Any, push: ArticlePush, payload: list[dict[str, Any]]) -> str | None:
    """The draft an earlier attempt's draft/add made if its answer was lost (cut off, timed out, the worker killed):
    one made since the articles last changed, with their titles and covers in order (only this app has those cover
    media_ids). Used rather than a second draft left in the editors' draft box."""
    since = max(a.updated_at for a in push.articles).timestamp() - 1  # WeChat's create_time is in whole seconds
    wanted = [(a["title"], a["thumb_media_id"]) for a in payload]
    page = client.raw_post("cgi-bin/draft/batchget", {"offset": 0, "count": 20, "no_content": 1})
    for item in page.get("item") or []:
        content = item.get("content") or {}
        news = [(n.get("title"), n.get("thumb_media_id")) for n in content.get("news_item") or []]
        if news == wanted and (content.get("create_time") or 0) >= since:
            log.info("push %s: the draft %s made by an earlier attempt is used", push.id, item.get("media_id"))
            return item.get("media_id")
    return None


def publish_claimed(push_id: int, now: datetime | None = None) -> ArticlePush:
    """Carry a claimed push forward from wherever the last attempt stopped."""
    now = _now(now)
    push = db.session.get(ArticlePush, push_id, populate_existing=True)
    if push is None or push.status is not PushStatus.PUBLISHING:
        return push  # type: ignore[return-value]
    if push.publish_id is None and push.submit_started_at is not None:
        # An earlier attempt sent freepublish/submit and died before recording the answer: WeChat may be
        # publishing it right now. Submitting again could publish it twice; a person checks instead.
        return _uncertain(push, "上次提交后未收到结果")
    client = get_client()
    submitting = False  # True from the moment freepublish/submit may have reached WeChat
    try:
        for article in push.articles:
            article.status = ArticleStatus.PUBLISHING
        db.session.commit()
        if push.draft_media_id is None:
            payload = [_prepare(a) for a in push.articles]
            lost = _lost_draft(client, push, payload) if push.attempts > 1 else None
            push.draft_media_id = lost or client.raw_post("cgi-bin/draft/add", {"articles": payload})["media_id"]
            db.session.commit()
        if push.publish_id is None:
            _ = client.access_token  # fetched first: a token failure must not look like a lost submit
            push.submit_started_at = now
            db.session.commit()
            submitting = True
            result = client.raw_post("cgi-bin/freepublish/submit", {"media_id": push.draft_media_id})
            push = _submitted(push.id, str(result["publish_id"]), now)
    except WeChatClientException as exc:
        db.session.rollback()
        if submitting and exc.errcode is None:  # an HTTP error status, not WeChat's answer: it may have gone through
            return _uncertain(push, f"提交时 HTTP 错误 {getattr(exc.response, 'status_code', '')}")
        if submitting and isinstance(exc, UnreadableAnswer):  # not WeChat's -1: its answer was lost on the way
            return _uncertain(push, f"提交后{exc.errmsg}")
        if submitting:
            _clear_submit(push)  # WeChat refused the submit: nothing was published, a later attempt may submit
            if exc.errcode == 40007:  # WeChat takes a draft out of the draft box once it is published
                return _fail(push, exc.errcode, DRAFT_GONE_TEXT)
        if exc.errcode == 40007:  # draft/add: a cover media_id WeChat no longer has (deleted from its library)
            for article in push.articles:
                article.cover_media_id = None  # uploaded afresh when the articles are scheduled again
            db.session.commit()
        if exc.errcode in TRANSIENT_CODES or exc.errcode is None:  # None: an HTTP error status, e.g. a 502
            return _retry_later(push, now, exc.errcode, describe(exc))
        text = REFUSAL_TEXT.get(exc.errcode) or describe(exc, "微信拒绝发布：")
        return _fail(push, exc.errcode, text)
    except (requests.ConnectionError, requests.Timeout) as exc:
        db.session.rollback()
        if submitting and not isinstance(exc, requests.ConnectTimeout):  # the request may have reached WeChat
            return _uncertain(push, f"提交时网络错误：{type(exc).__name__}")
        if submitting:
            _clear_submit(push)  # no connection was made: nothing was sent
        return _retry_later(push, now, None, describe(exc))
    except ServiceError as exc:
        db.session.rollback()
        return _fail(push, None, str(exc))
    except Exception as exc:  # a bug or an answer of a shape nobody expected: bounded like a transient error
        db.session.rollback()
        log.exception("push %s: unexpected error", push.id)
        if submitting:  # the submit may have reached WeChat: a person checks, it is never resubmitted
            return _uncertain(push, f"提交时出错：{type(exc).__name__}")
        return _retry_later(push, now, None, describe(exc))
    return push


def _submitted(push_id: int, publish_id: str, now: datetime) -> ArticlePush:
    """Record freepublish/submit's answer under the push's row lock, on a fresh read.

    WeChat's PUBLISHJOBFINISH can beat this answer. Had this process's hold been lost meanwhile (its lock connection
    dropped), settle_orphan may already have recorded the same publish_id and settled the push: that stands. Or a
    takeover made it UNCERTAIN (and an editor may have retried it): it was submitted after all, and waits for its
    result like any other.
    """
    push = db.session.scalar(
        sa.select(ArticlePush)
        .where(ArticlePush.id == push_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if push.publish_id is not None:
        db.session.rollback()
        if push.publish_id != publish_id:  # one submit per push: this would be a second publication
            log.error("push %s: submit answered %s, but %s is recorded", push.id, publish_id, push.publish_id)
        return push
    push.publish_id = publish_id
    # PUBLISHED (by an editor, meanwhile) keeps its status: the id is only recorded, so the event changes nothing.
    if push.status in (PushStatus.PUBLISHING, PushStatus.UNCERTAIN, PushStatus.SCHEDULED):
        if push.status is not PushStatus.PUBLISHING:  # a takeover or an editor's retry came first: it was submitted
            push.error_code = push.error_message = None
            for article in push.articles:
                article.status = ArticleStatus.PUBLISHING
        push.status, push.submitted_at, push.lease_until = PushStatus.SUBMITTED, now, None
    db.session.commit()
    log.info("push %s submitted as publish %s", push.id, publish_id)
    return push


def _clear_submit(push: ArticlePush) -> None:
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    push.submit_started_at = None
    db.session.commit()


def _uncertain(push: ArticlePush, why: str) -> ArticlePush:
    """Stop for a person: the push may or may not be published; it is never submitted again by itself."""
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    push.status, push.lease_until = PushStatus.UNCERTAIN, None
    push.error_code, push.error_message = None, f"{UNCERTAIN_TEXT}（{why}）"[:500]
    push.failure_no += 1
    for article in push.articles:
        article.status = ArticleStatus.UNCERTAIN
    audit.record("push.uncertain", target=push, note=why[:200])
    db.session.commit()
    log.warning("push %s: outcome of freepublish/submit unknown (%s); waiting for a person", push.id, why)
    return push


def _retry_later(push: ArticlePush, now: datetime, code: int | None, message: str) -> ArticlePush:
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    if push.attempts >= MAX_ATTEMPTS:
        return _fail(push, code, f"多次重试仍失败：{message}")
    push.lease_until = now + timedelta(minutes=2 ** (push.attempts - 1))  # backoff: re-claimed when it expires
    push.error_code, push.error_message = code, message[:500]
    db.session.commit()
    log.warning("push %s: transient error %s, retry after %s", push.id, code, push.lease_until)
    return push


def _fail(push: ArticlePush, code: int | None, message: str) -> ArticlePush:
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    push.status, push.lease_until = PushStatus.FAILED, None
    push.error_code, push.error_message = code, message[:500]
    push.failure_no += 1
    for article in push.articles:
        article.status = ArticleStatus.FAILED
    audit.record("push.failed", target=push, note=message[:200])
    db.session.commit()
    log.warning("push %s failed: %s %s", push.id, code, message)  # the console and the duty editors' notices
    return push


# -- results ----------------------------------------------------------------------------------------------------


def record_result(
    publish_id: str | None,
    publish_status: int | None,
    article_id: str | None = None,
    urls: list[str] | None = None,
    *,
    now: datetime | None = None,
) -> ArticlePush | None:
    """Settle a push from PUBLISHJOBFINISH or freepublish/get; a repeated result changes nothing.

    A publish_id never recorded goes to settle_orphan in a task: this runs in the /wechat handler, which has a second
    or two and must not call WeChat."""
    if not publish_id or publish_status is None:
        return None
    now = _now(now)
    push = db.session.scalar(sa.select(ArticlePush).where(ArticlePush.publish_id == str(publish_id)).with_for_update())
    if push is None:
        db.session.rollback()
        if publish_status == 0 and article_id:
            # Not ours, or a submit whose answer was lost or is still on its way: the task works out which.
            log.info("publish result for unknown publish_id %s: attributing it by its titles", publish_id)
            _remember_orphan(str(publish_id), str(article_id), urls or [], now)
            _enqueue_orphan(str(publish_id), str(article_id), urls or [])
        elif publish_status != 1:
            # A failed job names no article (getarticle needs its article_id): nothing ties it to one of our pushes,
            # and a guess could mark failed - and open to a retry - a push that was published. The editor checks.
            log.warning(
                "publish result for unknown publish_id %s: status %s, not attributed", publish_id, publish_status
            )
        return None
    if push.status in (PushStatus.PUBLISHED, PushStatus.FAILED) or publish_status == 1:
        db.session.rollback()
        return push
    if publish_status == 0:
        return _published(push, article_id, urls or [], now)
    return _fail(push, publish_status, PUBLISH_FAILURES.get(publish_status, f"发布失败（状态 {publish_status}）"))


def _published(push: ArticlePush, article_id: str | None, urls: list[str], now: datetime) -> ArticlePush:
    """Settle a push WeChat published (the caller holds its row lock); clears any red state."""
    push.status, push.published_at, push.wechat_article_id = PushStatus.PUBLISHED, now, article_id
    push.error_code = push.error_message = None
    for i, article in enumerate(push.articles):
        article.status, article.published_at = ArticleStatus.PUBLISHED, now
        article.wechat_article_id = article_id
        article.url = urls[i] if i < len(urls) else None
    _mark_photos_used(push)
    db.session.commit()
    log.info("push %s published as %s", push.id, article_id)
    return push


def _mark_photos_used(push: ArticlePush) -> None:
    """Library photos count as used (图片采用) when their article goes out, in the same commit."""
    for article in push.articles:
        materials.mark_used(library_item_ids(article), article.id, commit=False)


# -- results nobody was waiting for -------------------------------------------------------------------------------

ORPHAN_PATIENCE = timedelta(days=1)  # then it is the editor's alone, as before
# A submit whose answer never came back: the claim still publishing, or already handed to a person.
ORPHAN_STATUSES = (PushStatus.PUBLISHING, PushStatus.UNCERTAIN)


def _remember_orphan(publish_id: str, article_id: str, urls: list[str], now: datetime) -> None:
    """Keep the result until it is attributed: run_due tries again (the push's worker was alive, or the task was
    lost with a killed worker - the event is not sent again once /wechat answered it)."""
    try:
        db.session.execute(
            dialect_insert(PublishOrphan)
            .values(publish_id=publish_id, article_id=article_id, urls=urls, since=now)
            .on_conflict_do_nothing(index_elements=["publish_id"])  # a repeated event keeps the first "since"
        )
        db.session.commit()
    except sa.exc.SQLAlchemyError:
        db.session.rollback()
        log.exception("publish %s: not kept for another try (article %s, %s)", publish_id, article_id, urls)


def _forget_orphan(publish_id: str) -> None:
    db.session.execute(sa.delete(PublishOrphan).where(PublishOrphan.publish_id == publish_id))
    db.session.commit()


def _enqueue_orphan(publish_id: str, article_id: str, urls: list[str]) -> None:
    from server.tasks.articles import settle_orphan_publish  # tasks import services; this call goes back lazily

    try:
        settle_orphan_publish.delay(publish_id, article_id, urls)
    except Exception:  # noqa: BLE001  (the broker is down or, eager, the task failed: run_due tries again)
        log.exception("publish %s: attribution not enqueued", publish_id)


def settle_orphan(publish_id: str, article_id: str, urls: list[str], *, now: datetime | None = None) -> str:
    """A published job whose publish_id we never recorded: find the push whose submit's answer was lost by the
    articles' titles (freepublish/getarticle) and settle it, so nobody has to check the platform by hand.

    Returns "known" (the id was recorded meanwhile: settled the usual way), "settled", "busy" (the push's worker is
    alive and about to record the id itself) or "later" (WeChat did not answer): both kept for run_due to try again;
    "unmatched" or "ambiguous": left to the editor. Only successful jobs come here (see record_result).
    """
    now = _now(now)
    outcome = _attribute_orphan(publish_id, article_id, urls, now)
    if outcome in ("busy", "later"):
        _remember_orphan(publish_id, article_id, urls, now)
    else:
        _forget_orphan(publish_id)
    return outcome


def _attribute_orphan(publish_id: str, article_id: str, urls: list[str], now: datetime) -> str:
    if db.session.scalar(sa.select(ArticlePush.id).where(ArticlePush.publish_id == publish_id)) is not None:
        db.session.rollback()
        record_result(publish_id, 0, article_id, urls, now=now)
        return "known"
    candidates = db.session.scalars(
        sa.select(ArticlePush).where(
            ArticlePush.publish_id.is_(None),
            ArticlePush.submit_started_at.is_not(None),
            ArticlePush.status.in_(ORPHAN_STATUSES),
        )
    ).all()
    if not candidates:  # the usual case for a job that is not ours: no call to WeChat
        db.session.rollback()
        log.warning("publish %s: no push is waiting for a lost submit answer; not ours", publish_id)
        return "unmatched"
    try:
        news = get_client().raw_post("cgi-bin/freepublish/getarticle", {"article_id": article_id})["news_item"]
    except (WeChatClientException, requests.RequestException) as exc:
        db.session.rollback()
        errcode = getattr(exc, "errcode", None)
        if errcode is not None and errcode not in TRANSIENT_CODES:  # e.g. 53600: no such article (deleted)
            log.warning("publish %s: getarticle %s refused (%s); left to the editor", publish_id, article_id, errcode)
            return "unmatched"
        log.warning("publish %s: getarticle failed (%s); trying again later", publish_id, exc)
        return "later"
    titles = [item.get("title") for item in news]
    # As sent in draft/add, in the push's order (WeChat keeps it: the first is the headline).
    matches = [p.id for p in candidates if [display_title(a) for a in p.articles] == titles]
    if len(matches) != 1:
        db.session.rollback()
        log.warning(
            "publish %s (%s): %s pushes have these titles; left to the editor", publish_id, titles, len(matches)
        )
        return "ambiguous" if matches else "unmatched"
    # Under the row lock, re-read: the claim's UPDATE and the worker recording its answer (_submitted) take it too,
    # so whichever comes second sees what the first did.
    push = db.session.scalar(
        sa.select(ArticlePush)
        .where(ArticlePush.id == matches[0])
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if push.publish_id == publish_id:  # its worker got the answer meanwhile
        db.session.rollback()
        record_result(publish_id, 0, article_id, urls, now=now)
        return "known"
    if push.publish_id is not None or push.status not in ORPHAN_STATUSES:
        db.session.rollback()
        log.warning("publish %s: push %s was settled otherwise meanwhile (%s)", publish_id, push.id, push.status)
        return "unmatched"
    working = sa.select(ArticlePush.id).where(ArticlePush.id == push.id, _working(now, _postgresql()))
    if push.status is PushStatus.PUBLISHING and db.session.scalar(working) is not None:
        db.session.rollback()  # its worker is alive: the submit's answer is on its way, and it records the id
        log.info("publish %s: push %s is still waiting for its submit answer; trying again later", publish_id, push.id)
        return "busy"
    was = push.status
    push.publish_id, push.submitted_at, push.lease_until = publish_id, push.submit_started_at, None
    audit.record(
        "push.settled_from_event",
        target=push,
        before={"status": was.value},
        note=f"提交结果丢失；按微信发布结果（publish_id {publish_id}）的标题对应，自动标记已发布",
    )
    _published(push, article_id, urls or [item.get("url") for item in news], now)
    log.warning(
        "push %s (%s) settled from WeChat's event: publish %s, article %s", push.id, was, publish_id, article_id
    )
    return "settled"


def settle_pending_orphans(now: datetime | None = None) -> int:
    """run_due's first step, before a dead worker's push is taken over: attribute the results kept for another try.

    Returns how many pushes were settled; a result kept longer than ORPHAN_PATIENCE is dropped (left to the editor).
    """
    now = _now(now)
    kept = db.session.execute(
        sa.select(PublishOrphan.publish_id, PublishOrphan.article_id, PublishOrphan.urls, PublishOrphan.since).order_by(
            PublishOrphan.since
        )
    ).all()
    db.session.rollback()  # each attribution below locks and commits on its own
    settled = 0
    for publish_id, article_id, urls, since in kept:
        if now - since > ORPHAN_PATIENCE:
            _forget_orphan(publish_id)
            log.warning("publish %s: not attributed within %s; left to the editor", publish_id, ORPHAN_PATIENCE)
            continue
        if settle_orphan(publish_id, article_id, urls, now=now) in ("settled", "known"):
            settled += 1
    return settled


def _poll_key(now: datetime) -> str:
    return f"publishing:polls:{now.astimezone(LOCAL_TZ).date().isoformat()}"  # WeChat's quota days are Beijing days


def poll_submitted(now: datetime | None = None, *, after: timedelta = POLL_AFTER) -> int:
    """Fallback for a lost push event: freepublish/get on pushes waiting too long, within the daily budget."""
    now = _now(now)
    waiting = db.session.scalars(
        sa.select(ArticlePush)
        .where(ArticlePush.status == PushStatus.SUBMITTED, ArticlePush.submitted_at <= now - after)
        .order_by(ArticlePush.submitted_at)
        .limit(10)
    ).all()
    redis, key, polled = get_redis(), _poll_key(now), 0
    for push in waiting:
        if redis.incr(key) > POLL_DAILY_BUDGET:
            break
        redis.expire(key, 2 * 86400)
        try:
            result = get_client().raw_post("cgi-bin/freepublish/get", {"publish_id": push.publish_id})
        except WeChatClientException as exc:
            if exc.errcode == 45009:
                redis.set(key, POLL_DAILY_BUDGET, ex=2 * 86400)
                break
            log.warning("freepublish/get for push %s: %s", push.id, exc.errcode)
            continue
        except requests.RequestException as exc:
            # Unreachable or slow: the next run polls again, and this one goes on to send the failure notices.
            log.warning("freepublish/get for push %s: %s", push.id, type(exc).__name__)
            break
        push.polls += 1
        db.session.commit()
        polled += 1
        urls = [i.get("article_url") for i in (result.get("article_detail") or {}).get("item", [])]
        record_result(push.publish_id, result.get("publish_status"), result.get("article_id"), urls, now=now)
    return polled


def polls_today(now: datetime | None = None) -> int:
    return int(get_redis().get(_poll_key(_now(now))) or 0)


# -- people -----------------------------------------------------------------------------------------------------


def mark_published_manually(by: Staff, push_id: int, urls: list[str]) -> ArticlePush:
    """An editor pastes the article URLs: the 48001 fallback (published by hand from the exported HTML), or an
    uncertain push found published on the WeChat platform."""
    if by.role not in EDITORS:
        raise ServiceError("只有编辑可以标记发布")
    push = locked_push(
        push_id,
        (PushStatus.FAILED, PushStatus.SCHEDULED, PushStatus.UNCERTAIN),
        "只有失败、状态不明或尚未发布的推送可以手动标记为已发布",
    )
    urls = [u.strip() for u in urls if u.strip()]
    if len(urls) != len(push.articles) or not all(u.startswith(("https://", "http://")) for u in urls):
        db.session.rollback()
        raise ServiceError(f"请逐行粘贴 {len(push.articles)} 篇文章的链接（http/https）")
    now = datetime.now(UTC)
    push.status, push.published_at, push.manual = PushStatus.PUBLISHED, now, True
    push.error_code = push.error_message = None
    for article, url in zip(push.articles, urls, strict=True):
        article.status, article.url, article.published_at = ArticleStatus.PUBLISHED, url, now
    _mark_photos_used(push)
    audit.record("push.manual_publish", target=push, after={"urls": urls})
    db.session.commit()
    return push


def retry_uncertain(by: Staff, push_id: int) -> ArticlePush:
    """A person found on the WeChat platform that an uncertain push was not published: submit it again, on purpose.

    It goes back to the queue at its own (past) time, so the next run of the beat job takes it first.
    """
    if by.role not in EDITORS:
        raise ServiceError("只有编辑可以重新提交")
    push = locked_push(push_id, (PushStatus.UNCERTAIN,), "只有状态不明的推送可以确认后重新提交")
    push.status, push.lease_until, push.attempts = PushStatus.SCHEDULED, None, 0
    push.submit_started_at = None  # the person's check replaces the lost answer
    push.error_code = push.error_message = None
    for article in push.articles:
        article.status = ArticleStatus.SCHEDULED
    audit.record("push.retry", target=push, note="已在公众平台核对：未发布，重新提交")
    db.session.commit()
    return push


def release_failed(by: Staff, push_id: int) -> ArticlePush:
    """Give a failed push's articles back to the approved pool, to be scheduled again."""
    if by.role not in EDITORS:
        raise ServiceError("只有编辑可以重新排期")
    push = locked_push(push_id, (PushStatus.FAILED,), "只有失败的推送可以重新排期")
    for article in list(push.articles):
        article.status, article.push_id = ArticleStatus.APPROVED, None
    push.status = PushStatus.CANCELLED
    db.session.commit()
    return push


# The push list's status filter: one status, or these groups of them.
PUSH_STATUS_GROUPS = {
    "upcoming": (PushStatus.SCHEDULED, PushStatus.PUBLISHING, PushStatus.SUBMITTED),
    "attention": (PushStatus.FAILED, PushStatus.UNCERTAIN),
}


def push_listing(status: str | None, column_id: int | None) -> sa.Select[tuple[ArticlePush]]:
    """Pushes newest first (by their time slot), optionally of one status or group and one column, for a pager."""
    where = []
    if status in PUSH_STATUS_GROUPS:
        where.append(ArticlePush.status.in_(PUSH_STATUS_GROUPS[status]))
    elif status in {s.value for s in PushStatus}:
        where.append(ArticlePush.status == PushStatus(status))
    if column_id is not None:
        where.append(ArticlePush.column_id == column_id)
    return (
        sa.select(ArticlePush)
        .options(selectinload(ArticlePush.articles), selectinload(ArticlePush.column))
        .where(*where)
        .order_by(ArticlePush.scheduled_at.desc(), ArticlePush.id.desc())
    )


def recent_failures(days: int = 7) -> list[ArticlePush]:
    """The red banner for the duty editors: failed pushes of the last days, and every push awaiting a check."""
    since = datetime.now(UTC) - timedelta(days=days)
    return list(
        db.session.scalars(
            sa.select(ArticlePush)
            .where(
                sa.or_(
                    sa.and_(ArticlePush.status == PushStatus.FAILED, ArticlePush.scheduled_at >= since),
                    ArticlePush.status == PushStatus.UNCERTAIN,  # never ages out: it may be published twice
                )
            )
            .order_by(ArticlePush.scheduled_at.desc())
        )
    )


# -- notices to the duty editors --------------------------------------------------------------------------------


def notice_recipients() -> list[Staff]:
    """Who is told of a failed push: editors and admins on the duty roster (值班, the one alerts use), or every
    editor and admin when none of them is on it; only active accounts with a bound WeChat can receive one."""
    people = list(
        db.session.scalars(
            sa.select(Staff)
            .join(AlertDuty, AlertDuty.staff_id == Staff.id)
            .where(Staff.role.in_(EDITORS), Staff.active.is_(True))
            .order_by(Staff.id)
        )
    )
    if not people:
        people = list(
            db.session.scalars(
                sa.select(Staff).where(Staff.role.in_(EDITORS), Staff.active.is_(True)).order_by(Staff.id)
            )
        )
    return [p for p in people if p.openid]


def _short(text: str, limit: int = 20) -> str:
    text = " ".join((text or "").split()) or "—"
    return text if len(text) <= limit else text[: limit - 1] + "…"  # template "thing" values: 20 characters


def _notice_data(push: ArticlePush) -> dict[str, dict[str, str]]:
    from server.filters import local_dt

    title = display_title(push.articles[0]) if push.articles else f"推送 #{push.id}"
    reason = push.error_message or push.status.label
    if push.status is PushStatus.UNCERTAIN:  # "…核对后标记（why）": thing1 says the first part already
        reason = reason.removeprefix(UNCERTAIN_TEXT).removeprefix("（").removesuffix("）") or push.status.label
    return {
        "thing1": {"value": "发布状态不明，请核对" if push.status is PushStatus.UNCERTAIN else "推文发布失败"},
        "thing2": {"value": _short(title)},
        "time3": {"value": local_dt(push.scheduled_at)},
        "thing4": {"value": _short(reason)},
        "character_string5": {"value": f"P{push.id}"},
    }


def _claim_failures() -> None:
    """Fix who hears of each failure not yet noticed: the conditional UPDATE takes each failure number once."""
    claimed = db.session.execute(
        sa.update(ArticlePush)
        .where(ArticlePush.notified_no < ArticlePush.failure_no)
        .values(notified_no=ArticlePush.failure_no)
        .returning(ArticlePush.id, ArticlePush.failure_no)
    ).all()
    if not claimed:
        db.session.rollback()
        return
    people = notice_recipients()
    for push_id, failure_no in claimed:
        if not people:
            log.warning("push %s failed but no editor on duty has a bound WeChat: console only", push_id)
        for person in people:
            db.session.add(PushNotice(push_id=push_id, failure_no=failure_no, staff_id=person.id, attempts=0))
    db.session.commit()


def _next_notice(tried: set[int]) -> PushNotice | None:
    query = (
        sa.select(PushNotice)
        .where(PushNotice.sent_at.is_(None), PushNotice.attempts < NOTICE_MAX_ATTEMPTS)
        .where(PushNotice.id.not_in(tried))  # one failing send must not hold up the others
        .order_by(PushNotice.id)
        .limit(1)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # several runs send side by side, never the same notice
    return db.session.scalar(query)


def send_failure_notices(limit: int = 50) -> int:
    """Send each failure's template messages once per duty editor; a failed send is tried again on the next runs."""
    _claim_failures()
    template_id = current_app.config.get("WECHAT_TEMPLATE_PUBLISH_FAILED") or DEMO_TEMPLATE_FAILED
    sent, tried = 0, set()
    for _ in range(limit):
        notice = _next_notice(tried)
        if notice is None:
            db.session.rollback()
            break
        tried.add(notice.id)
        notice.attempts += 1
        push = db.session.get(ArticlePush, notice.push_id)
        person = db.session.get(Staff, notice.staff_id)
        if push is None or not push.status.alarming or push.failure_no != notice.failure_no:
            notice.attempts, notice.error = NOTICE_MAX_ATTEMPTS, "已处理，不再通知"  # resolved before it went out
        elif person is None or not person.openid or not person.active:
            notice.attempts, notice.error = NOTICE_MAX_ATTEMPTS, "编辑未绑定微信或已停用"
        else:
            body = {
                "touser": person.openid,
                "template_id": template_id,
                "data": _notice_data(push),
                "client_msg_id": f"push-notice-{notice.id}",  # WeChat sends one per openid + client_msg_id
            }
            if link := public_url("console.article_push_detail", push_id=push.id):
                body["url"] = link
            error, permanent = send_template(body)
            if error is None:
                notice.sent_at, notice.error = datetime.now(UTC), None
                sent += 1
            else:
                notice.error = error[:200]
                if permanent:
                    notice.attempts = NOTICE_MAX_ATTEMPTS
                log.warning("notice %s for push %s failed: %s", notice.id, push.id, error)
        db.session.commit()  # per notice: its row lock goes, and a crash resends at most this one
    return sent
