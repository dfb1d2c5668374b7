"""Auto-replies: keyword rules, menu-click and channel-scene replies, the welcome message and the default reply."""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import re2
import sqlalchemy as sa

from models import MatchType, ReplyRule, ReplyType, SiteSetting
from server.extensions import db, get_redis
from server.services import ServiceError, audit

log = logging.getLogger(__name__)

VERSION_KEY = "replies:version"
CACHE_SECONDS = 1.0  # how stale another process's rule edit may look; one Redis GET per second, not per message
WELCOME_KEY, DEFAULT_KEY = "welcome_message", "default_reply"
DEFAULT_WELCOME = "欢迎关注！发送照片和位置即可举报违法线索，点击菜单了解更多。"
MAX_TEXT = 2048  # WeChat's own limit for a text message
MAX_PRIORITY = 9999
TEXT_MATCHES = (MatchType.EXACT, MatchType.CONTAINS, MatchType.REGEX)  # rules that answer a message, not an event
SCENE_ELSEWHERE = "渠道二维码的回复请在「渠道二维码」页面设置"
RULE_FIELDS = (
    "name",
    "match_type",
    "pattern",
    "priority",
    "enabled",
    "reply_type",
    "reply_text",
    "media_id",
    "articles",
)


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


def compile_pattern(pattern: str) -> Any:
    """RE2, not `re`: its matching time is linear in the text, so no pattern (say `^(a+)+$`) can stall the request
    thread a citizen's message runs in. It refuses backreferences and lookarounds, which `re` would backtrack on."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = 1 << 20  # a pattern whose program outgrows this is refused, not built
    return re2.compile(pattern, options=options)


EDGE_PUNCTUATION = ".,!?;:~。，、！？；：～…"  # after NFKC: what phone keyboards add around a word


@dataclass(frozen=True)
class Typed:
    """A message in the forms keywords compare: as sent; full-width made half-width (NFKC: Chinese keyboards type
    ＷＩＦＩ and １２３); that in any case; and that without whitespace (随 手 拍)."""

    text: str
    nfkc: str
    lower: str
    folded: str

    @classmethod
    def of(cls, text: str) -> Typed:
        nfkc = unicodedata.normalize("NFKC", text)
        lower = nfkc.casefold()
        return cls(text, nfkc, lower, "".join(lower.split()))


def fold(text: str) -> str:
    return Typed.of(text).folded


def _exact_key(folded: str) -> str:
    """An exact keyword ignores the punctuation around it: 「随手拍？」 and 「随手拍。」 ask for 随手拍."""
    return folded.strip(EDGE_PUNCTUATION) or folded


_LATIN = re.compile(r"[a-z0-9]")


@dataclass(frozen=True)
class _Compiled:
    match_type: MatchType
    pattern: str
    regex: Any  # an RE2 pattern, or None
    spec: ReplySpec
    key: str = ""  # the folded pattern (exact, contains)
    word: Any = None  # contains, a Latin keyword: itself in any case, as a word (「AI」 in 问AI, not in email)

    def matches(self, typed: Typed) -> bool:
        if self.match_type is MatchType.EXACT:
            return _exact_key(typed.folded) == self.key
        if self.match_type is MatchType.CONTAINS:
            if not self.key:  # a pattern of spaces alone matches nothing
                return False
            if self.word is not None:  # as written anywhere (as before), or in any case as a word
                return (
                    self.pattern in typed.text
                    or self.pattern in typed.nfkc
                    or self.word.search(typed.lower) is not None
                )
            return self.key in typed.folded
        # As written first (a pattern may hold full-width forms itself), then half-width.
        return self.regex is not None and (
            self.regex.search(typed.text) is not None
            or (typed.nfkc != typed.text and self.regex.search(typed.nfkc) is not None)
        )


def _compile(rule: ReplyRule, spec: ReplySpec) -> _Compiled | None:
    """A keyword rule ready to match; None for a regex RE2 cannot run."""
    if rule.match_type is MatchType.EXACT:
        return _Compiled(rule.match_type, rule.pattern, None, spec, _exact_key(fold(rule.pattern)))
    if rule.match_type is MatchType.CONTAINS:
        key = fold(rule.pattern)
        word = None
        if _LATIN.search(key):  # Latin letters or digits: case and spaces matter between words
            lower = Typed.of(rule.pattern.strip()).lower
            word = re.compile(rf"(?<![a-z0-9]){re.escape(lower)}(?![a-z0-9])")
        return _Compiled(rule.match_type, rule.pattern, None, spec, key, word)
    try:
        return _Compiled(rule.match_type, rule.pattern, compile_pattern(rule.pattern), spec)
    except re2.error:  # saved before RE2 checked patterns: skipped, not fatal to every other rule
        log.warning("reply rule %s: pattern not supported by RE2, skipped", rule.id)
        return None


def _covers(earlier: _Compiled, later: _Compiled) -> bool:
    """Every message `later` would answer is answered by `earlier` first. Only the sure cases: an exact keyword
    folding to the same key, or a CJK contains keyword inside the later keyword (a message reaching an exact or
    contains rule always holds that rule's folded keyword). Regexes and Latin word rules are not judged."""
    if later.match_type not in (MatchType.EXACT, MatchType.CONTAINS) or not later.key:
        return False
    if earlier.match_type is MatchType.EXACT:
        return later.match_type is MatchType.EXACT and earlier.key == later.key
    return (
        earlier.match_type is MatchType.CONTAINS and earlier.word is None and bool(earlier.key)
        and earlier.key in later.key
    )  # fmt: skip


def shadowed_rules() -> dict[int, ReplyRule]:
    """Enabled keyword rules that can never answer, each with the rule that answers first in its place."""
    rules = db.session.scalars(
        sa.select(ReplyRule)
        .where(ReplyRule.enabled, ReplyRule.match_type.in_(TEXT_MATCHES))
        .order_by(ReplyRule.priority.desc(), ReplyRule.id)  # match_keyword's order
    ).all()
    compiled = [(rule, _compile(rule, spec_for(rule))) for rule in rules]
    shadowed: dict[int, ReplyRule] = {}
    for i, (rule, mine) in enumerate(compiled):
        if mine is None:
            continue
        for earlier, theirs in compiled[:i]:
            if theirs is not None and _covers(theirs, mine):
                shadowed[rule.id] = earlier
                break
    return shadowed


class _RuleCache:
    """Per-process copy of the enabled rules, refreshed when the shared version moves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked = 0.0
        self._version: bytes | None = None
        self._keywords: list[_Compiled] = []
        self._clicks: dict[str, ReplySpec] = {}
        self._scenes: dict[str, ReplySpec] = {}
        self._settings: dict[str, Any] = {}
        self._loaded = False

    def clear(self) -> None:
        with self._lock:
            self._loaded = False

    def get(self) -> tuple[list[_Compiled], dict[str, ReplySpec], dict[str, Any], dict[str, ReplySpec]]:
        now = time.monotonic()
        if self._loaded and now - self._checked < CACHE_SECONDS:
            return self._keywords, self._clicks, self._settings, self._scenes
        with self._lock:
            version = _read_version()
            if not self._loaded or version != self._version:
                self._load()
                self._version = version
                self._loaded = True
            self._checked = now
            return self._keywords, self._clicks, self._settings, self._scenes

    def _load(self) -> None:
        rules = db.session.scalars(
            sa.select(ReplyRule).where(ReplyRule.enabled).order_by(ReplyRule.priority.desc(), ReplyRule.id)
        ).all()
        keywords, clicks, scenes = [], {}, {}
        for rule in rules:
            spec = spec_for(rule)
            if rule.match_type in TEXT_MATCHES and len(spec.articles) > 1:
                spec = replace(spec, articles=spec.articles[:1])  # saved before the one-article check
            if rule.match_type is MatchType.CLICK:
                clicks.setdefault(rule.pattern, spec)
            elif rule.match_type is MatchType.SCENE:
                scenes.setdefault(rule.pattern, spec)
            elif (compiled := _compile(rule, spec)) is not None:
                keywords.append(compiled)
        settings = {s.key: s.value for s in db.session.scalars(sa.select(SiteSetting))}
        self._keywords, self._clicks, self._settings, self._scenes = keywords, clicks, settings, scenes


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
    keywords = _cache.get()[0]
    typed = Typed.of(text)
    for rule in keywords:
        if rule.matches(typed):
            return rule.spec
    return None


def click_reply(key: str) -> ReplySpec | None:
    return _cache.get()[1].get(key)


def scene_reply(scene: str) -> ReplySpec | None:
    """A channel QR's own reply (SCAN of a known scene); None: no reply configured."""
    return _cache.get()[3].get(scene)


def welcome_for_scene(scene: str) -> ReplySpec | None:
    """The answer to a scan-to-subscribe. A passive reply carries one message: when both are text, the welcome then
    the channel's text; the channel's image or news alone (it is what the poster promised); else the welcome."""
    welcome, spec = welcome_message(), scene_reply(scene)
    if spec is None:
        return ReplySpec(ReplyType.TEXT, text=welcome) if welcome else None
    if spec.reply_type is ReplyType.TEXT and welcome:
        combined = f"{welcome}\n\n{spec.text or ''}"
        if len(combined.encode()) <= MAX_TEXT:
            return replace(spec, text=combined)
    return spec  # together beyond WeChat's 2048 bytes: the channel's text is the more specific


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
    if mt is MatchType.CLICK and pattern.strip() in _builtin_clicks():
        raise ServiceError(f"按钮「{pattern.strip()}」由系统自动回复（如当前的活动列表），不能另设回复规则")
    if mt is MatchType.REGEX:
        try:
            compile_pattern(pattern)
        except re2.error as exc:
            detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
            raise ServiceError(f"正则表达式有误或用了不支持的写法（回溯引用、环视）：{detail}") from None
    if rt is ReplyType.TEXT and not (reply_text or "").strip():
        raise ServiceError("文本回复的内容不能为空")
    if rt is ReplyType.TEXT and len((reply_text or "").encode()) > MAX_TEXT:
        raise ServiceError("文本回复不能超过 2048 字节")
    if rt is ReplyType.IMAGE and not media_id:
        raise ServiceError("图片回复需要素材 media_id")
    if rt is ReplyType.IMAGE and len(media_id or "") > 128:
        raise ServiceError("media_id 不能超过 128 个字符")
    if rt is ReplyType.NEWS and not (articles and 1 <= len(articles) <= 8):
        raise ServiceError("图文回复需要 1 到 8 篇文章")
    if rt is ReplyType.NEWS:
        for i, article in enumerate(articles or (), start=1):
            _check_article(i, article)
    if rt is ReplyType.NEWS and mt in TEXT_MATCHES and len(articles or ()) > 1:
        # WeChat's rule since 2018: a reply to a message carries one article; events (clicks, scans) up to 8.
        raise ServiceError("关键词规则回复粉丝发来的消息，微信只能回复 1 篇图文；多篇请用菜单点击回复")


def _is_web_url(value: str) -> bool:
    return value.startswith(("https://", "http://")) and len(value) <= 1024 and not any(c.isspace() for c in value)


def _check_article(i: int, article: dict[str, Any]) -> None:
    title, url = str(article.get("title") or "").strip(), str(article.get("url") or "").strip()
    image, description = str(article.get("image") or "").strip(), str(article.get("description") or "")
    if not title or len(title) > 64:
        raise ServiceError(f"第 {i} 篇文章需要标题，且不超过 64 个字")
    if len(description) > 256:
        raise ServiceError(f"第 {i} 篇文章的摘要不能超过 256 个字")
    if not _is_web_url(url):
        raise ServiceError(f"第 {i} 篇文章的链接须以 http:// 或 https:// 开头")
    if image and not _is_web_url(image):
        raise ServiceError(f"第 {i} 篇文章的图片地址须以 http:// 或 https:// 开头")


def save_rule(*, rule: ReplyRule | None = None, **fields: Any) -> ReplyRule:
    """Create or update a rule (stage_rule's fields), audited with before/after; every process answers with it within
    CACHE_SECONDS.

    Not a channel's scene rule: that one lives and dies with its channel (server.services.channels)."""
    if fields.get("match_type") == MatchType.SCENE or (rule is not None and rule.match_type is MatchType.SCENE):
        raise ServiceError(SCENE_ELSEWHERE)
    rule = stage_rule(rule=rule, **fields)
    db.session.commit()
    rules_changed()
    return rule


def stage_rule(
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
    """save_rule's checks and change with its audit entry, left for the caller to commit (then `rules_changed`)."""
    validate_rule(match_type, pattern, reply_type, reply_text, media_id, articles)
    if not 0 <= priority <= MAX_PRIORITY:
        raise ServiceError(f"优先级须为 0 到 {MAX_PRIORITY} 之间的整数")
    creating = rule is None
    same = creating and match_type != MatchType.SCENE  # a scene has one rule, its channel's: no copy to look for
    if same and _find_same_rule(match_type, pattern, reply_type, reply_text, media_id, articles):
        raise ServiceError("已有一条完全相同的规则（可能是重复提交），请在列表中查看")
    before = None if creating else audit.snapshot(rule, RULE_FIELDS)
    rule = rule or ReplyRule()
    rule.name, rule.match_type, rule.pattern = name.strip()[:64] or pattern[:64], MatchType(match_type), pattern
    rule.reply_type, rule.reply_text, rule.media_id = ReplyType(reply_type), reply_text, media_id
    rule.articles, rule.priority, rule.enabled = articles, priority, enabled
    db.session.add(rule)
    db.session.flush()  # the id, for the audit entry
    audit.record(
        "rule.create" if creating else "rule.update",
        target=rule,
        before=before,
        after=audit.snapshot(rule, RULE_FIELDS),
    )
    return rule


def _find_same_rule(
    match_type: str,
    pattern: str,
    reply_type: str,
    reply_text: str | None,
    media_id: str | None,
    articles: list[dict[str, Any]] | None,
) -> ReplyRule | None:
    """A rule identical to the one being created: a double submit, or a copy that could never answer."""
    candidates = db.session.scalars(
        sa.select(ReplyRule).filter_by(
            match_type=MatchType(match_type), pattern=pattern, reply_type=ReplyType(reply_type)
        )
    )
    for other in candidates:
        if (other.reply_text, other.media_id, other.articles or None) == (reply_text, media_id, articles or None):
            return other
    return None


def list_rules() -> list[ReplyRule]:
    """Menu clicks first, then keywords in the order they are tried (channels' scene rules are on their page)."""
    return list(
        db.session.scalars(
            sa.select(ReplyRule)
            .where(ReplyRule.match_type != MatchType.SCENE)
            .order_by(
                (ReplyRule.match_type == MatchType.CLICK).desc(),
                ReplyRule.enabled.desc(),
                ReplyRule.priority.desc(),
                ReplyRule.id,
            )
        )
    )


def set_rule_enabled(rule: ReplyRule, enabled: bool) -> ReplyRule:
    """Set (not flip) the flag, so a repeated click changes nothing."""
    if rule.enabled == enabled:
        return rule
    audit.record(
        "rule.enable" if enabled else "rule.disable",
        target=rule,
        before={"enabled": rule.enabled},
        after={"enabled": enabled},
    )
    rule.enabled = enabled
    db.session.commit()
    rules_changed()
    return rule


def delete_rule(rule: ReplyRule) -> None:
    stage_delete_rule(rule)
    db.session.commit()
    rules_changed()


def stage_delete_rule(rule: ReplyRule) -> None:
    audit.record("rule.delete", target=rule, before=audit.snapshot(rule, RULE_FIELDS))
    db.session.delete(rule)


@dataclass(frozen=True)
class Explanation:
    """What the gateway would answer to a message: the rule that matched, else the default reply."""

    spec: ReplySpec | None
    rule: ReplyRule | None
    default_reply: str
    builtin: bool = False  # a click the system answers itself (no rule is ever sent for it)


def explain_text(text: str) -> Explanation:
    """The answer to a text message, found by the gateway's own matcher (so the console cannot drift from it)."""
    spec = match_keyword(text)
    return _explain(spec)


def explain_click(key: str) -> Explanation:
    if key.strip() in _builtin_clicks():  # answered by its handler before any rule, as the gateway does
        return Explanation(spec=None, rule=None, default_reply="", builtin=True)
    return _explain(click_reply(key.strip()))


def _builtin_clicks() -> set[str]:
    from server.services.menus import builtin_clicks  # menus builds on this module

    return builtin_clicks()


def _explain(spec: ReplySpec | None) -> Explanation:
    rule = db.session.get(ReplyRule, spec.rule_id) if spec and spec.rule_id else None
    return Explanation(spec=spec, rule=rule, default_reply=default_reply())


def text_settings() -> dict[str, str]:
    """The welcome message and default reply as stored (for editing), with the built-in welcome if none is."""
    stored = {
        s.key: s.value
        for s in db.session.scalars(sa.select(SiteSetting).where(SiteSetting.key.in_((WELCOME_KEY, DEFAULT_KEY))))
    }
    welcome, default = stored.get(WELCOME_KEY), stored.get(DEFAULT_KEY)
    return {
        WELCOME_KEY: welcome if isinstance(welcome, str) else DEFAULT_WELCOME,
        DEFAULT_KEY: default if isinstance(default, str) else "",
    }


def set_text_setting(key: str, value: str) -> None:
    set_text_settings({key: value})


def set_text_settings(values: Mapping[str, str]) -> None:
    """Save the welcome message and/or default reply together, audited: every value is checked before any is kept."""
    for key, value in values.items():
        if key not in (WELCOME_KEY, DEFAULT_KEY):
            raise ServiceError("未知的设置项")
        if len(value.encode()) > MAX_TEXT:
            label = "欢迎语" if key == WELCOME_KEY else "默认回复"
            raise ServiceError(f"{label}不能超过 2048 字节（约 680 个汉字）")
    changed = False
    for key, value in values.items():
        setting = db.session.get(SiteSetting, key) or SiteSetting(key=key)
        if setting.value == value:
            continue  # a repeated save: nothing to record
        audit.record(
            "reply_setting.update",
            target_type="site_setting",
            target_id=key,
            before={"value": setting.value},
            after={"value": value},
        )
        setting.value = value
        db.session.add(setting)
        changed = True
    if changed:
        db.session.commit()
        rules_changed()
