"""The custom menu: validation (WeChat's limits), drafts, publishing, history, restore, pull, the officers' menu.

A draft is the newest unpublished MenuVersion of a kind (at most one per kind); publishing stamps that row, so every
published version stays as it went out and can be restored. Restoring publishes a copy (source "restored").
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import unicodedata
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from wechatpy.exceptions import WeChatClientException

from models import MatchType, MenuKind, MenuVersion, ReplyRule, ReplyType, utcnow
from server.extensions import db, get_redis
from server.services import ServiceError, audit, replies
from server.wechat.client import describe, get_client

log = logging.getLogger(__name__)

MAX_TOP, MAX_SUB = 3, 5
MAX_TOP_NAME, MAX_SUB_NAME = 16, 60  # bytes of UTF-8, as WeChat counts
MAX_KEY, MAX_URL = 128, 1024
MAX_DOMAINS = 3  # WeChat's 65316: links in one menu may point to at most three domains

KEY_TYPES = (
    "click",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
)
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    **{t: ("key",) for t in KEY_TYPES},
    "view": ("url",),
    "miniprogram": ("url", "appid", "pagepath"),
    "media_id": ("media_id",),
    "view_limited": ("media_id",),
    "article_id": ("article_id",),
    "article_view_limited": ("article_id",),
}
TYPE_LABELS = {
    "click": "点击回复",
    "view": "打开网页",
    "miniprogram": "打开小程序",
    "scancode_push": "扫码",
    "scancode_waitmsg": "扫码（等待回复）",
    "pic_sysphoto": "拍照发图",
    "pic_photo_or_album": "拍照或从相册发图",
    "pic_weixin": "从微信相册发图",
    "location_select": "发送位置",
    "media_id": "发送素材",
    "view_limited": "打开图文素材",
    "article_id": "发送已发布文章",
    "article_view_limited": "打开已发布文章",
}
FIELD_LABELS = {
    "key": "按钮标识 key",
    "url": "网页链接 url",
    "appid": "小程序 appid",
    "pagepath": "小程序页面路径 pagepath",
    "media_id": "素材 media_id",
    "article_id": "已发布文章 article_id",
}
SOURCE_LABELS = {"console": "后台编辑", "pulled": "从微信拉取", "restored": "恢复历史版本"}

OFFICER_TAG = "一线队员"
OFFICER_UPLOAD = {"type": "pic_photo_or_album", "name": "现场上传", "key": "OFFICER_UPLOAD"}
STARTER_MENU = [{"type": "click", "name": "随手拍", "key": "TIP_HOWTO"}]

PUBLISH_FAILED, PULL_FAILED = "菜单发布失败：", "拉取菜单失败："  # what an editor reads before WeChat's reason


class MenuError(ServiceError):
    """A menu WeChat would refuse, or a WeChat call that failed; the message names the button or the code."""


# ---------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------


def _bytes(value: str) -> int:
    return len(value.encode("utf-8"))


def _label(top: int, name: Any, sub: int | None = None, sub_name: Any = None) -> str:
    def one(text: str, value: Any) -> str:
        return f"{text}「{value.strip()}」" if isinstance(value, str) and value.strip() else text

    label = one(f"第 {top} 个一级菜单", name)
    return label if sub is None else label + "的" + one(f"第 {sub} 个子菜单", sub_name)


def validate_menu(buttons: Any) -> None:
    """Refuse anything WeChat's menu/create would refuse, naming the button and the field (static/js mirrors it)."""
    if not isinstance(buttons, list) or not buttons:
        raise MenuError("菜单至少需要 1 个一级菜单")
    if len(buttons) > MAX_TOP:
        raise MenuError(f"一级菜单最多 {MAX_TOP} 个（当前 {len(buttons)} 个）")
    keys: dict[str, str] = {}
    domains: set[str] = set()
    for i, button in enumerate(buttons, 1):
        if not isinstance(button, dict):
            raise MenuError(f"第 {i} 个一级菜单：格式不正确")
        name = button.get("name")
        label = _label(i, name)
        _check_name(label, name, MAX_TOP_NAME)
        subs = button.get("sub_button")
        if not subs:
            _check_leaf(label, button, keys, domains)
            continue
        if not isinstance(subs, list):
            raise MenuError(f"{label}：子菜单格式不正确")
        if len(subs) > MAX_SUB:
            raise MenuError(f"{label}：子菜单最多 {MAX_SUB} 个（当前 {len(subs)} 个）")
        if extra := [f for f in ("type", *FIELD_LABELS) if button.get(f)]:
            raise MenuError(f"{label}：含子菜单的一级菜单不能再设置 {'、'.join(extra)}")
        for j, sub in enumerate(subs, 1):
            if not isinstance(sub, dict):
                raise MenuError(f"{_label(i, name, j)}：格式不正确")
            sub_label = _label(i, name, j, sub.get("name"))
            _check_name(sub_label, sub.get("name"), MAX_SUB_NAME)
            if sub.get("sub_button"):
                raise MenuError(f"{sub_label}：子菜单下不能再有子菜单")
            _check_leaf(sub_label, sub, keys, domains)
    if len(domains) > MAX_DOMAINS:
        raise MenuError(
            f"菜单中的网页链接最多指向 {MAX_DOMAINS} 个不同域名（当前 {len(domains)} 个：{'、'.join(sorted(domains))}）"
        )


def _has_control(text: str) -> bool:
    """A tab or vertical tab pasted from a document: invisible in the editor, refused or garbled by WeChat."""
    return any(unicodedata.category(c) == "Cc" for c in text)


def _check_name(label: str, name: Any, limit: int) -> None:
    if not isinstance(name, str) or not name.strip():
        raise MenuError(f"{label}：名称不能为空")
    if _has_control(name):
        raise MenuError(f"{label}：名称含有看不见的控制字符（如从文档粘贴带来的制表符），请重新输入")
    if (size := _bytes(name)) > limit:
        raise MenuError(f"{label}：名称超过 {limit} 字节（当前 {size} 字节，一个汉字占 3 字节）")


def _check_leaf(label: str, button: dict[str, Any], keys: dict[str, str], domains: set[str]) -> None:
    kind = button.get("type")
    if not kind:
        raise MenuError(f"{label}：请选择菜单类型，或添加子菜单")
    if not isinstance(kind, str) or kind not in TYPE_FIELDS:
        raise MenuError(f"{label}：不支持的菜单类型「{kind}」")
    for field in TYPE_FIELDS[kind]:
        value = button.get(field)
        if not isinstance(value, str) or not value.strip():
            raise MenuError(f"{label}：缺少{FIELD_LABELS[field]}（「{TYPE_LABELS[kind]}」类型必填）")
    if "key" in TYPE_FIELDS[kind]:
        key = button["key"]
        if (size := _bytes(key)) > MAX_KEY:
            raise MenuError(f"{label}：按钮标识 key 超过 {MAX_KEY} 字节（当前 {size} 字节）")
        if _has_control(key) or any(c.isspace() for c in key):
            raise MenuError(f"{label}：按钮标识 key 不能含有空格或控制字符")
        if key in keys:  # one key, one CLICK reply
            raise MenuError(f"{label}：按钮标识「{key}」与{keys[key]}重复")
        keys[key] = label
    if "url" in TYPE_FIELDS[kind]:
        url = button["url"]
        if (size := _bytes(url)) > MAX_URL:
            raise MenuError(f"{label}：网页链接 url 超过 {MAX_URL} 字节（当前 {size} 字节）")
        if any(c.isspace() or unicodedata.category(c) == "Cc" for c in url):
            raise MenuError(f"{label}：网页链接 url 不能含有空格或换行（中间的空格请写成 %20）")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MenuError(f"{label}：网页链接 url 须以 http:// 或 https:// 开头，并包含域名")
        domains.add(parts.hostname)


def normalize(buttons: Any) -> Any:
    """Keep what WeChat reads: trimmed strings, only the fields of each button's type, no empty sub-menus.

    Anything malformed is passed through unchanged for validate_menu to name."""
    if not isinstance(buttons, list):
        return buttons

    def clean(button: Any, top: bool) -> Any:
        if not isinstance(button, dict):
            return button
        out: dict[str, Any] = {"name": button["name"].strip() if isinstance(button.get("name"), str) else None}
        subs = button.get("sub_button")
        if top and subs:
            out["sub_button"] = [clean(s, False) for s in subs] if isinstance(subs, list) else subs
            return out
        if subs:
            out["sub_button"] = subs  # a third level: left for the validator to refuse
        kind = button.get("type")
        out["type"] = kind
        for field in TYPE_FIELDS.get(kind, ()) if isinstance(kind, str) else ():
            value = button.get(field)
            out[field] = value.strip() if isinstance(value, str) else value
        return out

    return [clean(b, True) for b in buttons]


def leaves(buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every button that does something (sub-buttons, and top-level buttons without a sub-menu)."""
    out: list[dict[str, Any]] = []
    for button in buttons if isinstance(buttons, list) else []:
        if not isinstance(button, dict):
            continue
        subs = button.get("sub_button")
        if isinstance(subs, list) and subs:
            out.extend(s for s in subs if isinstance(s, dict))
        else:
            out.append(button)
    return out


def summary(buttons: list[dict[str, Any]]) -> str:
    """One line for lists: 办事（3） · 互动（2） · 随手拍."""
    return " · ".join(f"{b['name']}（{len(b['sub_button'])}）" if b.get("sub_button") else b["name"] for b in buttons)


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------


def draft(kind: MenuKind) -> MenuVersion | None:
    return db.session.scalar(
        sa.select(MenuVersion)
        .where(MenuVersion.kind == kind, MenuVersion.published_at.is_(None))
        .order_by(MenuVersion.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)  # under the menu lock: as the last change left it
    )


def live(kind: MenuKind) -> MenuVersion | None:
    """The version published last (what WeChat shows, unless changed elsewhere)."""
    return db.session.scalar(
        sa.select(MenuVersion)
        .where(MenuVersion.kind == kind, MenuVersion.published_at.is_not(None))
        .order_by(MenuVersion.published_at.desc(), MenuVersion.id.desc())
        .limit(1)
    )


def history(kind: MenuKind | None = None, limit: int = 100) -> list[MenuVersion]:
    query = sa.select(MenuVersion).where(MenuVersion.published_at.is_not(None))
    if kind is not None:
        query = query.where(MenuVersion.kind == kind)
    return list(db.session.scalars(query.order_by(MenuVersion.published_at.desc(), MenuVersion.id.desc()).limit(limit)))


def with_officer_upload(buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The default menu plus 现场上传: a fourth column if there is room, else into a sub-menu."""
    buttons = copy.deepcopy(buttons)
    if any(b.get("key") == OFFICER_UPLOAD["key"] for b in leaves(buttons)):
        return buttons
    if len(buttons) < MAX_TOP:
        return [*buttons, dict(OFFICER_UPLOAD)]
    for button in reversed(buttons):
        if button.get("sub_button") and len(button["sub_button"]) < MAX_SUB:
            button["sub_button"].append(dict(OFFICER_UPLOAD))
            return buttons
    last = buttons[-1]
    if not last.get("sub_button"):  # a plain button becomes a group holding itself and the upload
        buttons[-1] = {"name": last["name"], "sub_button": [last, dict(OFFICER_UPLOAD)]}
    return buttons


def editor_buttons(kind: MenuKind) -> tuple[list[dict[str, Any]], MenuVersion | None]:
    """What the editor opens with: the draft, else the live version, else a starting point."""
    if (version := draft(kind) or live(kind)) is not None:
        return copy.deepcopy(version.buttons), version
    if kind is MenuKind.CONDITIONAL:
        base, _ = editor_buttons(MenuKind.DEFAULT)
        return with_officer_upload(base), None
    return copy.deepcopy(STARTER_MENU), None


def draft_token(version: MenuVersion | None) -> str:
    """Changes whenever the draft does: a save based on an older draft is refused (two editors, one menu)."""
    if version is None or version.published_at is not None:
        return "none"
    raw = json.dumps([version.id, version.buttons, version.matchrule], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _click_rules(keys: list[str]) -> dict[str, ReplyRule]:
    if not keys:
        return {}
    rules = db.session.scalars(
        sa.select(ReplyRule)
        .where(ReplyRule.match_type == MatchType.CLICK, ReplyRule.pattern.in_(keys))
        .order_by(ReplyRule.enabled.desc(), ReplyRule.priority.desc(), ReplyRule.id)
    )
    found: dict[str, ReplyRule] = {}
    for rule in rules:
        found.setdefault(rule.pattern, rule)  # the one a CLICK is answered with
    return found


def click_replies(buttons: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each click key: its reply text, or a note that it is an image/news reply (edited under 自动回复)."""
    keys = [b["key"] for b in leaves(buttons) if b.get("type") == "click" and isinstance(b.get("key"), str)]
    out: dict[str, dict[str, Any]] = {}
    for key, rule in _click_rules(keys).items():
        out[key] = {
            "text": rule.reply_text or "",
            "editable": rule.reply_type is ReplyType.TEXT,
            "enabled": rule.enabled,
        }
    return out


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


def _snap(version: MenuVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {
        "id": version.id,
        "kind": version.kind.value,
        "buttons": version.buttons,
        "matchrule": version.matchrule,
        "source": version.source,
        "published_at": version.published_at.isoformat() if version.published_at else None,
        "wechat_menuid": version.wechat_menuid,
    }


def _actor_id() -> int | None:
    actor = audit.current_actor()
    return actor.staff_id if actor else None


def _kind(kind: MenuKind | str) -> MenuKind:
    try:
        return MenuKind(kind)
    except ValueError:
        raise MenuError("未知的菜单类型") from None


def save_draft(
    kind: MenuKind | str,
    buttons: Any,
    reply_texts: dict[str, str] | None = None,
    *,
    base: str | None = None,
    source: str = "console",
) -> MenuVersion:
    """Validate and store the draft of a kind; click buttons' reply texts become click ReplyRules (same commit)."""
    kind = _kind(kind)
    buttons = normalize(buttons)
    validate_menu(buttons)
    reply_texts = _check_reply_texts(buttons, reply_texts or {})
    with _menu_lock():
        return _save_draft(kind, buttons, reply_texts, base=base, source=source)


def _save_draft(
    kind: MenuKind, buttons: Any, reply_texts: dict[str, str], *, base: str | None, source: str
) -> MenuVersion:
    current = draft(kind)
    shown = current or live(kind)
    if shown is not None and buttons == shown.buttons and source == "console":
        _save_click_replies(buttons, reply_texts)  # nothing new in the menu itself (e.g. a double submit)
        return shown
    if base is not None and base != draft_token(current):
        raise MenuError("菜单草稿已被其他人修改，请刷新页面后再编辑")
    before = _snap(current)
    version = current or MenuVersion(kind=kind, name=OFFICER_TAG if kind is MenuKind.CONDITIONAL else "")
    version.buttons, version.source = buttons, source
    version.created_by_id = _actor_id()
    db.session.add(version)
    db.session.flush()
    audit.record("menu.draft_save", target=version, before=before, after=_snap(version))
    _save_click_replies(buttons, reply_texts)  # commits the draft and its audit entry with the rules
    return version


def _check_reply_texts(buttons: list[dict[str, Any]], texts: dict[str, str]) -> dict[str, str]:
    names = {b["key"]: b["name"] for b in leaves(buttons) if b.get("type") == "click"}
    builtin = builtin_clicks()
    out: dict[str, str] = {}
    for key, text in texts.items():
        text = (text or "").strip() if isinstance(text, str) else ""
        if key not in names or not text or key in builtin:  # the system answers a built-in key, not a rule
            continue  # an emptied reply is left alone: rules are deleted under 自动回复, not by accident here
        if _bytes(text) > replies.MAX_TEXT:
            raise MenuError(f"菜单「{names[key]}」的回复内容超过 {replies.MAX_TEXT} 字节（当前 {_bytes(text)} 字节）")
        out[key] = text
    return out


def _save_click_replies(buttons: list[dict[str, Any]], texts: dict[str, str]) -> None:
    """Click replies go through replies.save_rule (it validates and audits); its first commit carries the draft."""
    names = {b["key"]: b["name"] for b in leaves(buttons) if b.get("type") == "click"}
    existing = _click_rules(list(texts))
    changes = [
        (key, text, existing.get(key))
        for key, text in texts.items()
        if (rule := existing.get(key)) is None
        or (rule.reply_type is ReplyType.TEXT and (rule.reply_text != text or not rule.enabled))
    ]  # image/news click replies are edited under 自动回复; unchanged text needs no write
    if not changes:
        db.session.commit()
        return
    for key, text, rule in changes:
        replies.save_rule(
            name=rule.name if rule else f"菜单：{names[key]}",
            match_type=MatchType.CLICK.value,
            pattern=key,
            reply_type=ReplyType.TEXT.value,
            reply_text=text,
            priority=rule.priority if rule else 0,
            enabled=True,
            rule=rule,
        )


def discard_draft(kind: MenuKind | str) -> None:
    kind = _kind(kind)
    with _menu_lock():
        if (current := draft(kind)) is None:
            return
        audit.record("menu.draft_discard", target=current, before=_snap(current))
        db.session.delete(current)
        db.session.commit()


# ---------------------------------------------------------------------------------------------------------------
# WeChat
# ---------------------------------------------------------------------------------------------------------------


@contextmanager
def _wechat_call(context: str):
    try:
        yield
    except (WeChatClientException, requests.RequestException) as exc:
        log.warning("menu call to wechat failed: %r", exc)
        raise MenuError(describe(exc, context)) from None


@contextmanager
def _menu_lock():
    """One change to the menus at a time (save, publish, restore): the draft each reads is the one the last left,
    so the base token holds, a kind never gets two drafts, and the order in the database is the order WeChat saw."""
    lock = get_redis().lock("menu:publish", timeout=60, blocking_timeout=20)
    try:
        acquired = lock.acquire()
    except Exception:  # Redis down: publishing still works, unordered
        acquired, lock = False, None
    if lock is not None and not acquired:
        raise MenuError("另一位编辑正在修改或发布菜单，请稍后再试")
    try:
        yield
    finally:
        if lock is not None and acquired:
            try:
                lock.release()
            except Exception:
                pass


def officer_tag_id(context: str = PUBLISH_FAILED) -> int:
    """The WeChat tag id of 一线队员, creating the tag if it does not exist yet."""
    client = get_client()
    with _wechat_call(context):
        for tag in client.tag.get():
            if tag.get("name") == OFFICER_TAG:
                return int(tag["id"])
        return int(client.tag.create(OFFICER_TAG)["id"])


def _push(version: MenuVersion, previous: MenuVersion | None) -> None:
    """Send a version to WeChat; a conditional one replaces the officers' previous conditional menus (added first,
    then the others for their tag deleted, so officers never fall back to the default menu in between)."""
    client = get_client()
    if version.kind is MenuKind.DEFAULT:
        with _wechat_call(PUBLISH_FAILED):
            client.post("menu/create", data={"button": version.buttons})
        return
    version.matchrule = {"tag_id": officer_tag_id()}  # looked up each time: the tag may have been re-created
    with _wechat_call(PUBLISH_FAILED):
        result = client.post("menu/addconditional", data={"button": version.buttons, "matchrule": version.matchrule})
    version.wechat_menuid = str(result["menuid"])
    for old in _officer_menus_but(version, previous):
        try:
            client.post("menu/delconditional", data={"menuid": old})
        except WeChatClientException as exc:
            if exc.errcode != 65301:  # already gone: nothing to delete
                log.warning("could not delete conditional menu %s: %r", old, exc)
        except requests.RequestException as exc:
            log.warning("could not delete conditional menu %s: %r", old, exc)


def _officer_menus_but(version: MenuVersion, previous: MenuVersion | None) -> set[str]:
    """The officers' conditional menus on WeChat other than `version`'s: the previous one, and any an earlier
    publish made without learning its menuid (its answer lost). Only the previous one if WeChat cannot list them."""
    tag = str(version.matchrule["tag_id"])
    try:
        listed = get_client().get("menu/get").get("conditionalmenu") or []
        found = {str(m["menuid"]) for m in listed if str((m.get("matchrule") or {}).get("tag_id")) == tag}
    except (WeChatClientException, requests.RequestException, KeyError, TypeError) as exc:
        log.warning("could not list conditional menus: %r", exc)
        found = {previous.wechat_menuid} if previous and previous.wechat_menuid else set()
    return found - {version.wechat_menuid}


def _publish(version: MenuVersion, action: str) -> MenuVersion:
    """Under the menu lock (the caller's)."""
    previous = live(version.kind)
    try:
        _push(version, previous)
    except MenuError:
        db.session.rollback()  # nothing is marked published
        raise
    version.published_at = utcnow()
    version.created_by_id = _actor_id()
    db.session.add(version)
    db.session.flush()
    audit.record(action, target=version, before=_snap(previous), after=_snap(version))
    db.session.commit()
    return version


def builtin_clicks() -> set[str]:
    """Click keys a handler of their own answers (EVENTS_LIST: the open events): a reply rule for one is never sent."""
    from handlers import router

    return router.keys("event", "click")


def silent_clicks(buttons: list[dict[str, Any]]) -> list[str]:
    """The names of click buttons with nothing behind them (no enabled reply rule, no handler of their own): a
    follower who taps one gets only the general default reply. WeChat takes such a menu; the editor is warned."""
    clicks = [b for b in leaves(buttons) if b.get("type") == "click"]
    answered = builtin_clicks() | {k for k, rule in _click_rules([b["key"] for b in clicks]).items() if rule.enabled}
    return [b["name"] for b in clicks if b["key"] not in answered]


def publish_draft(kind: MenuKind | str) -> MenuVersion:
    """Push the draft through menu/create (or addconditional) and record it as published."""
    kind = _kind(kind)
    with _menu_lock():
        version = draft(kind)
        if version is None:
            raise MenuError("菜单与线上版本相同，无需重复发布" if live(kind) else "还没有菜单草稿，请先编辑并保存")
        validate_menu(version.buttons)  # a draft stored before a rule changed must still pass
        return _publish(version, "menu.publish")


def restore_version(version_id: int) -> MenuVersion:
    """Publish an old version again as a new one (source "restored"); a pending draft of that kind is dropped."""
    old = db.session.get(MenuVersion, version_id)
    if old is None or old.published_at is None:
        raise MenuError("该版本不存在或从未发布")
    validate_menu(old.buttons)
    with _menu_lock():
        version = MenuVersion(
            kind=old.kind, name=old.name, buttons=copy.deepcopy(old.buttons), matchrule=old.matchrule, source="restored"
        )
        pending = draft(old.kind)
        db.session.add(version)
        db.session.flush()
        result = _publish(version, "menu.restore")
        if pending is not None:  # the editor now shows what is live; the draft's content stays in the audit entry
            audit.record("menu.draft_discard", target=pending, before=_snap(pending), note=f"恢复版本 #{old.id}")
            db.session.delete(pending)
            db.session.commit()
        return result


def _from_wechat(buttons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """menu/get's shape (every leaf with sub_button: []) back to ours."""
    return normalize(
        [{k: v for k, v in b.items() if k != "sub_button"} if not b.get("sub_button") else b for b in (buttons or [])]
    )


def pull_from_wechat(kind: MenuKind | str) -> MenuVersion:
    """Import the live menu of a kind from WeChat into the draft (source "pulled")."""
    kind = _kind(kind)
    client = get_client()
    with _wechat_call(PULL_FAILED):
        try:
            answer = client.get("menu/get")
        except WeChatClientException as exc:
            if exc.errcode == 46003:  # not a failure: there is just nothing to pull
                raise MenuError("微信上当前没有自定义菜单（46003），没有可拉取的内容") from None
            raise
    if kind is MenuKind.DEFAULT:
        buttons = _from_wechat((answer.get("menu") or {}).get("button") or [])
    else:
        tag_id = officer_tag_id(PULL_FAILED)
        found = [
            m
            for m in answer.get("conditionalmenu") or []
            if str((m.get("matchrule") or {}).get("tag_id")) == str(tag_id)
        ]
        if not found:
            raise MenuError(f"微信上没有面向「{OFFICER_TAG}」标签的个性化菜单")
        buttons = _from_wechat(found[-1].get("button") or [])
    if not buttons:
        raise MenuError("公众号当前没有设置菜单，无可拉取的内容")
    return save_draft(kind, buttons, source="pulled")
