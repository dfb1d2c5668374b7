"""The one WeChat API client: wechatpy's, with every host sent to WECHAT_API_BASE and a shared, locked token."""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from flask import Flask, current_app
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session.redisstorage import RedisStorage

from server.config import REAL_WECHAT_API

log = logging.getLogger(__name__)

TOKEN_ERRORS = {40001, 40014, 42001}  # invalid credential, invalid token, expired token
# Template messages that no retry will deliver: bad openid or template, the user unfollowed or refused, data invalid.
PERMANENT_TEMPLATE_ERRORS = {40003, 40037, 43004, 43101, 47001, 47003}
# A customer-service message refused with these may go through at another try: WeChat busy, a token that kept failing.
RETRYABLE_CUSTOM_ERRORS = {-1} | TOKEN_ERRORS
# What a WeChat code means, for whoever reads a failed call (a console page, a notice list, the sync page): the one
# table, read through describe(); the code is shown with it, for support tickets.
ERROR_TEXT = {
    -1: "微信系统繁忙",
    40001: "access_token 无效或已过期，请检查公众号 AppID/AppSecret 配置",
    42001: "access_token 无效或已过期",
    40003: "openid 无效：不是本公众号的粉丝",
    40004: "不合法的媒体文件类型",
    40005: "文件类型不合法：微信不接受这种图片格式",
    40006: "文件大小不合法",
    40007: "素材 media_id 无效：素材不存在或已过期（菜单和图文须用永久素材）",
    40009: "图片大小不合法：超出微信的限制",
    40012: "缩略图大小不合法：超出微信的限制（64 KB）",
    40029: "网页授权 code 无效或已使用",
    40037: "模板 ID 无效：请核对公众平台里的模板",
    40053: "微信不接受这个场景值",
    40092: "备注名不符合微信的要求：最长 30 个字节（约 10 个汉字）",
    41005: "缺少图片文件数据",
    43004: "用户未关注公众号",
    43101: "用户拒收：未订阅此类消息",
    44001: "图片文件为空",
    45001: "文件大小超过微信的限制",
    45002: "正文过长",
    45003: "标题过长",
    45009: "今天调用微信接口的次数已用完，请明天再试",
    45011: "接口调用过于频繁，请稍后再试",
    45015: "对方超过 48 小时未给公众号发消息（或已取消关注），客服消息发不出去",
    45029: "永久二维码数量已达微信上限（10 万个），无法再生成",
    45047: "客服消息已达条数上限，需对方回复后才能再发",
    45056: "公众号标签数量已达上限",
    46003: "公众号当前没有设置菜单",
    47001: "提交的数据格式有误",
    47003: "模板参数不正确",
    48001: "公众号没有此接口的权限（需微信认证）",
    53600: "已发布文章 article_id 无效",
    61500: "日期格式不正确",
    61501: "微信不接受这个日期范围",
    # menu/create and addconditional
    40016: "一级菜单个数不合法（须为 1–3 个）",
    40017: "一级菜单类型不合法",
    40018: "一级菜单名称长度不合法（不超过 16 字节）",
    40019: "一级菜单 key 长度不合法（不超过 128 字节）",
    40020: "一级菜单网页链接长度不合法",
    40022: "子菜单级数不合法",
    40023: "子菜单个数不合法（不超过 5 个）",
    40024: "子菜单类型不合法",
    40025: "子菜单名称长度不合法（不超过 60 字节）",
    40026: "子菜单 key 长度不合法",
    40027: "子菜单网页链接长度不合法",
    40054: "子菜单网页链接域名不合法",
    40055: "一级菜单网页链接域名不合法",
    65301: "微信上不存在该个性化菜单",
    65303: "还没有默认菜单，不能发布个性化菜单，请先发布默认菜单",
    65304: "个性化菜单的匹配规则为空",
    65316: "菜单中的网页链接指向的域名过多（最多 3 个）",
}
NETWORK_TEXT = "无法连接微信服务器，请稍后再试"
_ERRMSG_NOISE = re.compile(r"\s*(?:rid:\s*\S+|hint:\s*\[[^\]]*\])")  # WeChat's per-request ids, no use to a reader
TOKEN_MARGIN = 300  # refresh this long before WeChat's expiry, so no call carries a dying token
MEDIA_TYPES = ("image/", "audio/", "video/", "application/octet-stream")  # what media downloads answer with
TICKET_KEY = "jsapi_ticket_shared"  # not wechatpy's own key: its get_jsapi_ticket caches without a lock


_SECRET_PARAMS = re.compile(r"(?<![A-Za-z_])((?:access_token|secret|code|ticket)=)[^&\s'\"]+")  # not errcode=


def redact(text: str) -> str:
    """Text that may hold a WeChat URL, without its credentials (token, secret, OAuth code, ticket)."""
    return _SECRET_PARAMS.sub(r"\1***", text)


class UnreadableAnswer(WeChatClientException):
    """An answer that is not JSON (a proxy's page, a body cut off): errcode -1, retried like "system busy", but the
    call may have done its work - a caller for which a second call is not harmless must tell it from WeChat's -1."""


class ForeignHostError(RuntimeError):
    """A request would have left for a host other than WECHAT_API_BASE."""


class RedirectingSession(requests.Session):
    """wechatpy hard-codes api/mp/open.weixin.qq.com in places; send every one of them to our base URL."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.rewrite = base != REAL_WECHAT_API

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        url = self.route(url.decode() if isinstance(url, bytes) else url)
        try:
            return super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            # Its text names the URL, access_token included, and every log line and Celery retry prints it; so would
            # the urllib3 errors chained behind it.
            exc.args = (redact(str(exc)),)
            exc.__cause__, exc.__suppress_context__ = None, True
            raise

    def route(self, url: str) -> str:
        if not self.rewrite:
            return url
        if url.startswith(self.base):
            return url
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == "qq.com" or host.endswith(".qq.com"):
            return self.base + parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
        raise ForeignHostError(f"refusing to send a WeChat API call to {host}")


class SharedTokenClient(WeChatClient):
    """Token kept in Redis for all processes; one process refreshes it under a lock, through stable_token."""

    def __init__(self, appid: str, secret: str, *, base: str, redis: Any, timeout: float = 10) -> None:
        super().__init__(
            appid, secret, session=RedisStorage(redis, prefix="wechat"), timeout=timeout, auto_retry=False
        )  # wechatpy's own retry loops without bound and refreshes unlocked
        self._redis = redis
        self._http = RedirectingSession(base)
        self.API_BASE_URL = base + "cgi-bin/"
        self.api_base = base
        self._local_lock = threading.Lock()

    @property
    def access_token(self) -> str:
        token = self.session.get(self.access_token_key)
        if token:
            return token
        return self.refresh_token()

    def fetch_access_token(self) -> dict[str, Any]:  # wechatpy's hook, kept for callers that use it
        self.refresh_token()
        return {"access_token": self.session.get(self.access_token_key)}

    def refresh_token(self, stale: str | None = None) -> str:
        """Fetch a token once for every process: the lock holder fetches, the others wait and reuse it."""
        lock = self._redis.lock(f"wechat:{self.appid}:token-lock", timeout=20, blocking_timeout=15)
        with self._local_lock, lock:
            token = self.session.get(self.access_token_key)
            if token and token != stale:
                return token  # someone refreshed while we waited
            result = self._stable_token(force_refresh=stale is not None)
            token, expires_in = result["access_token"], int(result.get("expires_in", 7200))
            self.session.set(self.access_token_key, token, max(expires_in - TOKEN_MARGIN, 60))
            self.expires_at = int(time.time()) + expires_in
            log.info("wechat access token refreshed (force=%s)", stale is not None)
            return token

    def jsapi_ticket(self) -> str:
        """The JS-SDK ticket, shared like the token: getticket has a small daily quota, so one process fetches."""
        key = f"{self.appid}_{TICKET_KEY}"
        if ticket := self.session.get(key):
            return ticket
        lock = self._redis.lock(f"wechat:{self.appid}:ticket-lock", timeout=20, blocking_timeout=15)
        with lock:
            if ticket := self.session.get(key):
                return ticket  # fetched while we waited
            result = self.jsapi.get_ticket("jsapi")  # through _request: a stale token is refreshed and retried
            ticket, expires_in = result["ticket"], int(result.get("expires_in", 7200))
            self.session.set(key, ticket, max(expires_in - TOKEN_MARGIN, 60))
            log.info("wechat jsapi ticket fetched")
            return ticket

    def _stable_token(self, *, force_refresh: bool) -> dict[str, Any]:
        body = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self.secret,
            "force_refresh": force_refresh,
        }
        res = self._http.post(self.api_base + "cgi-bin/stable_token", json=body, timeout=self.timeout)
        return self._json_answer(res)

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        retry_kwargs = dict(kwargs)
        if isinstance(kwargs.get("params"), dict):
            retry_kwargs["params"] = {k: v for k, v in kwargs["params"].items() if k != "access_token"}
            kwargs["params"] = dict(kwargs["params"])
        try:
            return self._send(method, url_or_endpoint, **kwargs)
        except WeChatClientException as exc:
            if exc.errcode not in TOKEN_ERRORS or "access_token" in retry_kwargs.get("params", {}):
                raise
            used = self._token_in(exc)
            log.info("wechat answered %s; refreshing the token and retrying once", exc.errcode)
            self.refresh_token(stale=used or self.session.get(self.access_token_key))
            return self._send(method, url_or_endpoint, **retry_kwargs)

    def _send(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        try:
            return super()._request(method, url_or_endpoint, **kwargs)
        except WeChatClientException as exc:
            if exc.errcode is not None:
                raise
            # wechatpy's raise_for_status() on an HTTP error status: the HTTPError chained to it names the URL, token
            # and all, in every traceback a log or Celery prints. errcode stays None: not WeChat's answer.
            status = getattr(exc.response, "status_code", None)
            raise WeChatClientException(
                None, f"HTTP {status}", client=self, request=exc.request, response=exc.response
            ) from None

    def _decode_result(self, res: requests.Response) -> Any:  # type: ignore[override]
        """wechatpy hands back the raw response when the body is not JSON: right for a media download, but a proxy's
        error page or a cut-off body would read as success (a notice marked sent that never left). Those become
        UnreadableAnswer, a "system busy" (-1) that every caller already retries."""
        result = super()._decode_result(res)
        if isinstance(result, requests.Response):
            kind = result.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not kind.startswith(MEDIA_TYPES):
                path = urlsplit(res.url).path
                log.warning("wechat answered %s with a body that is not JSON (%s)", path, kind or "no type")
                raise UnreadableAnswer(-1, "微信返回了无法解析的应答", client=self, response=res)
        return result

    def _json_answer(self, res: requests.Response) -> dict[str, Any]:
        """A token or OAuth answer: its JSON, or WeChatClientException with WeChat's code, or -1 ("system busy",
        which callers retry) for a proxy's error page. Not raise_for_status(): its text names the URL, secret and
        all."""
        try:
            result = res.json() if res.ok else None
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise WeChatClientException(-1, f"WeChat answered HTTP {res.status_code}", client=self, response=res)
        if result.get("errcode"):
            raise WeChatClientException(result["errcode"], result.get("errmsg"), client=self, response=res)
        return result

    @staticmethod
    def _token_in(exc: WeChatClientException) -> str | None:
        request = getattr(exc, "request", None)
        url = getattr(request, "url", None) or ""
        return (parse_qs(urlsplit(url).query).get("access_token") or [None])[0]

    # Calls wechatpy makes with module-level `requests` (outside our session) are redone here.
    def show_qrcode(self, ticket: str) -> requests.Response:
        return self._http.get(
            "https://mp.weixin.qq.com/cgi-bin/showqrcode", params={"ticket": ticket}, timeout=self.timeout
        )

    def raw_post(self, endpoint: str, data: dict[str, Any]) -> dict[str, Any]:
        """POST JSON as given (wechatpy drops fields of draft/add and others); endpoint relative to the base."""
        return self.post(self.api_base + endpoint, data=data)

    def oauth_authorize_url(self, redirect_uri: str, state: str, scope: str = "snsapi_base") -> str:
        query = urlencode(
            {"appid": self.appid, "redirect_uri": redirect_uri, "response_type": "code", "scope": scope, "state": state}
        )
        base = "https://open.weixin.qq.com/" if not self._http.rewrite else self.api_base
        return f"{base}connect/oauth2/authorize?{query}#wechat_redirect"

    def oauth_exchange(self, code: str) -> dict[str, Any]:
        """code → {openid, scope, is_snapshotuser?}; raises WeChatClientException (40029) on a bad code."""
        res = self._http.get(
            self.api_base + "sns/oauth2/access_token",
            timeout=self.timeout,
            params={"appid": self.appid, "secret": self.secret, "code": code, "grant_type": "authorization_code"},
        )
        return self._json_answer(res)


def init_client(app: Flask) -> None:
    app.extensions["wechat_client"] = None  # built on first use: start-up makes no network call


def get_client() -> SharedTokenClient:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    client = app.extensions.get("wechat_client")
    if client is None:
        client = SharedTokenClient(
            app.config["WECHAT_APPID"],
            app.config["WECHAT_SECRET"],
            base=app.config["WECHAT_API_BASE"],
            redis=app.extensions["redis"],
        )
        app.extensions["wechat_client"] = client
    return client


def send_template(body: dict[str, Any]) -> tuple[str | None, bool]:
    """Send one template message. Returns (None, False) when WeChat took it, else the error's text and whether
    retrying is futile. Never raises: every caller keeps a row per attempt and must record the failure."""
    try:
        get_client().raw_post("cgi-bin/message/template/send", body)
    except WeChatClientException as exc:
        return describe(exc), exc.errcode in PERMANENT_TEMPLATE_ERRORS
    except (requests.RequestException, OSError) as exc:
        return describe(exc), False
    except Exception as exc:  # the token's Redis lock, say: counted like any failed attempt, so it cannot loop
        log.exception("template message %s: unexpected error", body.get("client_msg_id"))
        return describe(exc), False
    return None, False


def send_text(openid: str, content: str) -> tuple[str | None, bool]:
    """Send one customer-service text message (WeChat takes them within 48 hours of the user's last message to the
    account). Returns (None, False) when WeChat took it, else the error's text and whether another try may succeed.
    Never raises. An answer that could not be read is not retried: the message may have gone out."""
    try:
        get_client().message.send_text(openid, content)
    except UnreadableAnswer as exc:
        return describe(exc), False
    except WeChatClientException as exc:
        return describe(exc), exc.errcode is None or exc.errcode in RETRYABLE_CUSTOM_ERRORS
    except requests.ConnectionError as exc:  # WeChat not reached (a connect timeout is one too)
        return describe(exc), True
    except (requests.RequestException, OSError) as exc:  # a read timeout: the message may have gone out
        return describe(exc), False
    except Exception as exc:  # the token's Redis lock, say: not sent, and not tried again in a loop
        log.exception("customer-service message: unexpected error")
        return describe(exc), False
    return None, False


def _plain(errmsg: str | None) -> str:
    """WeChat's errmsg without its request id and hint: no use to a reader."""
    return _ERRMSG_NOISE.sub("", str(errmsg or "")).strip()


def describe(exc: BaseException, context: str = "") -> str:
    """A failed WeChat call in Chinese, for whoever reads it; `context` goes first ("菜单发布失败：").

    A code of WeChat's reads `40003 openid 无效：…` (ERROR_TEXT), or the code and WeChat's own text without its
    request id when the table has no entry; an HTTP error status (errcode None) and a failed connection say so."""
    if isinstance(exc, WeChatClientException):
        detail = _plain(exc.errmsg)
        if exc.errcode is None:  # an HTTP error status from WeChat's side (or a proxy's), not one of its codes
            return f"{context}微信服务器暂时出错（{detail or 'HTTP 错误'}），请稍后再试"
        text = ERROR_TEXT.get(exc.errcode)
        if text is None:
            return f"{context}{exc.errcode} {detail or '未知错误'}"
        if exc.errcode == -1 and detail and detail != "system error":  # ours (a proxy's page, an HTTP status): keep it
            text += f"（{detail}）"
        return f"{context}{exc.errcode} {text}"
    if isinstance(exc, (requests.RequestException, OSError)):
        return context + NETWORK_TEXT
    return f"{context}意外错误：{type(exc).__name__}"  # a bug or a shape nobody expected: the logs say more
