"""A local emulator of WeChat's Official Account HTTP API: WeChat's paths, JSON shapes and error codes, as strict.

Point a client at ``http://HOST:PORT/`` and the paths are WeChat's own (``cgi-bin/token``, ``datacube/getusersummary``,
``sns/oauth2/access_token``, ``connect/oauth2/authorize``...). Self-contained on purpose (Flask, the standard library,
Pillow, qrcode): it must not import the project it checks.

Test hooks, no token needed, JSON in and out:
  GET  /_emulator/state, /_emulator/calls, /_emulator/media/<media_id> (a PicUrl), /_emulator/draft/<id>?idx=1
  POST /_emulator/reset, users {users: [{openid, subscribe, ...}]} or {openids: [...]},
       expire-tokens {mode: invalidate|expire}, fail {path, errcode, errmsg, times}, today {date},
       advance {seconds}, media (multipart media_id + media, or {media_id, content_base64}), oauth {auto_openid},
       templates {templates: [{template_id, ...}]}, publish-outcome {publish_status, fail_idx, times},
       finish-publish {publish_id, publish_status}, clear-calls,
       qr-limit {permanent}: how many permanent QR codes the account may make (WeChat: 100000; 45029 beyond),
       interaction {openid, at}: the user messaged the account (at: epoch seconds, default now), which opens the
       48 hours in which customer-service messages reach them (what WeChat learns from every message it delivers),
       user-page-size {size}: openids per user/get page (WeChat: 10000), user-page-gap {missing}: the next page
       leaves out that many openids,
       delay {path, seconds, times}: the next `times` calls to `path` do their work, then answer `seconds` late
       (a slow WeChat; a client that dies waiting never learns the answer). The call record notes the delay and
       the client's port, so a test can tell which process is waiting.
       garble {path, status, body, content_type, work, times}: the next `times` calls to `path` answer HTTP
       `status` (200) with `body` (default: a JSON object cut off mid-way) instead of WeChat's answer. With `work`
       (default true) the call did its work first: the answer was lost on its way back (a proxy, a reset); without,
       it never reached WeChat (a gateway's error page).
Python callers can use ``app.extensions["wechat_emulator"]`` (an :class:`EmulatorState`) directly.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import io
import json
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import qrcode
from flask import Flask, Response, g, request
from PIL import Image
from werkzeug.serving import BaseWSGIServer, make_server

CHINA_TZ = timezone(timedelta(hours=8))  # WeChat's days (quotas, datacube "yesterday") are Beijing days
TOKEN_OVERLAP = 300  # a superseded cgi-bin/token token keeps working this long
OAUTH_CODE_TTL = 300
OAUTH_TOKEN_TTL = 7200
OAUTH_REFRESH_TTL = 30 * 86400
TEMP_MEDIA_TTL = 3 * 86400
QR_DEFAULT_EXPIRE = 60
QR_MAX_EXPIRE = 2592000
QR_PERMANENT_LIMIT = 100000  # permanent codes per account, scene_id and scene_str together; 45029 beyond
CUSTOM_WINDOW = 48 * 3600  # customer-service messages reach a user this long after their last message; 45015 after
CUSTOM_PER_INTERACTION = 5  # ...and at most this many of them until the user writes again; 45047 beyond
CUSTOM_TEXT_BYTES = 2048  # a text customer-service message's content; 45002 beyond
# Besides any message, the events WeChat counts as the user writing to the account (opening those 48 hours).
INTERACTION_EVENTS = frozenset({"subscribe", "scan", "click", "scancode_push", "scancode_waitmsg"})
CUSTOM_MSGTYPES = frozenset(
    "text image voice video music news mpnews mpnewsarticle msgmenu wxcard miniprogrampage".split()
)
DATACUBE_EPOCH = date(2014, 12, 1)  # WeChat keeps no statistics before this day
ARTICLE_DATA_EPOCH = date(2025, 11, 1)  # ...and the newer article endpoints nothing before this one
STABLE_FORCE_KEY = "cgi-bin/stable_token#force_refresh"
DEFAULT_DAILY_LIMITS = {"cgi-bin/token": 2000, "cgi-bin/freepublish/get": 100, STABLE_FORCE_KEY: 20}

ERRMSG: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40005: "invalid file type",
    40006: "invalid meida size",
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "invalid image size",
    40010: "invalid voice size",
    40011: "invalid video size",
    40012: "invalid thumb size",
    40013: "invalid appid",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40022: "invalid sub button level",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40029: "invalid code",
    40030: "invalid refresh_token",
    40032: "invalid openid list size",
    40037: "invalid template_id",
    40053: "invalid action info",
    40054: "invalid sub button url domain",
    40055: "invalid button url domain",
    40092: "invalid remark name",
    40097: "invalid args",
    40125: "invalid appsecret",
    40163: "code been used",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41005: "media data missing",
    41006: "media_id missing",
    41008: "missing code",
    41009: "missing openid",
    42001: "access_token expired",
    43001: "require GET method",
    43002: "require POST method",
    43004: "require subscribe",
    44002: "empty post data",
    44003: "empty news data",
    44004: "empty content",
    45002: "content size out of limit",
    45003: "title size out of limit",
    45004: "description size out of limit",
    45005: "url size out of limit",
    45008: "article size out of limit",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45029: "qrcode count out of limit",
    45047: "out of response count limit",
    45056: "too many tags",
    45058: "can't modify sys tag",
    45059: "too many tag now, no need to add new",
    45110: "author size out of limit",
    45157: "invalid tag name",
    45158: "tag name too long",
    45159: "invalid tag id",
    46003: "menu no exist",
    47001: "data format error",
    47003: "argument invalid",
    48001: "api unauthorized",
    53600: "Article ID 无效",
    61500: "date format error",
    61501: "date range error",
    65301: "no such conditional menu",
    65303: "no default menu, can not create conditional menu",
    65304: "match rule empty",
    65316: "too many url domains in menu",
}


class WxError(Exception):
    """An answer WeChat gives as ``{errcode, errmsg}`` (with HTTP 200, as WeChat does)."""

    def __init__(self, errcode: int, errmsg: str | None = None, *, hint: str | None = None, raw: bool = False):
        super().__init__(errcode)
        self.errcode = errcode
        message = errmsg or ERRMSG.get(errcode, "error")
        if hint:
            message += f" hint: [{hint}]"
        if not raw:  # WeChat tags every error with a request id: clients must key on errcode, not errmsg
            message += f" rid: {secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"
        self.errmsg = message

    def body(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "errmsg": self.errmsg}


def _ok(**extra: Any) -> dict[str, Any]:
    return {"errcode": 0, "errmsg": "ok", **extra}


def opens_window(msg_type: str, event: str | None = None) -> bool:
    """Whether a delivery of this type is the user writing to the account: customer-service messages may follow."""
    return msg_type != "event" or (event or "").lower() in INTERACTION_EVENTS


def make_openid(seed: str) -> str:
    """A well-formed, deterministic openid (28 chars, 'o' first, like WeChat's) for `seed`."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(seed.encode()).digest()).decode()
    return "o" + digest[:27]


def _new_id(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def _utf8_len(value: str) -> int:
    return len(value.encode("utf-8"))


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,19}", value.strip()):
        return int(value)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Datacube: deterministic statistics, a pure function of the day, so tests can compute what to expect.
# ---------------------------------------------------------------------------------------------------------------

USER_SOURCES = {0: 12, 1: 20, 17: 6, 30: 40, 51: 3, 57: 10, 100: 8, 149: 4, 161: 5, 200: 6}  # source → max new/day
READ_SOURCES = {0: 40, 1: 15, 2: 20, 4: 10, 5: 5, 6: 5, 7: 5}  # getuserread user_source → weight
READ_SOURCE_ALL = 99999999
SHARE_SCENES = {1: 60, 2: 35, 255: 5}  # getusershare share_scene → weight
SCENES = ("公众号消息", "聊天会话", "朋友圈", "公众号主页", "推荐", "搜一搜", "其他")  # newer endpoints' read sources
SCENE_WEIGHTS = (35, 20, 15, 10, 10, 5, 5)
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 8, 12, 9, 7, 8, 12, 10, 7, 6, 6, 7, 9, 11, 13, 14, 10, 4)
READ_DECAY = (1.0, 0.45, 0.2, 0.1, 0.05, 0.03, 0.02)  # share of an article's reads on day 0..6 after publishing
ARTICLE_TOPICS = (
    "占道经营整治",
    "垃圾分类宣传",
    "违章搭建拆除",
    "市容环境提升",
    "共享单车规范停放",
    "夜市管理服务",
    "户外广告整治",
    "扬尘污染治理",
)
_CUMULATE_BASE = 8000


def _rng(*salt: object) -> random.Random:
    return random.Random("|".join(str(s) for s in salt))  # str seeds hash with sha512: stable across runs


def _split(total: int, weights: tuple[int, ...] | list[int]) -> list[int]:
    """Split `total` by weights (largest remainders), so the parts always sum to it."""
    whole = sum(weights)
    parts = [total * w // whole for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


def datacube_user_summary(day: date) -> list[dict[str, Any]]:
    """getusersummary rows for `day`: one per user_source that gained or lost followers."""
    rng = _rng(day.isoformat(), "users")
    rows = []
    for source, most in USER_SOURCES.items():
        new, cancel = rng.randint(0, most), rng.randint(0, most // 4)
        if new or cancel:
            rows.append({"ref_date": day.isoformat(), "user_source": source, "new_user": new, "cancel_user": cancel})
    return rows


_cumulate: list[int] = []
_cumulate_lock = threading.Lock()


def datacube_user_cumulate(day: date) -> int:
    """cumulate_user at the end of `day`: a base plus every day's new minus cancelled followers since the epoch."""
    index = (day - DATACUBE_EPOCH).days
    if index < 0:
        raise ValueError(f"WeChat keeps no statistics before {DATACUBE_EPOCH}")
    with _cumulate_lock:
        while len(_cumulate) <= index:
            d = DATACUBE_EPOCH + timedelta(days=len(_cumulate))
            net = sum(r["new_user"] - r["cancel_user"] for r in datacube_user_summary(d))
            _cumulate.append((_cumulate[-1] if _cumulate else _CUMULATE_BASE) + net)
        return _cumulate[index]


def datacube_articles(day: date) -> list[dict[str, Any]]:
    """The articles the emulator pretends were published on `day` (msgid is '<msg_data_id>_<index>')."""
    if day < DATACUBE_EPOCH:
        return []
    rng = _rng(day.isoformat(), "articles")
    msg_data_id = 2247400000 + (day - DATACUBE_EPOCH).days
    return [
        {
            "msgid": f"{msg_data_id}_{i}",
            "title": f"{rng.choice(ARTICLE_TOPICS)}（{day.month}月{day.day}日）",
            "publish_date": day.isoformat(),
        }
        for i in range(1, rng.choice((0, 1, 1, 2, 3)) + 1)
    ]


def datacube_article_metrics(article: dict[str, Any], day: date) -> dict[str, Any] | None:
    """What happened to `article` on `day` (None when nobody read it: older than a week, or not yet out)."""
    age = (day - date.fromisoformat(article["publish_date"])).days
    if not 0 <= age < len(READ_DECAY):
        return None
    base = _rng(article["msgid"], "base").randint(200, 3000)
    rng = _rng(article["msgid"], day.isoformat())
    read_user = max(1, int(base * READ_DECAY[age]))
    share_user, fav_user, ori_user = (
        rng.randint(0, read_user // 10),
        rng.randint(0, read_user // 25),
        rng.randint(0, read_user // 20),
    )
    return {
        "read_user": read_user,
        "read_count": read_user + rng.randint(0, read_user // 3),
        "ori_user": ori_user,
        "ori_count": ori_user + rng.randint(0, ori_user // 2),
        "share_user": share_user,
        "share_count": share_user + rng.randint(0, share_user // 2),
        "fav_user": fav_user,
        "fav_count": fav_user + rng.randint(0, fav_user // 3),
        "zaikan_user": rng.randint(0, read_user // 30),
        "like_user": rng.randint(0, read_user // 15),
        "comment_count": rng.randint(0, read_user // 50),
        "read_subscribe_user": rng.randint(0, read_user // 5),
        "praise_money": 0,
        "scenes": dict(zip(SCENES, _split(read_user, SCENE_WEIGHTS), strict=True)),
        "read_delivery_rate": round(rng.uniform(0.02, 0.2), 4),
        "read_finish_rate": round(rng.uniform(0.3, 0.9), 4),
        "read_avg_activetime": round(rng.uniform(0.2, 3.0), 2),
    }


def _read_on(day: date) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(article, that day's metrics) for every article read on `day`."""
    found = []
    for back in range(len(READ_DECAY) - 1, -1, -1):
        for article in datacube_articles(day - timedelta(days=back)):
            metrics = datacube_article_metrics(article, day)
            if metrics:
                found.append((article, metrics))
    return found


def _day_totals(day: date) -> dict[str, int]:
    keys = (
        "read_user",
        "read_count",
        "ori_user",
        "ori_count",
        "share_user",
        "share_count",
        "fav_user",
        "fav_count",
        "zaikan_user",
        "like_user",
        "comment_count",
        "read_subscribe_user",
    )
    totals = dict.fromkeys(keys, 0)
    for _, m in _read_on(day):
        for k in keys:
            totals[k] += m[k]
    return totals


def _scene_list(read_user: int, scenes: dict[str, int]) -> list[dict[str, Any]]:
    return [{"user_count": read_user, "scene_desc": "全部"}] + [
        {"user_count": n, "scene_desc": desc} for desc, n in scenes.items()
    ]


def _old_read_fields(m: dict[str, int]) -> dict[str, int]:
    return {
        "int_page_read_user": m["read_user"],
        "int_page_read_count": m["read_count"],
        "ori_page_read_user": m["ori_user"],
        "ori_page_read_count": m["ori_count"],
        "share_user": m["share_user"],
        "share_count": m["share_count"],
        "add_to_fav_user": m["fav_user"],
        "add_to_fav_count": m["fav_count"],
    }


def _new_detail(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "read_user": m["read_user"],
        "read_user_source": _scene_list(m["read_user"], m["scenes"]),
        "share_user": m["share_user"],
        "read_subscribe_user": m["read_subscribe_user"],
        "read_delivery_rate": m["read_delivery_rate"],
        "read_finish_rate": m["read_finish_rate"],
        "read_avg_activetime": m["read_avg_activetime"],
        "zaikan_user": m["zaikan_user"],
        "like_user": m["like_user"],
        "praise_money": m["praise_money"],
        "comment_count": m["comment_count"],
        "collection_user": m["fav_user"],
        "read_jump_position": [{"position": p, "rate": r} for p, r in enumerate((0.1, 0.1, 0.1, 0.2, 0.5), 1)],
    }


def _user_read_rows(day: date, totals: dict[str, int], extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The total row (user_source 99999999) and one per channel; WeChat splits only page reads and shares."""
    rows = [{"ref_date": day.isoformat(), **extra, "user_source": READ_SOURCE_ALL, **_old_read_fields(totals)}]
    weights = tuple(READ_SOURCES.values())
    split = {k: _split(totals[k], weights) for k in ("read_user", "read_count", "share_user", "share_count")}
    for i, source in enumerate(READ_SOURCES):
        rows.append(
            {
                "ref_date": day.isoformat(),
                **extra,
                "user_source": source,
                "int_page_read_user": split["read_user"][i],
                "int_page_read_count": split["read_count"][i],
                "ori_page_read_user": 0,
                "ori_page_read_count": 0,
                "share_user": split["share_user"][i],
                "share_count": split["share_count"][i],
                "add_to_fav_user": 0,
                "add_to_fav_count": 0,
            }
        )
    return rows


def _hourly(day: date) -> Iterator[tuple[int, dict[str, int]]]:
    totals = _day_totals(day)
    per_hour = {k: _split(v, HOUR_WEIGHTS) for k, v in totals.items()}
    for hour in range(24):
        yield hour * 100, {k: v[hour] for k, v in per_hour.items()}


def _share_rows(day: date, totals: dict[str, int], extra: dict[str, Any]) -> list[dict[str, Any]]:
    weights = tuple(SHARE_SCENES.values())
    users, counts = _split(totals["share_user"], weights), _split(totals["share_count"], weights)
    return [
        {"ref_date": day.isoformat(), **extra, "share_scene": scene, "share_count": counts[i], "share_user": users[i]}
        for i, scene in enumerate(SHARE_SCENES)
    ]


def _cumulative(article: dict[str, Any], until: date) -> dict[str, Any]:
    start = date.fromisoformat(article["publish_date"])
    days = [datacube_article_metrics(article, start + timedelta(days=i)) for i in range((until - start).days + 1)]
    days = [m for m in days if m]
    summed: dict[str, Any] = dict(days[0])
    for m in days[1:]:
        for k, v in m.items():
            if k == "scenes":
                summed[k] = {d: summed[k][d] + v[d] for d in SCENES}
            elif isinstance(v, int):
                summed[k] += v
    return summed


def _article_total_rows(day: date, yesterday: date, window: int, new_style: bool) -> list[dict[str, Any]]:
    rows = []
    for article in datacube_articles(day):
        stat_days = [day + timedelta(days=i) for i in range(window) if day + timedelta(days=i) <= yesterday]
        if new_style:
            details = [{"stat_date": s.isoformat(), **_new_detail(_cumulative(article, s))} for s in stat_days]
            rows.append(
                {"ref_date": day.isoformat(), "msgid": article["msgid"], "publish_type": 0, "detail_list": details}
            )
        else:
            details = [
                {
                    "stat_date": s.isoformat(),
                    "target_user": datacube_user_cumulate(day),
                    **_old_read_fields(_cumulative(article, s)),
                }
                for s in stat_days
            ]
            rows.append(
                {"ref_date": day.isoformat(), "msgid": article["msgid"], "title": article["title"], "details": details}
            )
    return rows


def _article_summary(day: date, _: date) -> list[dict[str, Any]]:
    return [
        {"ref_date": day.isoformat(), "msgid": a["msgid"], "title": a["title"], "user_source": 0, **_old_read_fields(m)}
        for a, m in _read_on(day)
    ]


def _user_read_hour(day: date, _: date) -> list[dict[str, Any]]:
    return [row for hour, totals in _hourly(day) for row in _user_read_rows(day, totals, {"ref_hour": hour})]


def _user_share_hour(day: date, _: date) -> list[dict[str, Any]]:
    return [row for hour, totals in _hourly(day) for row in _share_rows(day, totals, {"ref_hour": hour})]


def _biz_summary(day: date, _: date) -> list[dict[str, Any]]:
    read_on = _read_on(day)
    totals = _day_totals(day)
    scenes = {d: sum(m["scenes"][d] for _, m in read_on) for d in SCENES}
    return [
        {
            "ref_date": day.isoformat(),
            "detail": {
                "read_user": totals["read_user"],
                "read_user_source": _scene_list(totals["read_user"], scenes),
                "share_user": totals["share_user"],
                "zaikan_user": totals["zaikan_user"],
                "like_user": totals["like_user"],
                "comment_count": totals["comment_count"],
                "collection_user": totals["fav_user"],
            },
        }
    ]


# name → (max span in days, rows for one day given (day, yesterday), newer endpoint?)
DATACUBE: dict[str, tuple[int, Callable[[date, date], list[dict[str, Any]]], bool]] = {
    "getusersummary": (7, lambda d, _: datacube_user_summary(d), False),
    "getusercumulate": (
        7,
        lambda d, _: [{"ref_date": d.isoformat(), "cumulate_user": datacube_user_cumulate(d)}],
        False,
    ),
    "getarticlesummary": (1, _article_summary, False),
    "getarticletotal": (1, lambda d, y: _article_total_rows(d, y, 7, new_style=False), False),
    "getuserread": (3, lambda d, _: _user_read_rows(d, _day_totals(d), {}), False),
    "getuserreadhour": (1, _user_read_hour, False),
    "getusershare": (7, lambda d, _: _share_rows(d, _day_totals(d), {}), False),
    "getusersharehour": (1, _user_share_hour, False),
    "getbizsummary": (30, _biz_summary, True),
    "getarticleread": (
        1,
        lambda d, _: [
            {"ref_date": d.isoformat(), "msgid": a["msgid"], "detail": _new_detail(m)} for a, m in _read_on(d)
        ],
        True,
    ),
    "getarticletotaldetail": (1, lambda d, y: _article_total_rows(d, y, 30, new_style=True), True),
    "getarticleshare": (
        1,
        lambda d, _: [
            {"ref_date": d.isoformat(), "msgid": a["msgid"], "detail": {"share_user": m["share_user"]}}
            for a, m in _read_on(d)
            if m["share_user"]
        ],
        True,
    ),
}


def datacube_rows(endpoint: str, day: date, *, yesterday: date) -> list[dict[str, Any]]:
    """The rows `datacube/<endpoint>` answers for `day` (what a one-day query's "list" holds)."""
    _, rows, new_style = DATACUBE[endpoint]
    if new_style and day < ARTICLE_DATA_EPOCH:
        return []
    return rows(day, yesterday)


# ---------------------------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------------------------

USER_FIELDS = (
    "subscribe",
    "subscribe_time",
    "language",
    "unionid",
    "remark",
    "tagid_list",
    "subscribe_scene",
    "qr_scene",
    "qr_scene_str",
    "is_snapshotuser",
    "nickname",
    "headimgurl",
)
SYSTEM_TAGS = {2: "星标组"}


class EmulatorState:
    """Everything the emulator holds. Requests come from many threads: every access goes under `lock`."""

    def __init__(self, appid: str, secret: str, token_ttl: int = 7200) -> None:
        self.appid, self.secret, self.token_ttl = appid, secret, token_ttl
        self.lock = threading.Lock()
        self.gh_id = "gh_" + hashlib.sha1(appid.encode()).hexdigest()[:12]
        self.biz = base64.b64encode(str(int(hashlib.sha1(appid.encode()).hexdigest()[:8], 16)).encode()).decode()
        self._clear()

    def _clear(self) -> None:
        self.clock_offset = 0.0
        self.today_override: date | None = None
        self.tokens: dict[str, dict[str, Any]] = {}
        self.stable_token: str | None = None
        self.token_fetches: dict[str, int] = {"token": 0, "stable_token": 0}
        self.jsapi_tickets: dict[str, float] = {}  # ticket → expires_at
        self.ticket_fetches = 0
        self.calls: list[dict[str, Any]] = []
        self.call_counts: dict[str, int] = {}
        self.daily_counts: dict[str, dict[str, int]] = {}  # ISO day → key → calls
        self.daily_limits: dict[str, int] = dict(DEFAULT_DAILY_LIMITS)
        self.failures: dict[str, dict[str, Any]] = {}
        self.delays: dict[str, dict[str, Any]] = {}
        self.garbles: dict[str, dict[str, Any]] = {}
        self.menu: dict[str, Any] | None = None
        self.conditional_menus: list[dict[str, Any]] = []
        self.next_menuid = 208396938
        self.users: dict[str, dict[str, Any]] = {}
        self.tags: dict[int, str] = dict(SYSTEM_TAGS)
        self.next_tag_id = 100
        self.qrcodes: dict[str, dict[str, Any]] = {}
        self.permanent_qr_limit = QR_PERMANENT_LIMIT
        self.templates: dict[str, dict[str, Any]] = {}
        self.templates_sent: list[dict[str, Any]] = []
        self.interactions: dict[str, float] = {}  # openid → when the user last messaged the account
        self.custom_counts: dict[str, int] = {}  # openid → customer-service messages sent since then
        self.custom_sent: list[dict[str, Any]] = []
        self.next_msgid = 1000000001
        self.media: dict[str, dict[str, Any]] = {}
        self.images: dict[str, dict[str, Any]] = {}
        self.materials: dict[str, dict[str, Any]] = {}
        self.drafts: dict[str, dict[str, Any]] = {}
        self.publishes: dict[str, dict[str, Any]] = {}
        self.articles: dict[str, dict[str, Any]] = {}
        self.next_publish_id = 2247483700
        self.next_msg_data_id = 2247483650
        self.publish_outcomes: list[dict[str, Any]] = []
        self.push_events: list[dict[str, Any]] = []
        self.oauth_codes: dict[str, dict[str, Any]] = {}
        self.oauth_tokens: dict[str, dict[str, Any]] = {}
        self.oauth_refresh: dict[str, dict[str, Any]] = {}
        self.oauth_auto_openid: str | None = None
        self.user_page_size = 10000
        self.user_page_gap = 0  # the next user/get page leaves out this many of its openids (WeChat has done so)

    # -- clock -----------------------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def today(self) -> date:
        """The emulator's Beijing date: what a test set, else derived from the (possibly advanced) clock."""
        return self.today_override or datetime.fromtimestamp(self.now(), CHINA_TZ).date()

    # -- public helpers (tests may call them directly; each takes the lock) ----------------------------------------
    def reset(self) -> None:
        with self.lock:
            self._clear()

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward: tokens, codes, QR tickets and temporary media age with it."""
        with self.lock:
            self.clock_offset += seconds

    def set_today(self, day: date | None) -> None:
        with self.lock:
            self.today_override = day

    def add_users(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add (or update) followers: each spec an openid plus any user/info field; subscribed unless told."""
        with self.lock:
            return [dict(self._upsert_user(spec)) for spec in specs]

    def interact(self, openid: str, at: float | None = None) -> None:
        """The user messaged the account at `at` (default now): customer-service messages may follow for 48 hours."""
        with self.lock:
            self._interact(openid, at)

    def expire_tokens(self, mode: str = "invalidate") -> None:
        """Mode "invalidate": every current token answers 40001 from now on; mode "expire": 42001."""
        with self.lock:
            self._expire_tokens(mode)

    def fail(self, path: str, errcode: int, errmsg: str | None = None, times: int = 1) -> None:
        """The next `times` calls to `path` answer this error instead of doing their work."""
        with self.lock:
            self._set_failure(path, errcode, errmsg, times)

    def put_media(
        self,
        data: bytes,
        *,
        media_id: str | None = None,
        media_type: str = "image",
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Store bytes as temporary media (what a user's photo message refers to); returns the media_id."""
        with self.lock:
            return self._store_media(data, media_id, media_type, filename, content_type)

    def snapshot(self) -> dict[str, Any]:
        """A copy of everything (what ``GET /_emulator/state`` answers), safe to keep and compare."""
        with self.lock:
            return copy.deepcopy(self._snapshot())

    # -- internals (caller holds the lock) -------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        strip = ("data",)

        def public(items: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                {k: v for k, v in item.items() if k not in strip} | {"size": len(item.get("data", b""))}
                for item in items.values()
            ]

        return {
            "appid": self.appid,
            "gh_id": self.gh_id,
            "now": int(self.now()),
            "today": self.today().isoformat(),
            "menu": self.menu,
            "conditional_menus": self.conditional_menus,
            "users": list(self.users.values()),
            "tags": [{"id": i, "name": n, "count": self._tag_count(i)} for i, n in self.tags.items()],
            "qrcodes": list(self.qrcodes.values()),
            "templates": list(self.templates.values()),
            "templates_sent": self.templates_sent,
            "custom_sent": self.custom_sent,
            "interactions": {openid: int(at) for openid, at in self.interactions.items()},
            "media": public(self.media),
            "images": public(self.images),
            "materials": public(self.materials),
            "drafts": list(self.drafts.values()),
            "publishes": list(self.publishes.values()),
            "articles": list(self.articles.values()),
            "push_events": self.push_events,
            "token_fetches": dict(self.token_fetches),
            "jsapi_tickets": list(self.jsapi_tickets),
            "ticket_fetches": self.ticket_fetches,
            "call_counts": dict(self.call_counts),
            "daily_counts": self.daily_counts.get(self.today().isoformat(), {}),
            "failures": self.failures,
            "delays": self.delays,
            "garbles": self.garbles,
            "oauth_auto_openid": self.oauth_auto_openid,
            "calls": self.calls,
        }

    def _expire_tokens(self, mode: str) -> None:
        if mode not in ("invalidate", "expire"):
            raise ValueError(f"mode must be 'invalidate' or 'expire', not {mode!r}")
        now = self.now()
        for tok in self.tokens.values():
            if mode == "expire":
                tok["expires_at"] = min(tok["expires_at"], now)
            elif tok["revoked_at"] is None or tok["revoked_at"] > now:
                tok["revoked_at"] = now

    def _set_failure(self, path: str, errcode: int, errmsg: str | None, times: int) -> None:
        self.failures[path.lstrip("/")] = {
            "errcode": errcode,
            "errmsg": errmsg or ERRMSG.get(errcode, "error"),
            "times": times,
        }

    def _set_delay(self, path: str, seconds: float, times: int) -> None:
        if not 0 < seconds <= 120 or times < 1:
            raise ValueError("delay wants 0 < seconds <= 120 and times >= 1")
        self.delays[path.lstrip("/")] = {"seconds": seconds, "times": times}

    def _take_delay(self, path: str) -> float:
        delay = self.delays.get(path)
        if not delay:
            return 0.0
        delay["times"] -= 1
        if not delay["times"]:
            del self.delays[path]
        return float(delay["seconds"])

    def _set_garble(self, path: str, body: dict[str, Any]) -> None:
        times = int(body.get("times", 1))
        if times < 1:
            raise ValueError("garble wants times >= 1")
        self.garbles[path.lstrip("/")] = {
            "status": int(body.get("status", 200)),
            "body": str(body.get("body", '{"errcode":0,"errmsg":"ok","')),
            "content_type": str(body.get("content_type", "application/json")),
            "work": bool(body.get("work", True)),
            "times": times,
        }

    def _take_garble(self, path: str) -> dict[str, Any] | None:
        garble = self.garbles.get(path)
        if not garble:
            return None
        garble["times"] -= 1
        if not garble["times"]:
            del self.garbles[path]
        return garble

    def _store_media(
        self, data: bytes, media_id: str | None, media_type: str, filename: str | None, content_type: str | None
    ) -> str:
        media_id = media_id or _new_id()
        self.media[media_id] = {
            "media_id": media_id,
            "type": media_type,
            "data": data,
            "content_type": content_type or _guess_type(data),
            "filename": filename or media_id,
            "created_at": int(self.now()),
        }
        return media_id

    def _upsert_user(self, spec: dict[str, Any]) -> dict[str, Any]:
        openid = spec.get("openid") or make_openid(secrets.token_hex(8))
        user = self.users.get(openid)
        if user is None:
            user = {
                "openid": openid,
                "subscribe": 1,
                "subscribe_time": int(self.now()),
                "language": "zh_CN",
                "remark": "",
                "groupid": 0,
                "tagid_list": [],
                "subscribe_scene": "ADD_SCENE_OTHERS",
                "qr_scene": 0,
                "qr_scene_str": "",
                "is_snapshotuser": 0,
            }
            self.users[openid] = user
        for key in USER_FIELDS:
            if key in spec:
                user[key] = spec[key]
        return user

    def _interact(self, openid: str, at: float | None) -> None:
        if not isinstance(openid, str) or not openid:
            raise ValueError("interaction wants an openid")
        self.interactions[openid] = self.now() if at is None else float(at)
        self.custom_counts.pop(openid, None)  # the user's message answers the account: the count starts again

    def _tag_count(self, tag_id: int) -> int:
        return sum(1 for u in self.users.values() if tag_id in u["tagid_list"])

    def _check_app(self, appid: Any, secret: Any) -> None:
        if not appid:
            raise WxError(41002)
        if appid != self.appid:
            raise WxError(40013)
        if not secret:
            raise WxError(41004)
        if secret != self.secret:
            raise WxError(40125)

    def _issue_token(self, source: str, *, grace: float | None) -> dict[str, Any]:
        """A new token; older ones from the same source stop working after `grace` seconds (None: untouched)."""
        now = self.now()
        for value, tok in list(self.tokens.items()):
            if tok["expires_at"] < now - 86400:
                del self.tokens[value]  # long dead: forget it
            elif grace is not None and tok["source"] == source and tok["revoked_at"] is None:
                tok["revoked_at"] = now + grace
        tok = {
            "value": secrets.token_urlsafe(102),
            "source": source,
            "issued_at": now,
            "expires_at": now + self.token_ttl,
            "revoked_at": None,
        }
        self.tokens[tok["value"]] = tok
        self.token_fetches[source] += 1
        return tok

    def _token_state(self, tok: dict[str, Any] | None) -> int:
        """0 when usable, else the errcode WeChat answers for it."""
        if tok is None:
            return 40001
        now = self.now()
        if tok["revoked_at"] is not None and now >= tok["revoked_at"] and tok["revoked_at"] < tok["expires_at"]:
            return 40001
        if now >= tok["expires_at"]:
            return 42001
        return 0

    def _check_token(self, value: str | None) -> None:
        if not value:
            raise WxError(41001)
        code = self._token_state(self.tokens.get(value))
        if code:
            raise WxError(code)

    def _charge(self, key: str) -> None:
        """Count a call against today's quota; 45009 once the day's budget is spent."""
        limit = self.daily_limits.get(key)
        if limit is None:
            return
        counts = self.daily_counts.setdefault(self.today().isoformat(), {})
        counts[key] = counts.get(key, 0) + 1
        if counts[key] > limit:
            raise WxError(45009)

    def _user(self, openid: Any) -> dict[str, Any]:
        if not openid:
            raise WxError(41009)
        user = self.users.get(openid) if isinstance(openid, str) else None
        if user is None:
            raise WxError(40003)
        return user

    def _push(self, event: dict[str, Any]) -> None:
        self.push_events.append({"event": event, "xml": event_xml(event)})


def event_xml(event: dict[str, Any]) -> str:
    """A push event as WeChat posts it to the server (plain XML; lists repeat their element)."""

    def render(key: str, value: Any) -> str:
        if isinstance(value, list):
            return "".join(render(key, v) for v in value)
        if isinstance(value, dict):
            return f"<{key}>{''.join(render(k, v) for k, v in value.items())}</{key}>"
        if isinstance(value, int):
            return f"<{key}>{value}</{key}>"
        return f"<{key}><![CDATA[{value}]]></{key}>"

    return render("xml", event)


def _guess_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"GIF8"):
        return "image/gif"
    if data.startswith(b"#!AMR"):
        return "audio/amr"
    if data.startswith(b"ID3"):
        return "audio/mpeg"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    return "application/octet-stream"


EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "audio/amr": "amr",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/x-ms-wma": "wma",
    "video/mp4": "mp4",
}


# ---------------------------------------------------------------------------------------------------------------
# Request plumbing
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    methods: frozenset[str]
    handler: Callable[[EmulatorState], Any]
    auth: bool


ROUTES: dict[str, _Route] = {}


def _api(path: str, *methods: str, auth: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        ROUTES[path] = _Route(frozenset(methods or ("POST",)), fn, auth)
        return fn

    return register


def _json_body() -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise WxError(44002)
    try:
        body = json.loads(raw)
    except ValueError:
        raise WxError(47001, hint="body is not JSON") from None
    if not isinstance(body, dict):
        raise WxError(47001, hint="body is not a JSON object")
    return body


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json")


def _root() -> str:
    return request.url_root  # includes the mount prefix (script_root) in demo mode


def _recorded_body() -> Any:
    if request.mimetype.startswith("multipart/"):
        return None
    raw = request.get_data(cache=True)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:500].decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------------------------
# Access tokens
# ---------------------------------------------------------------------------------------------------------------


@_api("cgi-bin/token", "GET", auth=False)
def _token(st: EmulatorState) -> dict[str, Any]:
    if request.args.get("grant_type") != "client_credential":
        raise WxError(40002)
    st._check_app(request.args.get("appid"), request.args.get("secret"))
    tok = st._issue_token("token", grace=TOKEN_OVERLAP)
    return {"access_token": tok["value"], "expires_in": st.token_ttl}


@_api("cgi-bin/stable_token", "POST", auth=False)
def _stable_token(st: EmulatorState) -> dict[str, Any]:
    body = _json_body()
    if body.get("grant_type") != "client_credential":
        raise WxError(40002)
    st._check_app(body.get("appid"), body.get("secret"))
    force = body.get("force_refresh", False)
    if not isinstance(force, bool):
        raise WxError(47001, hint="force_refresh must be a boolean")
    now = st.now()
    current = st.tokens.get(st.stable_token or "")
    if force:
        st._charge(STABLE_FORCE_KEY)
        tok = st._issue_token("stable_token", grace=0)
    elif current and not st._token_state(current) and current["expires_at"] - now > TOKEN_OVERLAP:
        tok = current  # the same token while it lives
    else:
        tok = st._issue_token("stable_token", grace=None)  # renewed in its last minutes; the old one runs out
    st.stable_token = tok["value"]
    return {"access_token": tok["value"], "expires_in": int(tok["expires_at"] - now)}


@_api("cgi-bin/ticket/getticket", "GET")
def _getticket(st: EmulatorState) -> dict[str, Any]:
    if request.args.get("type") != "jsapi":  # the JS-SDK ticket only; cards' wx_card is not emulated
        raise WxError(40097)
    now = st.now()
    st.jsapi_tickets = {t: exp for t, exp in st.jsapi_tickets.items() if exp > now}
    ticket = _new_id(64)  # 86 characters, like WeChat's; earlier tickets stay valid until they expire
    st.jsapi_tickets[ticket] = now + 7200
    st.ticket_fetches += 1
    return _ok(ticket=ticket, expires_in=7200)


# ---------------------------------------------------------------------------------------------------------------
# Menus
# ---------------------------------------------------------------------------------------------------------------

KEY_TYPES = {
    "click",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
}
LEAF_TYPES = KEY_TYPES | {"view", "miniprogram", "media_id", "view_limited", "article_id", "article_view_limited"}


def _check_url(url: Any, sub: bool) -> str:
    if not isinstance(url, str) or not 1 <= _utf8_len(url) <= 1024:
        raise WxError(40027 if sub else 40020)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WxError(40054 if sub else 40055)
    return parts.hostname


def _check_leaf(st: EmulatorState, button: dict[str, Any], sub: bool, domains: set[str]) -> dict[str, Any]:
    kind = button.get("type")
    if kind not in LEAF_TYPES:
        raise WxError(40024 if sub else 40017, hint=f"type {kind!r}")
    leaf = {"type": kind, "name": button["name"]}
    if kind in KEY_TYPES:
        key = button.get("key")
        if not isinstance(key, str) or not 1 <= _utf8_len(key) <= 128:
            raise WxError(40026 if sub else 40019)
        leaf["key"] = key
    elif kind in ("view", "miniprogram"):
        domains.add(_check_url(button.get("url"), sub))
        leaf["url"] = button["url"]
        if kind == "miniprogram":
            if not button.get("appid") or not button.get("pagepath"):
                raise WxError(47001, hint="miniprogram button needs appid and pagepath")
            leaf |= {"appid": button["appid"], "pagepath": button["pagepath"]}
    elif kind in ("media_id", "view_limited"):
        if button.get("media_id") not in st.materials:
            raise WxError(40007, hint="media_id must be a permanent material")
        leaf["media_id"] = button["media_id"]
    else:
        if button.get("article_id") not in st.articles:
            raise WxError(53600)
        leaf["article_id"] = button["article_id"]
    leaf["sub_button"] = []
    return leaf


def _check_buttons(st: EmulatorState, buttons: Any) -> list[dict[str, Any]]:
    """Validate a menu the way WeChat does; returns it as menu/get shows it (every leaf with sub_button: [])."""
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise WxError(40016)
    domains: set[str] = set()
    checked = []
    for button in buttons:
        if not isinstance(button, dict):
            raise WxError(47001)
        name = button.get("name")
        if not isinstance(name, str) or not 1 <= _utf8_len(name) <= 16:
            raise WxError(40018)
        subs = button.get("sub_button")
        if not subs:
            checked.append(_check_leaf(st, button, False, domains))
            continue
        if not isinstance(subs, list) or len(subs) > 5:
            raise WxError(40023)
        children = []
        for sub in subs:
            if not isinstance(sub, dict):
                raise WxError(47001)
            sub_name = sub.get("name")
            if not isinstance(sub_name, str) or not 1 <= _utf8_len(sub_name) <= 60:
                raise WxError(40025)
            if sub.get("sub_button"):
                raise WxError(40022)
            children.append(_check_leaf(st, sub, True, domains))
        checked.append({"name": name, "sub_button": children})
    if len(domains) > 3:
        raise WxError(65316)
    return checked


@_api("cgi-bin/menu/create", "POST")
def _menu_create(st: EmulatorState) -> dict[str, Any]:
    buttons = _check_buttons(st, _json_body().get("button"))
    st.menu = {"button": buttons, "menuid": st.next_menuid}
    st.next_menuid += 1
    return _ok()


@_api("cgi-bin/menu/get", "GET")
def _menu_get(st: EmulatorState) -> dict[str, Any]:
    if st.menu is None:
        raise WxError(46003)
    answer: dict[str, Any] = {"menu": st.menu}
    if st.conditional_menus:
        answer["conditionalmenu"] = st.conditional_menus
    return answer


@_api("cgi-bin/menu/delete", "GET")
def _menu_delete(st: EmulatorState) -> dict[str, Any]:
    st.menu, st.conditional_menus = None, []
    return _ok()


MATCHRULE_FIELDS = ("tag_id", "sex", "country", "province", "city", "client_platform_type", "language")


@_api("cgi-bin/menu/addconditional", "POST")
def _menu_addconditional(st: EmulatorState) -> dict[str, Any]:
    body = _json_body()
    rule = body.get("matchrule")
    rule = (
        {k: v for k, v in rule.items() if k in MATCHRULE_FIELDS and v not in ("", None)}
        if isinstance(rule, dict)
        else {}
    )
    if not rule:
        raise WxError(65304)
    if st.menu is None:
        raise WxError(65303)
    buttons = _check_buttons(st, body.get("button"))
    menuid = st.next_menuid
    st.next_menuid += 1
    st.conditional_menus.append({"button": buttons, "matchrule": rule, "menuid": menuid})
    return {"menuid": str(menuid)}  # a string here, a number in menu/get: as WeChat


@_api("cgi-bin/menu/delconditional", "POST")
def _menu_delconditional(st: EmulatorState) -> dict[str, Any]:
    menuid = _as_int(_json_body().get("menuid"))
    kept = [m for m in st.conditional_menus if m["menuid"] != menuid]
    if len(kept) == len(st.conditional_menus):
        raise WxError(65301)
    st.conditional_menus = kept
    return _ok()


@_api("cgi-bin/get_current_selfmenu_info", "GET")
def _selfmenu_info(st: EmulatorState) -> dict[str, Any]:
    def leaf(b: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in b.items() if k != "sub_button"}

    buttons = [
        {"name": b["name"], "sub_button": {"list": [leaf(s) for s in b["sub_button"]]}} if "type" not in b else leaf(b)
        for b in (st.menu or {}).get("button", [])
    ]
    return {"is_menu_open": int(st.menu is not None), "selfmenu_info": {"button": buttons}}


# ---------------------------------------------------------------------------------------------------------------
# Users and tags
# ---------------------------------------------------------------------------------------------------------------


def _user_info(user: dict[str, Any]) -> dict[str, Any]:
    """user/info as WeChat answers since Dec 2021: no nickname, avatar, sex or region."""
    if not user["subscribe"]:
        info = {"subscribe": 0, "openid": user["openid"], "tagid_list": list(user["tagid_list"])}
    else:
        info = {k: user[k] for k in ("subscribe", "openid", "language", "subscribe_time")}
        info |= {k: user[k] for k in ("remark", "groupid", "tagid_list", "subscribe_scene", "qr_scene", "qr_scene_str")}
    if user.get("unionid"):
        info["unionid"] = user["unionid"]
    return info


@_api("cgi-bin/user/info", "GET")
def _user_info_api(st: EmulatorState) -> dict[str, Any]:
    return _user_info(st._user(request.args.get("openid")))


@_api("cgi-bin/user/info/batchget", "POST")
def _user_batchget(st: EmulatorState) -> dict[str, Any]:
    wanted = _json_body().get("user_list")
    if not isinstance(wanted, list) or not 1 <= len(wanted) <= 100:
        raise WxError(40032)
    return {"user_info_list": [_user_info(st._user(w.get("openid") if isinstance(w, dict) else None)) for w in wanted]}


def _page(openids: list[str], after: str | None, size: int) -> dict[str, Any]:
    start = 0
    if after:
        if after not in openids:
            raise WxError(40003, hint="next_openid")
        start = openids.index(after) + 1
    chunk = openids[start : start + size]
    answer: dict[str, Any] = {"count": len(chunk)}
    if chunk:
        answer["data"] = {"openid": chunk}
    answer["next_openid"] = chunk[-1] if chunk else ""
    return answer


@_api("cgi-bin/user/get", "GET")
def _user_get(st: EmulatorState) -> dict[str, Any]:
    followers = [u["openid"] for u in st.users.values() if u["subscribe"]]
    answer = {"total": len(followers), **_page(followers, request.args.get("next_openid"), st.user_page_size)}
    if st.user_page_gap and "data" in answer:  # next_openid still marks the page's true end
        kept = answer["data"]["openid"][: -st.user_page_gap]
        answer["data"]["openid"], answer["count"], st.user_page_gap = kept, len(kept), 0
    return answer


@_api("cgi-bin/user/info/updateremark", "POST")
def _user_remark(st: EmulatorState) -> dict[str, Any]:
    body = _json_body()
    user = st._user(body.get("openid"))
    remark = body.get("remark")
    if not isinstance(remark, str) or _utf8_len(remark) > 30:
        raise WxError(40092)
    user["remark"] = remark
    return _ok()


def _tag_name(st: EmulatorState, name: Any, *, skip: int | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise WxError(45157)
    if _utf8_len(name) > 30:
        raise WxError(45158)
    if any(n == name and i != skip for i, n in st.tags.items()):
        raise WxError(45157)
    return name


def _tag_id(st: EmulatorState, value: Any, *, editable: bool = False) -> int:
    tag_id = _as_int(value)
    if editable and tag_id in (0, 1, 2):
        raise WxError(45058)
    if tag_id not in st.tags:
        raise WxError(45159)
    return tag_id


@_api("cgi-bin/tags/create", "POST")
def _tags_create(st: EmulatorState) -> dict[str, Any]:
    tag = _json_body().get("tag")
    name = _tag_name(st, tag.get("name") if isinstance(tag, dict) else None)
    if len(st.tags) - len(SYSTEM_TAGS) >= 100:
        raise WxError(45056)
    tag_id = st.next_tag_id
    st.next_tag_id += 1
    st.tags[tag_id] = name
    return {"tag": {"id": tag_id, "name": name}}


@_api("cgi-bin/tags/get", "GET")
def _tags_get(st: EmulatorState) -> dict[str, Any]:
    return {"tags": [{"id": i, "name": n, "count": st._tag_count(i)} for i, n in st.tags.items()]}


@_api("cgi-bin/tags/update", "POST")
def _tags_update(st: EmulatorState) -> dict[str, Any]:
    tag = _json_body().get("tag") or {}
    tag_id = _tag_id(st, tag.get("id"), editable=True)
    st.tags[tag_id] = _tag_name(st, tag.get("name"), skip=tag_id)
    return _ok()


@_api("cgi-bin/tags/delete", "POST")
def _tags_delete(st: EmulatorState) -> dict[str, Any]:
    tag_id = _tag_id(st, (_json_body().get("tag") or {}).get("id"), editable=True)
    del st.tags[tag_id]
    for user in st.users.values():
        user["tagid_list"] = [t for t in user["tagid_list"] if t != tag_id]
    return _ok()


def _tag_members(st: EmulatorState) -> tuple[int, list[dict[str, Any]]]:
    body = _json_body()
    openids = body.get("openid_list")
    if not isinstance(openids, list) or not 1 <= len(openids) <= 50:
        raise WxError(40032)
    tag_id = _tag_id(st, body.get("tagid"))
    return tag_id, [st._user(o) for o in openids]


@_api("cgi-bin/tags/members/batchtagging", "POST")
def _tags_tag(st: EmulatorState) -> dict[str, Any]:
    tag_id, users = _tag_members(st)
    if any(tag_id not in u["tagid_list"] and len(u["tagid_list"]) >= 20 for u in users):
        raise WxError(45059)
    for user in users:
        if tag_id not in user["tagid_list"]:
            user["tagid_list"].append(tag_id)
    return _ok()


@_api("cgi-bin/tags/members/batchuntagging", "POST")
def _tags_untag(st: EmulatorState) -> dict[str, Any]:
    tag_id, users = _tag_members(st)
    for user in users:
        user["tagid_list"] = [t for t in user["tagid_list"] if t != tag_id]
    return _ok()


@_api("cgi-bin/tags/getidlist", "POST")
def _tags_of_user(st: EmulatorState) -> dict[str, Any]:
    return {"tagid_list": list(st._user(_json_body().get("openid"))["tagid_list"])}


@_api("cgi-bin/user/tag/get", "GET", "POST")  # documented as GET with a JSON body; clients POST it
def _tag_users(st: EmulatorState) -> dict[str, Any]:
    body = _json_body()
    tag_id = _tag_id(st, body.get("tagid"))
    members = [u["openid"] for u in st.users.values() if tag_id in u["tagid_list"] and u["subscribe"]]
    return _page(members, body.get("next_openid"), st.user_page_size)


# ---------------------------------------------------------------------------------------------------------------
# QR codes
# ---------------------------------------------------------------------------------------------------------------


def _ticket() -> str:
    while True:  # real tickets are base64 with '+', '/' and '=': make sure ours need URL-encoding too
        ticket = "gQ" + base64.b64encode(secrets.token_bytes(46)).decode()
        if "+" in ticket or "/" in ticket:
            return ticket


@_api("cgi-bin/qrcode/create", "POST")
def _qrcode_create(st: EmulatorState) -> dict[str, Any]:
    body = _json_body()
    action = body.get("action_name")
    if action not in ("QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"):
        raise WxError(40053, hint=f"action_name {action!r}")
    scene = (body.get("action_info") or {}).get("scene") if isinstance(body.get("action_info"), dict) else None
    if not isinstance(scene, dict):
        raise WxError(40053)
    permanent = action.startswith("QR_LIMIT")
    if action.endswith("STR_SCENE"):
        value = scene.get("scene_str")
        if not isinstance(value, str) or not 1 <= len(value) <= 64:
            raise WxError(40053, hint="scene_str must be 1-64 characters")
        stored: dict[str, Any] = {"scene_str": value}
    else:
        value = scene.get("scene_id")
        top = 100000 if permanent else 2**32 - 1
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise WxError(40053, hint=f"scene_id must be 1-{top}")
        stored = {"scene_id": value}
    if permanent and sum("expire_at" not in r for r in st.qrcodes.values()) >= st.permanent_qr_limit:
        raise WxError(45029)
    ticket, url = _ticket(), "http://weixin.qq.com/q/02" + _new_id(16)
    record = {"ticket": ticket, "url": url, "action_name": action, "scene": stored, "created_at": int(st.now())}
    answer: dict[str, Any] = {"ticket": ticket}
    if not permanent:
        expire = body.get("expire_seconds", QR_DEFAULT_EXPIRE)
        if isinstance(expire, bool) or not isinstance(expire, int) or expire <= 0:
            raise WxError(47001, hint="expire_seconds")
        expire = min(expire, QR_MAX_EXPIRE)  # WeChat caps rather than refuses
        record["expire_at"] = record["created_at"] + expire
        answer["expire_seconds"] = expire
    st.qrcodes[ticket] = record
    return answer | {"url": url}


@_api("cgi-bin/showqrcode", "GET", auth=False)
def _showqrcode(st: EmulatorState) -> Response:
    record = st.qrcodes.get(request.args.get("ticket", ""))
    if record is None or record.get("expire_at", float("inf")) <= st.now():
        raise WxError(40053, hint="unknown or expired ticket")  # the dispatcher answers this one with HTTP 404
    out = io.BytesIO()
    qrcode.make(record["url"]).save(out)
    return Response(out.getvalue(), mimetype="image/png")


# ---------------------------------------------------------------------------------------------------------------
# Template messages
# ---------------------------------------------------------------------------------------------------------------

# The typed keywords of today's template messages: WeChat refuses values beyond these (47003).
KEYWORD_RULES: dict[str, Callable[[str], bool]] = {
    "thing": lambda v: len(v) <= 20,
    "character_string": lambda v: len(v) <= 32 and re.fullmatch(r"[\x21-\x7e]*", v) is not None,
    "number": lambda v: len(v) <= 32 and re.fullmatch(r"[0-9.]*", v) is not None,
    "letter": lambda v: len(v) <= 32 and re.fullmatch(r"[A-Za-z]*", v) is not None,
    "phrase": lambda v: len(v) <= 5 and re.fullmatch(r"[\u4e00-\u9fff]*", v) is not None,
    "name": lambda v: len(v) <= 10 if re.search(r"[\u4e00-\u9fff]", v) else len(v) <= 20,
    "phone_number": lambda v: len(v) <= 17 and re.fullmatch(r"[0-9+\- ]*", v) is not None,
    "car_number": lambda v: len(v) <= 8,
}


def _check_template_data(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise WxError(47001, hint="data must be an object")
    for key, item in data.items():
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise WxError(47003, f"argument invalid! data.{key}.value invalid")
        kind = re.sub(r"\d+$", "", key)
        rule = KEYWORD_RULES.get(kind)
        if rule and (not item["value"] or not rule(item["value"])):
            raise WxError(47003, f"argument invalid! data.{key}.value invalid")
    return data


@_api("cgi-bin/message/template/send", "POST")
def _template_send(st: EmulatorState) -> dict[str, Any]:
    body = _json_body()
    user = st._user(body.get("touser"))
    template_id = body.get("template_id")
    if not isinstance(template_id, str) or not template_id or (st.templates and template_id not in st.templates):
        raise WxError(40037)
    if not user["subscribe"]:
        raise WxError(43004)
    data = _check_template_data(body.get("data"))
    msgid = st.next_msgid
    st.next_msgid += 1
    st.templates_sent.append(
        {
            "msgid": msgid,
            "touser": user["openid"],
            "template_id": template_id,
            "data": data,
            "url": body.get("url"),
            "miniprogram": body.get("miniprogram"),
            "client_msg_id": body.get("client_msg_id"),
            "sent_at": int(st.now()),
        }
    )
    st._push(
        {
            "ToUserName": st.gh_id,
            "FromUserName": user["openid"],
            "CreateTime": int(st.now()),
            "MsgType": "event",
            "Event": "TEMPLATESENDJOBFINISH",
            "MsgID": msgid,
            "Status": "success",
        }
    )
    return _ok(msgid=msgid)


@_api("cgi-bin/message/custom/send", "POST")
def _custom_send(st: EmulatorState) -> dict[str, Any]:
    """A customer-service message: only within 48 hours of the user's last message, at most 5 until they write."""
    body = _json_body()
    user = st._user(body.get("touser"))
    msgtype = body.get("msgtype")
    if msgtype not in CUSTOM_MSGTYPES:
        raise WxError(40008)
    content = body.get(msgtype)
    if not isinstance(content, dict):
        raise WxError(47001, hint=f"{msgtype} must be an object")
    if msgtype == "text":
        text = content.get("content")
        if not isinstance(text, str) or not text.strip():
            raise WxError(44004)
        if _utf8_len(text) > CUSTOM_TEXT_BYTES:
            raise WxError(45002)
    last = st.interactions.get(user["openid"])
    if not user["subscribe"] or last is None or st.now() - last > CUSTOM_WINDOW:
        raise WxError(45015)
    if st.custom_counts.get(user["openid"], 0) >= CUSTOM_PER_INTERACTION:
        raise WxError(45047)
    st.custom_counts[user["openid"]] = st.custom_counts.get(user["openid"], 0) + 1
    kf = body.get("customservice")
    st.custom_sent.append(
        {
            "touser": user["openid"],
            "msgtype": msgtype,
            msgtype: content,
            "kf_account": kf.get("kf_account") if isinstance(kf, dict) else None,
            "sent_at": int(st.now()),
        }
    )
    return _ok()


@_api("cgi-bin/template/get_all_private_template", "GET")
def _templates_list(st: EmulatorState) -> dict[str, Any]:
    return {"template_list": list(st.templates.values())}


# ---------------------------------------------------------------------------------------------------------------
# Media and materials
# ---------------------------------------------------------------------------------------------------------------

SIZE_CODES = {"image": 40009, "voice": 40010, "video": 40011, "thumb": 40012}
# kind → (largest size, allowed extensions) for temporary media and for permanent material
MEDIA_RULES = {
    "image": (10 << 20, {"jpg", "jpeg", "png", "gif"}),
    "voice": (2 << 20, {"amr", "mp3"}),
    "video": (10 << 20, {"mp4"}),
    "thumb": (64 << 10, {"jpg", "jpeg"}),
}
MATERIAL_RULES = MEDIA_RULES | {
    "image": (10 << 20, {"jpg", "jpeg", "png", "gif", "bmp"}),
    "voice": (2 << 20, {"mp3", "wma", "wav", "amr"}),
}
IMAGE_FORMATS = {"image": {"JPEG", "PNG", "GIF", "BMP"}, "thumb": {"JPEG"}, "uploadimg": {"JPEG", "PNG"}}


def _sniff(kind: str, data: bytes) -> str:
    """The content type of `data` if it really is a `kind` file WeChat takes; 40005 otherwise."""
    if kind in IMAGE_FORMATS:
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                img.verify()
        except Exception:  # noqa: BLE001  (Pillow raises many kinds for bad bytes)
            raise WxError(40005, hint="not an image") from None
        if fmt not in IMAGE_FORMATS[kind]:
            raise WxError(40005, hint=f"{fmt} not accepted")
        return Image.MIME.get(fmt, "image/" + fmt.lower())
    if kind == "voice":
        if data.startswith(b"#!AMR"):
            return "audio/amr"
        if data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
            return "audio/mpeg"
        if data.startswith(b"RIFF") and data[8:12] == b"WAVE":
            return "audio/wav"
        if data.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
            return "audio/x-ms-wma"
        raise WxError(40005, hint="not a voice file")
    if data[4:8] == b"ftyp":
        return "video/mp4"
    raise WxError(40005, hint="not an mp4 video")


def _upload(kind: str, rules: dict[str, tuple[int, set[str]]], size_code: int | None = None) -> dict[str, Any]:
    """Read the multipart field `media` and check it as WeChat does: size, file name extension, real content."""
    if kind not in rules:
        raise WxError(40004)
    storage = request.files.get("media")
    if storage is None:
        raise WxError(41005)
    data = storage.read()
    if not data:
        raise WxError(41005)
    limit, extensions = rules[kind]
    if len(data) > limit:
        raise WxError(size_code or SIZE_CODES[kind])
    filename = storage.filename or ""
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension not in extensions:  # WeChat goes by the file name: no extension, no upload
        raise WxError(40005, hint=f"file name {filename!r}")
    content_type = _sniff(kind, data)
    if EXTENSIONS.get(content_type) not in extensions:
        raise WxError(40005, hint=f"{content_type} not accepted here")
    return {"data": data, "filename": filename, "content_type": content_type}


@_api("cgi-bin/media/upload", "POST")
def _media_upload(st: EmulatorState) -> dict[str, Any]:
    kind = request.args.get("type", "")
    media_id = _new_id()
    st.media[media_id] = {"media_id": media_id, "type": kind, **_upload(kind, MEDIA_RULES), "created_at": int(st.now())}
    id_key = "thumb_media_id" if kind == "thumb" else "media_id"
    return {"type": kind, id_key: media_id, "created_at": st.media[media_id]["created_at"]}


def _bytes(item: dict[str, Any], name: str) -> Response:
    extension = EXTENSIONS.get(item["content_type"], "bin")
    return Response(
        item["data"],
        mimetype=item["content_type"],
        headers={"Content-Disposition": f'attachment; filename="{name}.{extension}"'},
    )


@_api("cgi-bin/media/get", "GET")
def _media_get(st: EmulatorState) -> Any:
    media_id = request.args.get("media_id")
    if not media_id:
        raise WxError(41006)
    item = st.media.get(media_id)
    if item is None or item["created_at"] + TEMP_MEDIA_TTL <= st.now():
        raise WxError(40007)
    if item["type"] == "video":
        return {"video_url": f"{_root()}_emulator/media/{media_id}"}
    return _bytes(item, media_id)


@_api("cgi-bin/media/uploadimg", "POST")
def _media_uploadimg(st: EmulatorState) -> dict[str, Any]:
    upload = _upload("uploadimg", {"uploadimg": (1 << 20, {"jpg", "jpeg", "png"})}, size_code=40009)
    image_id = _new_id(24)
    st.images[image_id] = {
        "image_id": image_id,
        **upload,
        "url": f"{_root()}mmbiz_img/{image_id}",
        "created_at": int(st.now()),
    }
    return {"url": st.images[image_id]["url"]}


@_api("cgi-bin/material/add_material", "POST")
def _material_add(st: EmulatorState) -> dict[str, Any]:
    kind = request.args.get("type", "")
    upload = _upload(kind, MATERIAL_RULES)
    media_id = _new_id()
    item = {"media_id": media_id, "type": kind, **upload, "update_time": int(st.now())}
    if kind == "video":
        try:
            description = json.loads(request.form.get("description", ""))
        except ValueError:
            description = None
        if not isinstance(description, dict) or not description.get("title"):
            raise WxError(47001, hint="a video needs description {title, introduction}")
        item |= {"title": description["title"], "introduction": description.get("introduction", "")}
    answer = {"media_id": media_id}
    if kind == "image":
        item["url"] = f"{_root()}mmbiz_img/{media_id}"
        st.images[media_id] = {"image_id": media_id, **upload, "url": item["url"], "created_at": item["update_time"]}
        answer["url"] = item["url"]
    st.materials[media_id] = item
    return answer


def _material(st: EmulatorState) -> dict[str, Any]:
    item = st.materials.get(_json_body().get("media_id"))
    if item is None:
        raise WxError(40007)
    return item


@_api("cgi-bin/material/get_material", "POST")
def _material_get(st: EmulatorState) -> Any:
    item = _material(st)
    if item["type"] == "video":
        return {
            "title": item["title"],
            "description": item["introduction"],
            "down_url": f"{_root()}_emulator/media/{item['media_id']}",
        }
    return _bytes(item, item["media_id"])


@_api("cgi-bin/material/del_material", "POST")
def _material_del(st: EmulatorState) -> dict[str, Any]:
    item = _material(st)
    del st.materials[item["media_id"]]
    st.images.pop(item["media_id"], None)
    return _ok()


@_api("cgi-bin/material/get_materialcount", "GET")
def _material_count(st: EmulatorState) -> dict[str, Any]:
    kinds = [m["type"] for m in st.materials.values()]
    return {f"{k}_count": kinds.count(k) for k in ("voice", "video", "image")} | {"news_count": 0}


@_api("cgi-bin/material/batchget_material", "POST")
def _material_batchget(st: EmulatorState) -> dict[str, Any]:
    body = _json_body()
    kind, offset, count = body.get("type"), _as_int(body.get("offset", 0)), _as_int(body.get("count", 20))
    if kind not in ("image", "video", "voice", "news"):
        raise WxError(40004)
    if offset is None or offset < 0 or count is None or not 1 <= count <= 20:
        raise WxError(47003)
    items = [m for m in st.materials.values() if m["type"] == kind][::-1]
    page = [
        {"media_id": m["media_id"], "name": m["filename"], "update_time": m["update_time"]}
        | ({"url": m["url"]} if "url" in m else {})
        for m in items[offset : offset + count]
    ]
    return {"total_count": len(items), "item_count": len(page), "item": page}


# ---------------------------------------------------------------------------------------------------------------
# Drafts and publishing
# ---------------------------------------------------------------------------------------------------------------

_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.I | re.S)
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_SRC = re.compile(r"""\b(?:data-)?src\s*=\s*["']([^"']*)["']""", re.I)
_OUR_IMAGE = re.compile(r"/mmbiz_img/([A-Za-z0-9_-]+)$")


def _clean_content(st: EmulatorState, content: str) -> str:
    """What WeChat keeps of an article body: scripts go, and so do images not uploaded to WeChat first."""

    def keep(match: re.Match[str]) -> str:
        sources = _SRC.findall(match.group(0))
        ours = sources and all((m := _OUR_IMAGE.search(s)) and m.group(1) in st.images for s in sources)
        return match.group(0) if ours else ""

    return _IMG.sub(keep, _SCRIPT.sub("", content))


def _check_article(st: EmulatorState, article: Any) -> dict[str, Any]:
    if not isinstance(article, dict):
        raise WxError(47001)
    kind = article.get("article_type") or "news"
    if kind not in ("news", "newspic"):
        raise WxError(47001, hint=f"article_type {kind!r}")
    title, content = article.get("title"), article.get("content")
    if not isinstance(title, str) or not 1 <= len(title) <= 32:
        raise WxError(45003)
    author, digest = str(article.get("author") or ""), str(article.get("digest") or "")
    source = str(article.get("content_source_url") or "")
    if len(author) > 16:
        raise WxError(45110)
    if len(digest) > 128:
        raise WxError(45004)
    if _utf8_len(source) > 1024:
        raise WxError(45005)
    if not isinstance(content, str) or not content.strip():
        raise WxError(44004)
    if len(content) >= 20000 or _utf8_len(content) >= 1 << 20:
        raise WxError(45002)
    thumb = article.get("thumb_media_id")
    checked: dict[str, Any] = {
        "article_type": kind,
        "title": title,
        "author": author,
        "digest": digest,
        "content": _clean_content(st, content),
        "content_source_url": source,
    }
    if kind == "news" or thumb:
        material = st.materials.get(thumb) if isinstance(thumb, str) else None
        if material is None or material["type"] not in ("image", "thumb"):
            raise WxError(40007, hint="thumb_media_id must be a permanent image")
        checked |= {"thumb_media_id": thumb, "thumb_url": material.get("url", "")}
    if kind == "newspic":
        images = ((article.get("image_info") or {}).get("image_list")) or []
        if not images or any(st.materials.get(i.get("image_media_id"), {}).get("type") != "image" for i in images):
            raise WxError(40007, hint="image_info.image_list needs permanent images")
        checked["image_info"] = {"image_list": images}
    checked |= {
        "show_cover_pic": 0,
        "need_open_comment": int(bool(article.get("need_open_comment"))),
        "only_fans_can_comment": int(bool(article.get("only_fans_can_comment"))),
    }
    for crop in ("pic_crop_235_1", "pic_crop_1_1"):
        if article.get(crop):
            checked[crop] = article[crop]
    return checked


def _check_articles(st: EmulatorState, articles: Any) -> list[dict[str, Any]]:
    if not isinstance(articles, list) or not articles:
        raise WxError(44003)
    if len(articles) > 8:
        raise WxError(45008)
    return [_check_article(st, a) for a in articles]


def _draft(st: EmulatorState, media_id: Any) -> dict[str, Any]:
    draft = st.drafts.get(media_id) if isinstance(media_id, str) else None
    if draft is None:
        raise WxError(40007)
    return draft


def _draft_items(st: EmulatorState, draft: dict[str, Any]) -> list[dict[str, Any]]:
    preview = f"{_root()}_emulator/draft/{draft['media_id']}"
    return [a | {"url": f"{preview}?idx={i}"} for i, a in enumerate(draft["articles"], 1)]


@_api("cgi-bin/draft/add", "POST")
def _draft_add(st: EmulatorState) -> dict[str, Any]:
    articles = _check_articles(st, _json_body().get("articles"))
    media_id, now = _new_id(), int(st.now())
    st.drafts[media_id] = {"media_id": media_id, "articles": articles, "create_time": now, "update_time": now}
    return {"media_id": media_id}


@_api("cgi-bin/draft/get", "POST")
def _draft_get(st: EmulatorState) -> dict[str, Any]:
    return {"news_item": _draft_items(st, _draft(st, _json_body().get("media_id")))}


@_api("cgi-bin/draft/delete", "POST")
def _draft_delete(st: EmulatorState) -> dict[str, Any]:
    del st.drafts[_draft(st, _json_body().get("media_id"))["media_id"]]
    return _ok()


@_api("cgi-bin/draft/update", "POST")
def _draft_update(st: EmulatorState) -> dict[str, Any]:
    body = _json_body()
    draft = _draft(st, body.get("media_id"))
    index = _as_int(body.get("index"))
    if index is None or not 0 <= index < len(draft["articles"]):
        raise WxError(47003, hint="index")
    draft["articles"][index] = _check_article(st, body.get("articles"))
    draft["update_time"] = int(st.now())
    return _ok()


@_api("cgi-bin/draft/count", "GET")
def _draft_count(st: EmulatorState) -> dict[str, Any]:
    return {"total_count": len(st.drafts)}


def _paging(body: dict[str, Any]) -> tuple[int, int, bool]:
    offset, count = _as_int(body.get("offset", 0)), _as_int(body.get("count"))
    if offset is None or offset < 0 or count is None or not 1 <= count <= 20:
        raise WxError(47003, hint="offset/count (count 1-20)")
    return offset, count, bool(body.get("no_content"))


@_api("cgi-bin/draft/batchget", "POST")
def _draft_batchget(st: EmulatorState) -> dict[str, Any]:
    offset, count, no_content = _paging(_json_body())
    drafts = sorted(st.drafts.values(), key=lambda d: d["update_time"], reverse=True)
    items = []
    for d in drafts[offset : offset + count]:
        news = [{k: v for k, v in a.items() if not (no_content and k == "content")} for a in _draft_items(st, d)]
        items.append(
            {
                "media_id": d["media_id"],
                "content": {"news_item": news, "create_time": d["create_time"], "update_time": d["update_time"]},
                "update_time": d["update_time"],
            }
        )
    return {"total_count": len(drafts), "item_count": len(items), "item": items}


def _article_url(st: EmulatorState, msg_data_id: int, idx: int, article_id: str) -> str:
    sn = hashlib.md5(f"{article_id}/{idx}".encode()).hexdigest()
    return f"{_root()}s?{urlencode({'__biz': st.biz, 'mid': msg_data_id, 'idx': idx, 'sn': sn})}"


def _finish_publish(st: EmulatorState, job: dict[str, Any], status: int, fail_idx: list[int]) -> None:
    """Settle a publish job as WeChat does: a success becomes an article and leaves the draft box; push the event."""
    job["publish_status"], job["fail_idx"] = status, fail_idx
    info: dict[str, Any] = {"publish_id": job["publish_id"], "publish_status": status}
    if status == 0:
        draft = st.drafts.pop(job["draft_media_id"], None) or {"articles": job["articles"]}
        article_id = _new_id()
        news = [
            a | {"url": _article_url(st, job["msg_data_id"], i, article_id), "is_deleted": False}
            for i, a in enumerate(draft["articles"], 1)
        ]
        now = int(st.now())
        st.articles[article_id] = {
            "article_id": article_id,
            "msg_data_id": job["msg_data_id"],
            "publish_id": job["publish_id"],
            "news_item": news,
            "create_time": now,
            "update_time": now,
        }
        job["article_id"] = article_id
        job["article_detail"] = {
            "count": len(news),
            "item": [{"idx": i, "article_url": a["url"]} for i, a in enumerate(news, 1)],
        }
        info |= {"article_id": article_id, "article_detail": job["article_detail"]}
    else:
        info["fail_idx"] = fail_idx
    st._push(
        {
            "ToUserName": st.gh_id,
            "FromUserName": make_openid(f"{st.appid}/publisher"),
            "CreateTime": int(st.now()),
            "MsgType": "event",
            "Event": "PUBLISHJOBFINISH",
            "PublishEventInfo": info,
        }
    )


@_api("cgi-bin/freepublish/submit", "POST")
def _publish_submit(st: EmulatorState) -> dict[str, Any]:
    draft = _draft(st, _json_body().get("media_id"))
    publish_id, msg_data_id = str(st.next_publish_id), st.next_msg_data_id
    st.next_publish_id += 1
    st.next_msg_data_id += 1
    outcome = st.publish_outcomes.pop(0) if st.publish_outcomes else {"publish_status": 0, "fail_idx": []}
    job = {
        "publish_id": publish_id,
        "msg_data_id": msg_data_id,
        "draft_media_id": draft["media_id"],
        "articles": draft["articles"],
        "publish_status": 1,
        "fail_idx": [],
        "submitted_at": int(st.now()),
    }
    st.publishes[publish_id] = job
    if outcome["publish_status"] != 1:  # 1 stays "publishing" until /_emulator/finish-publish
        _finish_publish(st, job, outcome["publish_status"], outcome.get("fail_idx") or [])
    return _ok(publish_id=publish_id, msg_data_id=msg_data_id)


@_api("cgi-bin/freepublish/get", "POST")
def _publish_get(st: EmulatorState) -> dict[str, Any]:
    job = st.publishes.get(str(_json_body().get("publish_id")))
    if job is None:
        raise WxError(40007, hint="unknown publish_id")
    status = job["publish_status"]
    article = st.articles.get(job.get("article_id", ""))
    if article and all(a["is_deleted"] for a in article["news_item"]):
        status = 5
    answer: dict[str, Any] = {"publish_id": job["publish_id"], "publish_status": status}
    if job.get("article_id"):
        answer |= {"article_id": job["article_id"], "article_detail": job["article_detail"]}
    return answer | {"fail_idx": job["fail_idx"]}


def _article(st: EmulatorState, article_id: Any) -> dict[str, Any]:
    article = st.articles.get(article_id) if isinstance(article_id, str) else None
    if article is None:
        raise WxError(53600)
    return article


@_api("cgi-bin/freepublish/getarticle", "POST")
def _publish_getarticle(st: EmulatorState) -> dict[str, Any]:
    return {"news_item": _article(st, _json_body().get("article_id"))["news_item"]}


@cache
def _history_day(day: date) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """The synthetic articles of `day` (those the datacube reports) as (msg_data_id, titles), one publish each."""
    titles = tuple(a["title"] for a in datacube_articles(day))
    return ((2247400000 + (day - DATACUBE_EPOCH).days, titles),) if titles else ()


def _history(st: EmulatorState, skip: int, take: int) -> tuple[int, list[dict[str, Any]]]:
    """The account's published history before the tests' own publishes, newest first: (how many, the page)."""
    days = [st.today() - timedelta(days=n) for n in range(1, (st.today() - DATACUBE_EPOCH).days + 1)]
    jobs = [job for day in days for job in _history_day(day)]
    page = []
    for msg_data_id, titles in jobs[skip : skip + take]:
        day = DATACUBE_EPOCH + timedelta(days=msg_data_id - 2247400000)
        at = int(datetime(day.year, day.month, day.day, 12, tzinfo=CHINA_TZ).timestamp())
        article_id = f"history{msg_data_id}"
        news = [
            {
                "title": title,
                "author": "",
                "digest": "",
                "content": f"<p>{html.escape(title)}</p>",
                "url": _article_url(st, msg_data_id, i, article_id),
                "thumb_media_id": "",
                "is_deleted": False,
            }
            for i, title in enumerate(titles, 1)
        ]
        page.append({"article_id": article_id, "msg_data_id": msg_data_id, "news_item": news, "create_time": at})
        page[-1]["update_time"] = at
    return len(jobs), page


@_api("cgi-bin/freepublish/batchget", "POST")
def _publish_batchget(st: EmulatorState) -> dict[str, Any]:
    offset, count, no_content = _paging(_json_body())
    # What was published through the API comes first (newer msg_data_ids), then the synthetic history the datacube
    # reports on, so that statistics rows and this list name the same articles.
    articles = sorted(st.articles.values(), key=lambda a: a["msg_data_id"], reverse=True)
    older, history = _history(st, max(offset - len(articles), 0), count)
    items = []
    for a in (articles[offset : offset + count] + history)[:count]:
        news = [{k: v for k, v in n.items() if not (no_content and k == "content")} for n in a["news_item"]]
        items.append(
            {
                "article_id": a["article_id"],
                "content": {"news_item": news, "create_time": a["create_time"], "update_time": a["update_time"]},
                "update_time": a["update_time"],
            }
        )
    return {"total_count": len(articles) + older, "item_count": len(items), "item": items}


@_api("cgi-bin/freepublish/delete", "POST")
def _publish_delete(st: EmulatorState) -> dict[str, Any]:
    body = _json_body()
    article = _article(st, body.get("article_id"))
    index = _as_int(body.get("index", 0)) or 0  # 0 or absent: every article of the message
    if not 0 <= index <= len(article["news_item"]):
        raise WxError(47003, hint="index")
    for i, news in enumerate(article["news_item"], 1):
        if index in (0, i):
            news["is_deleted"] = True
    article["update_time"] = int(st.now())
    return _ok()


# ---------------------------------------------------------------------------------------------------------------
# Datacube
# ---------------------------------------------------------------------------------------------------------------


def _parse_day(value: Any) -> date:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise WxError(61500)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise WxError(61500) from None


def _datacube_handler(name: str) -> Callable[[EmulatorState], dict[str, Any]]:
    max_span, _, new_style = DATACUBE[name]

    def handler(st: EmulatorState) -> dict[str, Any]:
        body = _json_body()
        begin, end = _parse_day(body.get("begin_date")), _parse_day(body.get("end_date"))
        yesterday = st.today() - timedelta(days=1)
        if begin > end:
            raise WxError(61501, hint="begin_date after end_date")
        if (end - begin).days + 1 > max_span:
            raise WxError(61501, hint=f"at most {max_span} days")
        if end > yesterday:
            raise WxError(61501, hint="end_date must be yesterday at the latest")
        if begin < DATACUBE_EPOCH:
            raise WxError(61501, hint=f"no data before {DATACUBE_EPOCH}")
        rows = [
            row
            for i in range((end - begin).days + 1)
            for row in datacube_rows(name, begin + timedelta(days=i), yesterday=yesterday)
        ]
        return {"list": rows, "is_delay": False} if new_style else {"list": rows}

    return handler


for _name in DATACUBE:
    ROUTES[f"datacube/{_name}"] = _Route(frozenset({"POST"}), _datacube_handler(_name), True)


# ---------------------------------------------------------------------------------------------------------------
# Web page authorisation (OAuth)
# ---------------------------------------------------------------------------------------------------------------

PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem;color:#222}}
button,input,select{{font-size:1rem;padding:.5rem;margin:.25rem 0;width:100%;box-sizing:border-box}}
.primary{{background:#07c160;color:#fff;border:0;border-radius:4px}}.note{{color:#888;font-size:.85rem}}</style>
</head><body>{body}<p class="note">本页由本地微信接口模拟器生成，并非真实的微信页面。</p></body></html>"""


def _page_html(title: str, body: str, status: int = 200) -> Response:
    return Response(PAGE.format(title=html.escape(title), body=body), status=status, mimetype="text/html")


def _error_page(message: str) -> Response:
    return _page_html("授权出错", f"<h2>Oops! Something went wrong:(</h2><p>{html.escape(message)}</p>")


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


@_api("connect/oauth2/authorize", "GET", auth=False)
def _oauth_authorize(st: EmulatorState) -> Response:
    args = request.args
    if args.get("appid") != st.appid:
        return _error_page("appid 参数错误")
    redirect_uri, scope, state = args.get("redirect_uri", ""), args.get("scope", ""), args.get("state", "")
    if urlsplit(redirect_uri).scheme not in ("http", "https") or not urlsplit(redirect_uri).hostname:
        return _error_page("redirect_uri 参数错误")
    if args.get("response_type") != "code":
        return _error_page("response_type 参数错误")
    if scope not in ("snsapi_base", "snsapi_userinfo"):
        return _error_page("scope 参数错误或没有 scope 权限")
    if args.get("deny"):
        return Response(status=302, headers={"Location": _with_query(redirect_uri, {"state": state})})
    openid = args.get("auto_openid") or st.oauth_auto_openid
    if openid:
        user = st.users.get(openid) or st._upsert_user({"openid": openid, "subscribe": 0})
        code = _new_id(24)
        st.oauth_codes[code] = {
            "openid": user["openid"],
            "scope": scope,
            "expires_at": st.now() + OAUTH_CODE_TTL,
            "used": False,
        }
        return Response(status=302, headers={"Location": _with_query(redirect_uri, {"code": code, "state": state})})
    return _oauth_page(st, args)


SIMULATOR_OPENID = "o-simulator-0001"  # `flask wechat send`'s sender: the one a newcomer talked to the account as


def _oauth_page(st: EmulatorState, args: Any) -> Response:
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{html.escape(args.get(k, ""))}">'
        for k in ("appid", "redirect_uri", "response_type", "scope", "state")
    )
    options = "".join(
        f'<option value="{html.escape(o)}"{" selected" if o == SIMULATOR_OPENID else ""}>'
        f"{html.escape(u.get('remark') or u.get('nickname') or o)}"
        f"{'' if u['subscribe'] else '（未关注）'}</option>"
        for o, u in st.users.items()
    )
    action = html.escape(f"{request.script_root}/connect/oauth2/authorize")
    asks = "获取你的昵称、头像" if args.get("scope") == "snsapi_userinfo" else "获取你的身份标识（openid）"
    new_openid = make_openid(secrets.token_hex(8))
    body = f"""<h2>微信授权</h2><p>公众号 {html.escape(st.appid)} 申请{asks}。请选择以哪位用户的身份继续：</p>
<form method="get" action="{action}">{hidden}
<select name="auto_openid">{options}<option value="{new_openid}">一位新用户（{new_openid}）</option></select>
<button class="primary" type="submit">允许</button></form>
<form method="get" action="{action}">{hidden}<input name="auto_openid" placeholder="或输入 openid" required>
<button type="submit">以此 openid 继续</button></form>
<form method="get" action="{action}">{hidden}<input type="hidden" name="deny" value="1">
<button type="submit">拒绝</button></form>"""
    return _page_html("微信授权", body)


@_api("sns/oauth2/access_token", "GET", auth=False)
def _oauth_token(st: EmulatorState) -> dict[str, Any]:
    args = request.args
    st._check_app(args.get("appid"), args.get("secret"))
    if args.get("grant_type") != "authorization_code":
        raise WxError(40002)
    code = args.get("code")
    if not code:
        raise WxError(41008)
    grant = st.oauth_codes.get(code)
    if grant is None or grant["expires_at"] <= st.now():
        raise WxError(40029)
    if grant["used"]:
        raise WxError(40163)
    grant["used"] = True
    return _oauth_grant(st, grant["openid"], grant["scope"])


def _oauth_grant(st: EmulatorState, openid: str, scope: str) -> dict[str, Any]:
    token, refresh, now = _new_id(64), _new_id(64), st.now()
    st.oauth_tokens[token] = {"openid": openid, "scope": scope, "expires_at": now + OAUTH_TOKEN_TTL}
    st.oauth_refresh[refresh] = {"openid": openid, "scope": scope, "expires_at": now + OAUTH_REFRESH_TTL}
    user = st.users[openid]
    answer: dict[str, Any] = {
        "access_token": token,
        "expires_in": OAUTH_TOKEN_TTL,
        "refresh_token": refresh,
        "openid": openid,
        "scope": scope,
    }
    if user.get("is_snapshotuser"):
        answer["is_snapshotuser"] = 1  # present only for Moments snapshot visitors, as WeChat does
    if user.get("unionid") and scope == "snsapi_userinfo":
        answer["unionid"] = user["unionid"]
    return answer


@_api("sns/oauth2/refresh_token", "GET", auth=False)
def _oauth_refresh(st: EmulatorState) -> dict[str, Any]:
    args = request.args
    if args.get("appid") != st.appid:
        raise WxError(40013)
    if args.get("grant_type") != "refresh_token":
        raise WxError(40002)
    grant = st.oauth_refresh.get(args.get("refresh_token", ""))
    if grant is None or grant["expires_at"] <= st.now():
        raise WxError(40030)
    return _oauth_grant(st, grant["openid"], grant["scope"])


def _oauth_session(st: EmulatorState) -> dict[str, Any]:
    token = request.args.get("access_token")
    if not token:
        raise WxError(41001)
    grant = st.oauth_tokens.get(token)
    if grant is None:
        raise WxError(40001)
    if grant["expires_at"] <= st.now():
        raise WxError(42001)
    if request.args.get("openid") != grant["openid"]:
        raise WxError(40003)
    return grant


@_api("sns/userinfo", "GET", auth=False)
def _oauth_userinfo(st: EmulatorState) -> dict[str, Any]:
    grant = _oauth_session(st)
    if grant["scope"] != "snsapi_userinfo":
        raise WxError(48001)
    user = st.users[grant["openid"]]
    info = {
        "openid": user["openid"],
        "nickname": user.get("nickname", "微信用户"),
        "sex": 0,
        "province": "",
        "city": "",
        "country": "",
        "headimgurl": user.get("headimgurl", ""),
        "privilege": [],
    }
    return info | ({"unionid": user["unionid"]} if user.get("unionid") else {})


@_api("sns/auth", "GET", auth=False)
def _oauth_check(st: EmulatorState) -> dict[str, Any]:
    _oauth_session(st)
    return _ok()


# ---------------------------------------------------------------------------------------------------------------
# Public, token-less pages: images, article pages, draft previews (what WeChat's CDN and mp.weixin.qq.com serve)
# ---------------------------------------------------------------------------------------------------------------


def _public(st: EmulatorState, path: str) -> Response | None:
    if path.startswith("mmbiz_img/"):
        item = st.images.get(path.removeprefix("mmbiz_img/"))
        return Response(item["data"], mimetype=item["content_type"]) if item else Response(status=404)
    if path == "s":
        mid, idx = _as_int(request.args.get("mid")), _as_int(request.args.get("idx"))
        for article in st.articles.values():
            if article["msg_data_id"] == mid and idx is not None and 1 <= idx <= len(article["news_item"]):
                return _article_page(article["news_item"][idx - 1])
        return _page_html("内容不存在", "<p>该内容已被发布者删除</p>", 404)
    return None


def _article_page(news: dict[str, Any]) -> Response:
    if news.get("is_deleted"):
        return _page_html("内容已删除", "<p>该内容已被发布者删除</p>")
    author = f"<p class='note'>{html.escape(news['author'])}</p>" if news.get("author") else ""
    return _page_html(news["title"], f"<h1>{html.escape(news['title'])}</h1>{author}{news['content']}")


# ---------------------------------------------------------------------------------------------------------------
# Test hooks under /_emulator/
# ---------------------------------------------------------------------------------------------------------------


def _hook_body() -> dict[str, Any]:
    if request.mimetype.startswith("multipart/") or request.mimetype == "application/x-www-form-urlencoded":
        return dict(request.form)
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("the hook wants a JSON object")
    return body


def _hook(st: EmulatorState, name: str) -> Response:
    if request.method == "GET":
        if name == "state":
            return _json(st._snapshot())
        if name == "calls":
            return _json(st.calls)
        if name.startswith("media/"):  # a media file's public URL (PicUrl of a user's photo message)
            item = st.media.get(name.removeprefix("media/")) or st.materials.get(name.removeprefix("media/"))
            return _bytes(item, item["media_id"]) if item else _json({"error": "no such media"}, 404)
        if name.startswith("draft/"):
            draft = st.drafts.get(name.removeprefix("draft/"))
            idx = _as_int(request.args.get("idx", "1")) or 1
            if draft and 1 <= idx <= len(draft["articles"]):
                return _article_page(draft["articles"][idx - 1])
            return _json({"error": "no such draft"}, 404)
        return _json({"error": f"unknown hook GET {name}"}, 404)
    body = _hook_body()
    if name == "reset":
        st._clear()
    elif name == "users":
        specs = body.get("users") or ([{"openid": o} for o in body["openids"]] if "openids" in body else [body])
        return _json({"users": [dict(st._upsert_user(s)) for s in specs]})
    elif name == "expire-tokens":
        st._expire_tokens(body.get("mode", "invalidate"))
    elif name == "fail":
        st._set_failure(str(body["path"]), int(body["errcode"]), body.get("errmsg"), int(body.get("times", 1)))
    elif name == "today":
        st.today_override = date.fromisoformat(body["date"]) if body.get("date") else None
    elif name == "advance":
        st.clock_offset += float(body["seconds"])
    elif name == "media":
        return _json({"media_id": _hook_media(st, body)})
    elif name == "oauth":
        st.oauth_auto_openid = body.get("auto_openid") or None
    elif name == "templates":
        st.templates = {t["template_id"]: dict(t) for t in body.get("templates", [])}
    elif name == "publish-outcome":
        st.publish_outcomes.extend(
            [{"publish_status": int(body.get("publish_status", 0)), "fail_idx": list(body.get("fail_idx") or [])}]
            * int(body.get("times", 1))
        )
    elif name == "finish-publish":
        job = st.publishes.get(str(body.get("publish_id")))
        if job is None or job["publish_status"] != 1:
            return _json({"error": "no publish job in progress with that publish_id"}, 404)
        _finish_publish(st, job, int(body.get("publish_status", 0)), list(body.get("fail_idx") or []))
    elif name == "delay":
        st._set_delay(str(body["path"]), float(body["seconds"]), int(body.get("times", 1)))
    elif name == "garble":
        st._set_garble(str(body["path"]), body)
    elif name == "clear-calls":
        st.calls.clear()
    elif name == "interaction":
        st._interact(body["openid"], body.get("at"))
    elif name == "qr-limit":
        st.permanent_qr_limit = int(body["permanent"])
    elif name == "user-page-size":
        st.user_page_size = int(body["size"])
    elif name == "user-page-gap":
        st.user_page_gap = int(body["missing"])
    else:
        return _json({"error": f"unknown hook POST {name}"}, 404)
    return _json({"ok": True})


def _hook_media(st: EmulatorState, body: dict[str, Any]) -> str:
    storage = request.files.get("media")
    if storage is not None:
        data, filename = storage.read(), storage.filename
    else:
        data, filename = base64.b64decode(body["content_base64"]), body.get("filename")
    return st._store_media(
        data, body.get("media_id") or None, body.get("type", "image"), filename, body.get("content_type")
    )


# ---------------------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------------------


def _dispatch(st: EmulatorState, path: str) -> Response:
    if path.startswith("_emulator/"):
        with st.lock:
            try:
                return _hook(st, path.removeprefix("_emulator/"))
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                return _json({"error": f"bad hook input: {exc!r}"}, 400)
    with st.lock:
        call = {
            "method": request.method,
            "path": path,
            "query": {k: v for k, v in request.args.items() if k != "access_token"},
            "body": _recorded_body(),
            "at": int(st.now()),
            "errcode": None,
        }
        if request.mimetype.startswith("multipart/"):
            call["files"] = {k: f.filename for k, f in request.files.items()}
        st.calls.append(call)
        st.call_counts[path] = st.call_counts.get(path, 0) + 1
        if delay := st._take_delay(path):  # slept by the view, after the work and outside the lock
            g.emulator_delay = delay
            call |= {"delayed_s": delay, "client_port": request.environ.get("REMOTE_PORT")}
        public = _public(st, path)
        if public is not None:
            return public
        route = ROUTES.get(path)
        if route is None:
            call["errcode"] = -1
            return _json({"errcode": -1, "errmsg": f"emulator: unknown endpoint {path}"}, 404)
        if garble := st._take_garble(path):
            call["garbled"] = garble["status"]
            if garble["work"]:
                _answer(st, path, route, call)  # done, recorded; its answer is what gets lost
            else:
                call["errcode"] = None  # never reached WeChat
            return Response(garble["body"], status=garble["status"], content_type=garble["content_type"])
        return _answer(st, path, route, call)


def _answer(st: EmulatorState, path: str, route: _Route, call: dict[str, Any]) -> Response:
    """WeChat's answer to one call (caller holds the lock)."""
    try:
        if request.method not in route.methods:
            raise WxError(43001 if "GET" in route.methods else 43002)
        failure = st.failures.get(path)
        if failure and failure["times"] > 0:
            failure["times"] -= 1
            if not failure["times"]:
                del st.failures[path]
            raise WxError(failure["errcode"], failure["errmsg"], raw=True)
        if route.auth:
            st._check_token(request.args.get("access_token"))
        st._charge(path)
        result = route.handler(st)
    except WxError as err:
        call["errcode"] = err.errcode
        status = 404 if path == "cgi-bin/showqrcode" else 200  # WeChat answers a bad ticket with a 404
        return _json(err.body(), status)
    if isinstance(result, Response):
        call["errcode"] = 0
        return result
    call["errcode"] = result.get("errcode", 0)
    return _json(result)


def create_emulator(appid: str, secret: str, *, token_ttl: int = 7200) -> Flask:
    """A Flask app answering WeChat's Official Account API for one account; its state is
    ``app.extensions["wechat_emulator"]`` (an :class:`EmulatorState`)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 32 << 20  # above every WeChat size limit, so those answer as WeChat does
    state = EmulatorState(appid, secret, token_ttl)
    app.extensions["wechat_emulator"] = state
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    @app.route("/", defaults={"path": ""}, methods=methods)
    @app.route("/<path:path>", methods=methods)
    def dispatch(path: str) -> Response:
        if not path:
            return _json({"emulator": "WeChat Official Account API", "appid": appid})
        response = _dispatch(state, path)
        if delay := g.get("emulator_delay"):
            time.sleep(delay)
        return response

    return app


class EmulatorServer:
    """The emulator on a real local port, in a background thread (``with EmulatorServer(app) as server: ...``)."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
