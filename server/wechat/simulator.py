"""Build correctly signed (optionally encrypted) WeChat callback requests, as WeChat's servers would."""

from __future__ import annotations

import itertools
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from wechatpy.crypto import WeChatCrypto

from server.wechat.protocol import parse_xml, signature

_msg_ids = itertools.count(int(time.time() * 1000) * 1000)


@dataclass(frozen=True)
class Account:
    token: str
    appid: str
    aes_key: str = ""
    original_id: str = "gh_demo00000000"


def message_xml(
    openid: str,
    msg_type: str,
    fields: dict[str, Any],
    *,
    to: str,
    create_time: int | None = None,
    msg_id: int | None = None,
) -> str:
    """A message as WeChat sends it; events get no MsgId."""
    create_time = create_time or int(time.time())
    parts = [
        f"<ToUserName><![CDATA[{to}]]></ToUserName>",
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>",
        f"<CreateTime>{create_time}</CreateTime>",
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>",
    ]
    for name, value in fields.items():
        parts.append(
            f"<{name}>{value}</{name}>" if isinstance(value, int | float) else f"<{name}><![CDATA[{value}]]></{name}>"
        )
    if msg_type != "event":
        parts.append(f"<MsgId>{msg_id or next(_msg_ids)}</MsgId>")
    return "<xml>" + "".join(parts) + "</xml>"


def event_fields(event: str, key: str | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"Event": event}
    if key is not None:
        fields["EventKey"] = key
    return fields


def signed_request(
    account: Account, xml: str, *, aes: bool = False, timestamp: int | None = None, nonce: str | None = None
) -> tuple[dict[str, str], bytes]:
    """Query parameters and body for POST /wechat, exactly as WeChat signs them."""
    ts, nonce = str(timestamp or int(time.time())), nonce or secrets.token_hex(8)
    params = {
        "signature": signature(account.token, ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
        "openid": _xml_field(xml, "FromUserName"),
    }
    if not aes:
        return params, xml.encode()
    crypto = WeChatCrypto(account.token, account.aes_key, account.appid)
    envelope = parse_xml(crypto.encrypt_message(xml, nonce, ts))
    encrypted = envelope["Encrypt"]
    params.update(encrypt_type="aes", msg_signature=signature(account.token, ts, nonce, encrypted))
    body = (
        f"<xml><ToUserName><![CDATA[{escape(_xml_field(xml, 'ToUserName'))}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    )
    return params, body.encode()


def decode_reply(account: Account, body: str, *, aes: bool = False) -> dict[str, Any] | None:
    """The reply's fields, decrypted when needed; None for "success"/empty."""
    if not body or body == "success":
        return None
    data = parse_xml(body)
    if aes:
        crypto = WeChatCrypto(account.token, account.aes_key, account.appid)
        data = parse_xml(crypto.decrypt_message(body, data["MsgSignature"], data["TimeStamp"], data["Nonce"]))
    return data


def _xml_field(xml: str, name: str) -> str:
    """A field read without parsing, so that hostile test documents can be signed and sent too."""
    found = re.search(rf"<{name}>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</{name}>", xml, re.S)
    return found.group(1) if found else ""
