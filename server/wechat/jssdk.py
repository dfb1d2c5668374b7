"""WeChat JS-SDK: the signed config a page passes to wx.config before it may call wx.scanQRCode and the like."""

from __future__ import annotations

import hashlib
import secrets
import time

from server.wechat.client import get_client


def signature(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """sha1 of the fields sorted by name and joined as a query string, unescaped (WeChat's JS-SDK appendix 1)."""
    fields = {"jsapi_ticket": ticket, "noncestr": noncestr, "timestamp": timestamp, "url": url.split("#")[0]}
    return hashlib.sha1("&".join(f"{k}={v}" for k, v in sorted(fields.items())).encode()).hexdigest()


def jsapi_config(url: str) -> dict[str, str | int]:
    """wx.config's fields for the page at `url`; raises what the WeChat client raises when the ticket fails."""
    client = get_client()
    noncestr, timestamp = secrets.token_urlsafe(12), int(time.time())
    return {
        "appId": client.appid,
        "timestamp": timestamp,
        "nonceStr": noncestr,
        "signature": signature(client.jsapi_ticket(), noncestr, timestamp, url),
    }
