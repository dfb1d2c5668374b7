"""Articles: editing (every version kept), the review workflow, covers and body images, assembling pushes.

draft → submitted (liaison or editor) → approved (reviewer) or back to draft → scheduled (in a push) → publishing →
published / failed. Editing an approved or scheduled article sends it back to draft: it must be approved again.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from PIL import Image

from models import Article, ArticlePush, ArticleStatus, ArticleVersion, NewsColumn, PushStatus, Role, Staff, Unit
from server.extensions import db
from server.inputs import to_int
from server.services import ServiceError, audit, images, materials
from server.services.htmlclean import clean_html, html_to_text, image_sources

TITLE_MAX, AUTHOR_MAX, DIGEST_MAX = 32, 16, 128  # WeChat's draft/add limits
PUSH_MAX = 8
COVER_RATIO = 2.35
COVER_WIDTH = 900
COVER_MIN_WIDTH = 200  # smaller, a cover is a smear in the feed
COVER_MAX_BYTES = 64 * 1024
BODY_IMAGE_MAX_BYTES = 1024 * 1024  # media/uploadimg
EDITABLE = {ArticleStatus.DRAFT, ArticleStatus.SUBMITTED, ArticleStatus.APPROVED, ArticleStatus.SCHEDULED}
WRITERS = {Role.ADMIN, Role.EDITOR, Role.LIAISON}
REVIEWERS = {Role.ADMIN, Role.REVIEWER}
SCHEDULERS = {Role.ADMIN, Role.EDITOR}
# Library photos are copied under articles/library/<item id>/: the file name says which photo an article uses, so
# what is marked used at publishing is what the published body and cover hold (an image deleted in the editor is not).
LIBRARY_FOLDER = "articles/library"
_LIBRARY_ITEM = re.compile(r"^(?:/admin/articles/media/)?articles/library/(\d+)/[\w-]+\.jpg$")


# What an article form may set; anything else a request carries is not an argument of save_article.
FORM_FIELDS = ("title", "author", "digest", "source_url", "body_html", "legal_refs", "column_id", "unit_id")


def _check_fields(fields: dict[str, Any]) -> dict[str, Any]:
    title = str(fields.get("title") or "").strip()
    if not 1 <= len(title) <= TITLE_MAX:
        raise ServiceError(f"标题为 1 到 {TITLE_MAX} 个字（微信限制）")
    author = str(fields.get("author") or "").strip()
    digest = str(fields.get("digest") or "").strip()
    if len(author) > AUTHOR_MAX:
        raise ServiceError(f"作者不超过 {AUTHOR_MAX} 个字")
    if len(digest) > DIGEST_MAX:
        raise ServiceError(f"摘要不超过 {DIGEST_MAX} 个字")
    source = str(fields.get("source_url") or "").strip()
    if source and not source.startswith(("http://", "https://")):
        raise ServiceError("原文链接须以 http:// 或 https:// 开头")
    body = clean_html(str(fields.get("body_html") or ""))
    if not html_to_text(body) and "<img" not in body:
        raise ServiceError("正文不能为空")
    if len(body) >= 20000:
        raise ServiceError("正文过长（微信限制 2 万字符以内）")
    if twice := _repeated_photos(body):
        raise ServiceError(f"素材 #{twice} 在正文中出现了不止一次，请删除重复的那张后再保存")
    column_id, unit_id = _ref(fields, "column_id", NewsColumn, "栏目"), _ref(fields, "unit_id", Unit, "单位")
    return {
        "title": title,
        "author": author,
        "digest": digest,
        "source_url": source[:1024],
        "body_html": body,
        "legal_refs": str(fields.get("legal_refs") or "").strip()[:4000],
        "column_id": column_id,
        "unit_id": unit_id,
    }


def _ref(fields: dict[str, Any], name: str, model: type, label: str) -> int | None:
    """The id of an existing row named by a form field, None if the field is empty."""
    raw = str(fields.get(name) or "").strip()
    if not raw:
        return None
    ref_id = to_int(raw, lo=1)
    if ref_id is None or db.session.get(model, ref_id) is None:
        raise ServiceError(f"{label}不存在")
    return ref_id


def _snapshot_version(article: Article, by: Staff | None) -> None:
    article.versions.append(
        ArticleVersion(
            version=article.version,
            title=article.title,
            digest=article.digest,
            body_html=article.body_html,
            body_text=html_to_text(article.body_html),
            legal_refs=article.legal_refs,
            saved_by_id=by.id if by else None,
        )
    )


def save_article(
    by: Staff,
    article_id: int | None = None,
    *,
    cover: bytes | None = None,
    cover_item_id: int | None = None,
    **fields: Any,
) -> Article:
    """Create or edit, with a new cover image if one is given: uploaded bytes, else a library photo's cover
    rendition (`cover_item_id`). Each save that changes something is a new version, and approval is lost on change."""
    if by.role not in WRITERS:
        raise ServiceError("无权编辑推文")
    data = _check_fields(fields)
    if not cover and cover_item_id:
        cover = _library_bytes(by, cover_item_id, "cover")
    else:
        cover_item_id = None
    jpeg = cover_jpeg(cover) if cover else None  # a bad image refuses the whole save
    if by.role is Role.LIAISON:
        data["unit_id"] = by.unit_id  # a liaison writes for their own unit
    if article_id is None:
        article = Article(created_by_id=by.id, status=ArticleStatus.DRAFT, version=1, wechat_images={}, **data)
        db.session.add(article)
        if jpeg:
            db.session.flush()  # the id names the file
            _store_cover(article, jpeg, cover_item_id)
        _snapshot_version(article, by)
        audit.record("article.create", target=article)
        db.session.commit()
        return article
    article = _get(article_id)
    if article.status not in EDITABLE:
        raise ServiceError("发布中或已发布的推文不能修改")
    changed = any(getattr(article, k) != v for k, v in data.items())
    if not changed and not jpeg:
        return article
    for key, value in data.items():
        setattr(article, key, value)
    if jpeg:
        _store_cover(article, jpeg, cover_item_id)
    article.version += 1
    _snapshot_version(article, by)
    if article.status in (ArticleStatus.APPROVED, ArticleStatus.SCHEDULED):
        _leave_push(article)
        article.status = ArticleStatus.DRAFT  # changed after approval (the cover too): it must be approved again
    audit.record("article.update", target=article, after={"version": article.version, "cover": bool(jpeg)})
    db.session.commit()
    return article


def _leave_push(article: Article) -> None:
    push = article.push
    article.push_id, article.push = None, None
    if push is not None and push.status is PushStatus.SCHEDULED and not [a for a in push.articles if a is not article]:
        push.status = PushStatus.CANCELLED


def submit(by: Staff, article_id: int) -> Article:
    article = _get(article_id)
    if by.role not in WRITERS:
        raise ServiceError("无权提交审核")
    if article.status is not ArticleStatus.DRAFT:
        raise ServiceError("只有草稿可以提交审核")
    article.status = ArticleStatus.SUBMITTED
    article.submitted_at = article.submitted_at or datetime.now(UTC)  # 投稿 counts once, at the first submission
    audit.record("article.submit", target=article)
    db.session.commit()
    return article


def review(by: Staff, article_id: int, *, approve: bool, comment: str = "") -> Article:
    """Approve (with an optional comment) or send back to draft (a comment is required)."""
    if by.role not in REVIEWERS:
        raise ServiceError("只有审核人员可以审核")
    article = _get(article_id)
    if article.status is not ArticleStatus.SUBMITTED:
        raise ServiceError("这篇推文不在待审核状态")
    comment = comment.strip()[:500]
    if not approve and not comment:
        raise ServiceError("退回时请填写修改意见")
    article.reviewed_version = article.version
    article.review_comment = comment
    if approve:
        article.status, article.approved_version = ArticleStatus.APPROVED, article.version
    else:
        article.status = ArticleStatus.DRAFT
    audit.record("article.approve" if approve else "article.return", target=article, note=comment or None)
    db.session.commit()
    return article


@dataclass
class DiffLine:
    kind: str  # "add", "del", "same", "hunk"
    text: str


def review_diff(article: Article) -> list[DiffLine] | None:
    """What changed (cleaned text, title, legal references) since the last review; None if never reviewed."""
    if article.reviewed_version is None or article.reviewed_version == article.version:
        return None
    old = next((v for v in article.versions if v.version == article.reviewed_version), None)
    if old is None:
        return None

    def lines(title: str, text: str, refs: str) -> list[str]:
        return [f"标题：{title}", *text.splitlines(), *(f"法条：{r}" for r in refs.splitlines() if r.strip())]

    before = lines(old.title, old.body_text, old.legal_refs)
    after = lines(article.title, html_to_text(article.body_html), article.legal_refs)
    out = []
    for line in difflib.unified_diff(before, after, lineterm="", n=2):
        if line.startswith(("---", "+++")):
            continue
        kind = {"@": "hunk", "+": "add", "-": "del"}.get(line[:1], "same")
        out.append(DiffLine(kind, line[1:] if kind != "hunk" else "…"))
    return out


def _get(article_id: int) -> Article:
    """The article, locked and read afresh for a change: two reviewers at once, or an edit racing its scheduling,
    act one after the other, each on what the other left."""
    article = db.session.get(Article, article_id, with_for_update=True, populate_existing=True)
    if article is None:
        raise ServiceError("推文不存在")
    return article


# -- images -----------------------------------------------------------------------------------------------------


def cover_jpeg(data: bytes) -> bytes:
    """A 2.35:1 centre crop, at most COVER_WIDTH wide, re-encoded JPEG ≤ 64 KB (WeChat's thumb limit)."""
    processed = images.process_image(data)  # verified, upright, no EXIF
    with Image.open(io.BytesIO(processed.public_jpeg)) as img:
        w, h = img.size
        # Rounded, not truncated: the library's 900 × 383 cover came out 900 × 382.
        if w / h > COVER_RATIO:
            nw = min(w, round(h * COVER_RATIO))
            box = ((w - nw) // 2, 0, (w - nw) // 2 + nw, h)
        else:
            nh = min(h, round(w / COVER_RATIO))
            box = (0, (h - nh) // 2, w, (h - nh) // 2 + nh)
        if box[2] - box[0] < COVER_MIN_WIDTH or box[3] - box[1] < COVER_MIN_WIDTH / COVER_RATIO:
            raise images.ImageRejected("封面图片太小或过于狭长，请换一张（建议 900×383 像素）")
        crop = img.crop(box)
        if crop.width > COVER_WIDTH:
            crop = crop.resize((COVER_WIDTH, round(COVER_WIDTH / COVER_RATIO)), Image.Resampling.LANCZOS)
        for quality in (85, 75, 65, 55, 45, 35):
            out = io.BytesIO()
            crop.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= COVER_MAX_BYTES:
                return out.getvalue()
            if quality == 55:
                crop = crop.resize((crop.width * 2 // 3, crop.height * 2 // 3), Image.Resampling.LANCZOS)
    raise images.ImageRejected("封面图片无法压缩到 64 KB 以内，请换一张")


def _store_cover(article: Article, jpeg: bytes, item_id: int | None = None) -> None:
    name = f"{article.id}-{secrets.token_hex(6)}.jpg"
    relative = f"{LIBRARY_FOLDER}/{item_id}/cover-{name}" if item_id else f"articles/covers/{name}"
    images.write_media(relative, jpeg)
    article.cover_path, article.cover_media_id = relative, None  # uploaded to WeChat when it publishes


def store_body_image(data: bytes) -> str:
    """Keep an image pasted into the editor; returns its console URL (uploaded to WeChat at publish time)."""
    processed = images.process_image(data)
    relative = f"articles/body/{processed.sha256[:32]}.jpg"
    images.write_media(relative, processed.public_jpeg)
    return f"/admin/articles/media/{relative}"


def _library_bytes(by: Staff, item_id: int, purpose: str) -> bytes:
    rendition = materials.rendition_for_article(by, item_id, purpose)  # refused for a photo `by` may not see
    try:
        return images.media_path(rendition.path).read_bytes()
    except (OSError, ValueError):
        raise ServiceError("素材文件丢失，请在素材库重新加工后再试") from None


def store_library_image(by: Staff, item_id: int) -> str:
    """A library photo's in-article rendition copied among the articles' files; returns its console URL (the cleaner
    and the media route accept only those; WeChat gets it at publish time)."""
    if by.role not in WRITERS:
        raise ServiceError("无权编辑推文")
    data = _library_bytes(by, item_id, "article")
    relative = f"{LIBRARY_FOLDER}/{item_id}/{hashlib.sha256(data).hexdigest()[:32]}.jpg"
    images.write_media(relative, data)
    return f"/admin/articles/media/{relative}"


def _repeated_photos(body_html: str) -> int | None:
    """A library photo the body holds more than once (inserted twice from the picker), if any."""
    ids = [int(m.group(1)) for src in image_sources(body_html) if (m := _LIBRARY_ITEM.match(src))]
    return next((i for i in ids if ids.count(i) > 1), None)


def library_item_ids(article: Article) -> list[int]:
    """The library photos in an article's body and cover, each once."""
    paths = [*image_sources(article.body_html or ""), article.cover_path or ""]
    return sorted({int(m.group(1)) for p in paths if (m := _LIBRARY_ITEM.match(p))})


# -- pushes -----------------------------------------------------------------------------------------------------


NO_SUCH_COLUMN = "所选栏目不存在，请重新选择"


def schedule_push(by: Staff, article_ids: list[int], scheduled_at: datetime, column_id: int | None) -> ArticlePush:
    """Assemble approved articles (1–8, in the given order) into a push at a time slot."""
    if by.role not in SCHEDULERS:
        raise ServiceError("只有编辑可以排期")
    if not 1 <= len(article_ids) <= PUSH_MAX:
        raise ServiceError(f"一次推送包含 1 到 {PUSH_MAX} 篇推文")
    if len(set(article_ids)) != len(article_ids):
        raise ServiceError("同一篇推文不能重复加入")
    if scheduled_at.tzinfo is None:
        raise ServiceError("发布时间无效")
    if scheduled_at <= datetime.now(UTC):
        raise ServiceError("发布时间须晚于现在")
    if column_id is not None and db.session.get(NewsColumn, column_id) is None:
        raise ServiceError(NO_SUCH_COLUMN)
    articles = list(
        db.session.scalars(sa.select(Article).where(Article.id.in_(article_ids)).with_for_update())
    )  # locked: two editors scheduling the same article cannot both win
    by_id = {a.id: a for a in articles}
    push = ArticlePush(
        column_id=column_id,
        scheduled_at=scheduled_at.astimezone(UTC).replace(second=0, microsecond=0),
        status=PushStatus.SCHEDULED,
        created_by_id=by.id,
    )
    db.session.add(push)
    for index, article_id in enumerate(article_ids):
        article = by_id.get(article_id)
        if article is None:
            raise _abort("推文不存在")
        if article.status is not ArticleStatus.APPROVED or article.approved_version != article.version:
            raise _abort(f"《{article.title}》尚未审核通过，不能排期")
        if not article.cover_path:
            raise _abort(f"《{article.title}》还没有封面")
        article.status, article.push, article.push_index = ArticleStatus.SCHEDULED, push, index
    audit.record("push.schedule", target=push, after={"articles": article_ids, "at": push.scheduled_at.isoformat()})
    db.session.commit()
    return push


def _abort(message: str) -> ServiceError:
    db.session.rollback()
    return ServiceError(message)


def locked_push(push_id: int, states: tuple[PushStatus, ...], refusal: str) -> ArticlePush:
    """The push, row-locked until commit, if it is in one of `states`; else the refusal (nothing held)."""
    push = db.session.get(ArticlePush, push_id, with_for_update=True)
    if push is None or push.status not in states:
        raise _abort(refusal)
    return push


def cancel_push(by: Staff, push_id: int) -> ArticlePush:
    if by.role not in SCHEDULERS:
        raise ServiceError("只有编辑可以取消排期")
    push = locked_push(push_id, (PushStatus.SCHEDULED,), "只有尚未开始发布的推送可以取消")
    push.status = PushStatus.CANCELLED
    for article in push.articles:
        article.status, article.push_id = ArticleStatus.APPROVED, None
    audit.record("push.cancel", target=push)
    db.session.commit()
    return push


def export_html(push: ArticlePush) -> str:
    """The push as WeChat-ready HTML (manual fallback): header, body and footer of each article."""
    parts = []
    for article in push.articles:
        body = sent_content(article)
        for local, remote in (article.wechat_images or {}).items():
            body = body.replace(f'src="{local}"', f'src="{remote}"')
        parts.append(f"<article><h1>{_esc(display_title(article))}</h1>{body}</article>")
    return "<!doctype html><meta charset='utf-8'>" + "\n<hr>\n".join(parts)


def sent_content(article: Article, body: str | None = None) -> str:
    """The content WeChat is sent: the column's header, the body (`body`: with image URLs already swapped), its footer.
    One place for publishing, the export and the phone preview, so the preview cannot drift from what goes out."""
    column = article.column
    body = article.body_html if body is None else body
    return (column.header_html if column else "") + body + (column.footer_html if column else "")


def body_char_count(article: Article) -> int:
    """Characters of the body text, whitespace not counted (as a reader would count the words of the article)."""
    return len(re.sub(r"\s", "", html_to_text(article.body_html)))


def _patterned_title(article: Article) -> str | None:
    """The title in its column's pattern (每日一案｜{title}), if the column has one."""
    pattern = article.column.title_pattern if article.column else ""
    return pattern.replace("{title}", article.title) if "{title}" in pattern else None


def display_title(article: Article) -> str:
    """As published: in the column's pattern unless that is longer than WeChat takes."""
    title = _patterned_title(article)
    return title if title is not None and len(title) <= TITLE_MAX else article.title


def title_pattern_dropped(article: Article) -> str | None:
    """Why the column's title pattern will not be applied (the result would be too long), or None."""
    title = _patterned_title(article)
    if title is None or len(title) <= TITLE_MAX:
        return None
    pattern = article.column.title_pattern if article.column else ""
    return f"标题套用栏目格式「{pattern}」后超过 {TITLE_MAX} 字，发布时将只用原标题；如需栏目前缀，请缩短标题"


def _esc(text: str) -> str:
    import html

    return html.escape(text)
