"""Auto-replies: keyword rules, menu-click replies, the welcome message and the default reply."""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from models import MatchType, ReplyRule, ReplyType, SiteSetting
from server.extensions import db, get_redis
from server.services import ServiceError

VERSION_KEY = "replies:version"
CACHE_SECONDS = 1.0  # how stale another process's rule edit may look; one Redis GET per second, not per message
WELCOME_KEY, DEFAULT_KEY = "welcome_message", "default_reply"
DEFAULT_WELCOME = "欢迎关注！发送照片和位置即可举报违法线索，点击菜单了解更多。"
MAX_TEXT = 2048  # WeChat's own limit for a text message


@dataclass(frozen=True)
class ReplySpec:
    """What to answer, independent of any message (so it can be cached and rendered per recipient)."""

    reply_type: ReplyType
    text: str | None = None
    media_id: str | None = None
    articles: tuple[dict[str, Any], ...] = ()
    rule_id: int | None = None

    def as_reply(self) -> Any:
        from wechatpy.replies import ImageReply  # handlers receive ready-to-render values

        if self.reply_type is ReplyType.IMAGE:
            return ImageReply(media_id=self.media_id)
        if self.reply_type is ReplyType.NEWS:
            return [dict(a) for a in self.articles]
        return self.text or None


@dataclass(frozen=True)
class _Compiled:
    match_type: MatchType
    pattern: str
    regex: re.Pattern[str] | None
    spec: ReplySpec

    def matches(self, text: str) -> bool:
        if self.match_type is MatchType.EXACT:
            return text == self.pattern
        if self.match_type is MatchType.CONTAINS:
            return self.pattern in text
        return self.regex is not None and self.regex.search(text) is not None


class _RuleCache:
    """Per-process copy of the enabled rules, refreshed when the shared version moves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked = 0.0
        self._version: bytes | None = None
        self._keywords: list[_Compiled] = []
        self._clicks: dict[str, ReplySpec] = {}
        self._settings: dict[str, Any] = {}
        self._loaded = False

    def clear(self) -> None:
        with self._lock:
            self._loaded = False

    def get(self) -> tuple[list[_Compiled], dict[str, ReplySpec], dict[str, Any]]:
        now = time.monotonic()
        if self._loaded and now - self._checked < CACHE_SECONDS:
            return self._keywords, self._clicks, self._settings
        with self._lock:
            version = _read_version()
            if not self._loaded or version != self._version:
                self._load()
                self._version = version
                self._loaded = True
            self._checked = now
            return self._keywords, self._clicks, self._settings

    def _load(self) -> None:
        rules = db.session.scalars(
            sa.select(ReplyRule).where(ReplyRule.enabled).order_by(ReplyRule.priority.desc(), ReplyRule.id)
        ).all()
        keywords, clicks = [], {}
        for rule in rules:
            spec = spec_for(rule)
            if rule.match_type is MatchType.CLICK:
                clicks.setdefault(rule.pattern, spec)
            else:
                regex = re.compile(rule.pattern) if rule.match_type is MatchType.REGEX else None
                keywords.append(_Compiled(rule.match_type, rule.pattern, regex, spec))
        settings = {s.key: s.value for s in db.session.scalars(sa.select(SiteSetting))}
        self._keywords, self._clicks, self._settings = keywords, clicks, settings


_cache = _RuleCache()


def _read_version() -> bytes | None:
    try:
        return get_redis().get(VERSION_KEY)
    except Exception:  # Redis down: reload from the database each time rather than serve stale rules forever
        return None


def rules_changed() -> None:
    """Call after any change to rules or reply settings: every process reloads within CACHE_SECONDS."""
    _cache.clear()
    try:
        get_redis().set(VERSION_KEY, uuid.uuid4().hex)  # not INCR: a flushed counter could repeat an old value
    except Exception:
        pass  # other processes notice when Redis is back (their version read differs)


def spec_for(rule: ReplyRule) -> ReplySpec:
    return ReplySpec(
        reply_type=rule.reply_type,
        text=rule.reply_text,
        media_id=rule.media_id,
        articles=tuple(rule.articles or ()),
        rule_id=rule.id,
    )


def match_keyword(text: str) -> ReplySpec | None:
    """The enabled rule of highest priority matching the text (ties: the oldest rule)."""
    text = (text or "").strip()[:MAX_TEXT]
    if not text:
        return None
    keywords, _, _ = _cache.get()
    for rule in keywords:
        if rule.matches(text):
            return rule.spec
    return None


def click_reply(key: str) -> ReplySpec | None:
    return _cache.get()[1].get(key)


def _text_setting(key: str, fallback: str) -> str:
    value = _cache.get()[2].get(key)
    return value if isinstance(value, str) else fallback


def welcome_message() -> str:
    return _text_setting(WELCOME_KEY, DEFAULT_WELCOME)


def default_reply() -> str:
    """The reply when nothing matched, or a handler failed; empty means no reply ("success")."""
    return _text_setting(DEFAULT_KEY, "")


def validate_rule(
    match_type: str,
    pattern: str,
    reply_type: str,
    reply_text: str | None,
    media_id: str | None,
    articles: list[dict[str, Any]] | None,
) -> None:
    """Refuse a rule WeChat could not send or we could not match, naming the field."""
    try:
        mt, rt = MatchType(match_type), ReplyType(reply_type)
    except ValueError:
        raise ServiceError("匹配方式或回复类型不正确") from None
    if not pattern or len(pattern) > 256:
        raise ServiceError("关键词不能为空，且不超过 256 个字符")
    if mt is MatchType.REGEX:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ServiceError(f"正则表达式有误：{exc}") from None
    if rt is ReplyType.TEXT and not (reply_text or "").strip():
        raise ServiceError("文本回复的内容不能为空")
    if rt is ReplyType.TEXT and len((reply_text or "").encode()) > MAX_TEXT:
        raise ServiceError("文本回复不能超过 2048 字节")
    if rt is ReplyType.IMAGE and not media_id:
        raise ServiceError("图片回复需要素材 media_id")
    if rt is ReplyType.NEWS and not (articles and 1 <= len(articles) <= 8):
        raise ServiceError("图文回复需要 1 到 8 篇文章")


def save_rule(
    *,
    name: str,
    match_type: str,
    pattern: str,
    reply_type: str = "text",
    reply_text: str | None = None,
    media_id: str | None = None,
    articles: list[dict[str, Any]] | None = None,
    priority: int = 0,
    enabled: bool = True,
    rule: ReplyRule | None = None,
) -> ReplyRule:
    validate_rule(match_type, pattern, reply_type, reply_text, media_id, articles)
    rule = rule or ReplyRule()
    rule.name, rule.match_type, rule.pattern = name.strip()[:64] or pattern[:64], MatchType(match_type), pattern
    rule.reply_type, rule.reply_text, rule.media_id = ReplyType(reply_type), reply_text, media_id
    rule.articles, rule.priority, rule.enabled = articles, priority, enabled
    db.session.add(rule)
    db.session.commit()
    rules_changed()
    return rule


def set_text_setting(key: str, value: str) -> None:
    if key not in (WELCOME_KEY, DEFAULT_KEY):
        raise ServiceError("未知的设置项")
    if len(value.encode()) > MAX_TEXT:
        raise ServiceError("回复内容不能超过 2048 字节")
    setting = db.session.get(SiteSetting, key) or SiteSetting(key=key)
    setting.value = value
    db.session.add(setting)
    db.session.commit()
    rules_changed()
