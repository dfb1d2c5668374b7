"""Publishing pushes to WeChat exactly once: claim, draft/add, freepublish/submit, then the result.

Exactly once, whatever runs concurrently or dies:
- a push is claimed by a conditional UPDATE (scheduled → publishing, with a lease) under a transaction-level
  advisory lock, and only while no other push is mid-publish, so pushes leave in their scheduled order;
- the draft media_id and the publish_id are committed as soon as WeChat gives them: a retry after a crash resumes
  (no second draft/add, no second submit);
- before re-submitting after a crash between "submit sent" and "publish_id recorded", the draft is looked up: WeChat
  removes a draft once it is published, so a missing draft means "maybe published" and the push stops for a person.
The result comes from the PUBLISHJOBFINISH push event; freepublish/get is only a fallback, within a daily budget.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa
from wechatpy.exceptions import WeChatClientException

from models import Article, ArticlePush, ArticleStatus, PushStatus, Role, Staff
from server.extensions import db, get_redis
from server.services import ServiceError, audit, images
from server.services.articles import display_title
from server.services.columns import LOCAL_TZ
from server.services.htmlclean import image_sources
from server.wechat.client import get_client

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 5
POLL_AFTER = timedelta(minutes=3)  # the push event normally arrives within seconds
POLL_DAILY_BUDGET = 80  # freepublish/get allows 100 a day; leave room for people
ADVISORY_KEY = 0x0A871C1E  # serialises claims across processes (PostgreSQL)
TRANSIENT_CODES = {-1, 40001, 42001, 45011}  # busy, token trouble, rate: try again later
NO_AUTH = 48001
PUBLISH_FAILURES = {
    2: "原创声明失败",
    3: "发布失败（常规失败）",
    4: "平台审核不通过",
    5: "发布成功后已被删除",
    6: "发布成功后被系统封禁",
}
ERROR_TEXT = {
    48001: "公众号没有发布接口权限（48001）：请导出 HTML 在公众号后台手动发布，再把文章链接粘贴回来标记为已发布",
    45009: "今日接口调用次数已用完（45009），请明天再试或手动发布",
    40007: "素材无效（40007）：封面或草稿已失效",
    45002: "正文过长（45002）",
    45003: "标题过长（45003）",
}


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# -- claiming ---------------------------------------------------------------------------------------------------


def _due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(ArticlePush.status == PushStatus.SCHEDULED, ArticlePush.scheduled_at <= now),
        sa.and_(ArticlePush.status == PushStatus.PUBLISHING, ArticlePush.lease_until <= now),  # its worker died
    )


def claim_next(now: datetime | None = None) -> int | None:
    """Claim the earliest due push, unless another is mid-publish (order); returns its id, or None."""
    now = _now(now)
    try:
        if db.session.get_bind().dialect.name == "postgresql":
            db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_KEY)))
        busy = db.session.scalar(
            sa.select(ArticlePush.id).where(ArticlePush.status == PushStatus.PUBLISHING, ArticlePush.lease_until > now)
        )
        if busy is not None:
            return None
        push_id = db.session.scalar(
            sa.select(ArticlePush.id).where(_due(now)).order_by(ArticlePush.scheduled_at, ArticlePush.id).limit(1)
        )
        if push_id is None:
            return None
        claimed = db.session.execute(
            sa.update(ArticlePush)
            .where(ArticlePush.id == push_id, _due(now))  # the condition again: only one claimant wins
            .values(status=PushStatus.PUBLISHING, lease_until=now + LEASE, attempts=ArticlePush.attempts + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        return push_id if claimed == 1 else None
    finally:
        db.session.commit()  # ends the transaction, releasing the advisory lock


def run_due(now: datetime | None = None, *, limit: int = 20) -> list[int]:
    """The beat job: publish every due push in order, then poll stragglers. Safe to run in many processes."""
    done = []
    for _ in range(limit):
        push_id = claim_next(now)
        if push_id is None:
            break
        publish_claimed(push_id, now)
        done.append(push_id)
    poll_submitted(now)
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


def _prepare(article: Article) -> dict[str, Any]:
    """Upload the cover and body images not yet on WeChat (each recorded at once), then the draft article."""
    if not article.cover_media_id:
        if not article.cover_path:
            raise ServiceError(f"《{article.title}》没有封面")
        data = images.media_path(article.cover_path).read_bytes()
        article.cover_media_id = _upload("material/add_material", data, {"type": "image"})["media_id"]
        db.session.commit()
    body = article.body_html
    mapping = dict(article.wechat_images or {})
    for src in image_sources(body):
        if src.startswith("/admin/articles/media/") and src not in mapping:
            data = images.media_path(src.removeprefix("/admin/articles/media/")).read_bytes()
            mapping[src] = _upload("media/uploadimg", _shrink(data, 1024 * 1024 - 1024))["url"]
            article.wechat_images = mapping
            db.session.commit()
    for local, remote in mapping.items():
        body = body.replace(f'src="{local}"', f'src="{remote}"')
    column = article.column
    content = (column.header_html if column else "") + body + (column.footer_html if column else "")
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


def publish_claimed(push_id: int, now: datetime | None = None) -> ArticlePush:
    """Carry a claimed push forward from wherever the last attempt stopped."""
    now = _now(now)
    push = db.session.get(ArticlePush, push_id, populate_existing=True)
    if push is None or push.status is not PushStatus.PUBLISHING:
        return push  # type: ignore[return-value]
    client = get_client()
    try:
        for article in push.articles:
            article.status = ArticleStatus.PUBLISHING
        db.session.commit()
        if push.draft_media_id is None:
            payload = [_prepare(a) for a in push.articles]
            push.draft_media_id = client.raw_post("cgi-bin/draft/add", {"articles": payload})["media_id"]
            db.session.commit()
        if push.publish_id is None:
            if push.submit_started_at is not None and not _draft_exists(push.draft_media_id):
                return _fail(push, None, "上次提交后状态不明（草稿已不在草稿箱，可能已发布）：请到公众号后台核对")
            push.submit_started_at = now
            db.session.commit()
            result = client.raw_post("cgi-bin/freepublish/submit", {"media_id": push.draft_media_id})
            push.publish_id = str(result["publish_id"])
            push.status, push.submitted_at, push.lease_until = PushStatus.SUBMITTED, now, None
            db.session.commit()
            log.info("push %s submitted as publish %s", push.id, push.publish_id)
    except WeChatClientException as exc:
        db.session.rollback()
        if exc.errcode in TRANSIENT_CODES:
            return _retry_later(push, now, exc.errcode, str(exc.errmsg))
        return _fail(push, exc.errcode, ERROR_TEXT.get(exc.errcode) or f"微信返回错误 {exc.errcode}：{exc.errmsg}")
    except (requests.ConnectionError, requests.Timeout) as exc:
        db.session.rollback()
        return _retry_later(push, now, None, f"网络错误：{type(exc).__name__}")
    except ServiceError as exc:
        db.session.rollback()
        return _fail(push, None, str(exc))
    return push


def _draft_exists(media_id: str | None) -> bool:
    try:
        get_client().raw_post("cgi-bin/draft/get", {"media_id": media_id})
    except WeChatClientException as exc:
        if exc.errcode == 40007:
            return False
        raise
    return True


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
    for article in push.articles:
        article.status = ArticleStatus.FAILED
    audit.record("push.failed", target=push, note=message[:200])
    db.session.commit()
    log.warning("push %s failed: %s %s", push.id, code, message)  # the console shows it to the duty editors
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
    """Settle a push from PUBLISHJOBFINISH or freepublish/get; a repeated result changes nothing."""
    if not publish_id or publish_status is None:
        return None
    push = db.session.scalar(sa.select(ArticlePush).where(ArticlePush.publish_id == str(publish_id)).with_for_update())
    if push is None or push.status in (PushStatus.PUBLISHED, PushStatus.FAILED) or publish_status == 1:
        db.session.rollback()
        return push
    if publish_status == 0:
        now = _now(now)
        push.status, push.published_at, push.wechat_article_id = PushStatus.PUBLISHED, now, article_id
        push.error_code = push.error_message = None
        urls = urls or []
        for i, article in enumerate(push.articles):
            article.status, article.published_at = ArticleStatus.PUBLISHED, now
            article.wechat_article_id = article_id
            article.url = urls[i] if i < len(urls) else None
        db.session.commit()
        log.info("push %s published as %s", push.id, article_id)
        return push
    return _fail(push, publish_status, PUBLISH_FAILURES.get(publish_status, f"发布失败（状态 {publish_status}）"))


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
    """The 48001 fallback: an editor published the exported HTML by hand and pastes the article URLs."""
    if by.role not in (Role.ADMIN, Role.EDITOR):
        raise ServiceError("只有编辑可以标记发布")
    push = db.session.get(ArticlePush, push_id, with_for_update=True)
    if push is None or push.status not in (PushStatus.FAILED, PushStatus.SCHEDULED):
        db.session.rollback()
        raise ServiceError("只有失败或尚未发布的推送可以手动标记为已发布")
    urls = [u.strip() for u in urls if u.strip()]
    if len(urls) != len(push.articles) or not all(u.startswith(("https://", "http://")) for u in urls):
        db.session.rollback()
        raise ServiceError(f"请逐行粘贴 {len(push.articles)} 篇文章的链接（http/https）")
    now = datetime.now(UTC)
    push.status, push.published_at, push.manual = PushStatus.PUBLISHED, now, True
    for article, url in zip(push.articles, urls, strict=True):
        article.status, article.url, article.published_at = ArticleStatus.PUBLISHED, url, now
    audit.record("push.manual_publish", target=push, after={"urls": urls})
    db.session.commit()
    return push


def release_failed(by: Staff, push_id: int) -> ArticlePush:
    """Give a failed push's articles back to the approved pool, to be scheduled again."""
    if by.role not in (Role.ADMIN, Role.EDITOR):
        raise ServiceError("只有编辑可以重新排期")
    push = db.session.get(ArticlePush, push_id, with_for_update=True)
    if push is None or push.status is not PushStatus.FAILED:
        db.session.rollback()
        raise ServiceError("只有失败的推送可以重新排期")
    for article in list(push.articles):
        article.status, article.push_id = ArticleStatus.APPROVED, None
    push.status = PushStatus.CANCELLED
    db.session.commit()
    return push


def recent_failures(days: int = 7) -> list[ArticlePush]:
    """Failed pushes of the last days: the red banner for the duty editors."""
    since = datetime.now(UTC) - timedelta(days=days)
    return list(
        db.session.scalars(
            sa.select(ArticlePush)
            .where(ArticlePush.status == PushStatus.FAILED, ArticlePush.scheduled_at >= since)
            .order_by(ArticlePush.scheduled_at.desc())
        )
    )
