"""The WeChat callback protocol: signatures, safe XML parsing, dedupe keys, reply rendering and encryption."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import xml.etree.ElementTree as ET
from typing import Any

from wechatpy.crypto import WeChatCrypto
from wechatpy.crypto.base import WeChatCipher
from wechatpy.messages import BaseMessage
from wechatpy.replies import BaseReply, create_reply

REQUIRED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
# Fields the handlers read as text: WeChat sends each once, as text; nested or repeated, the message is forged.
TEXT_FIELDS = (
    *REQUIRED_FIELDS,
    *("MsgId", "MsgID", "Event", "EventKey", "Content", "MediaId", "PicUrl", "Format", "Recognition"),
    *("ThumbMediaId", "Location_X", "Location_Y", "Scale", "Label", "Latitude", "Longitude", "Precision", "Ticket"),
    *("Title", "Description", "Url", "MenuId", "Status"),
)
# Fields without which a message of that type cannot be handled (one of each group); WeChat always sends them, never
# blank. An image names its MediaId, or only a PicUrl from old clients: that one is recorded and asked for again.
TYPE_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "image": (("MediaId", "PicUrl"),),
    "voice": (("MediaId",),),
    "video": (("MediaId",),),
    "shortvideo": (("MediaId",),),
    "location": (("Location_X",), ("Location_Y",)),
}
MAX_DEPTH = 6  # WeChat's deepest, SendPicsInfo/PicList/item/PicMd5Sum, is 4 below <xml>
_DIGITS = re.compile(r"[0-9]+")
# Any DTD means entities (XXE, billion laughs); WeChat never sends one, so refuse before a parser sees it.
_DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
# Where "<!" is text, not markup: CDATA sections (every text WeChat sends), comments and processing instructions,
# each ending where a parser ends it. A text saying "<!DOCTYPE html>" is a citizen's message, not a DTD.
_NOT_MARKUP = re.compile(r"<!\[CDATA\[.*?\]\]>|<!--.*?-->|<\?.*?\?>", re.DOTALL)
# A str is parsed as what it is, whatever the prolog says: a document declaring another encoding is not WeChat's.
_DECLARED_ENCODING = re.compile(r"\ufeff?<\?xml\s[^>]*?\bencoding\s*=\s*[\"']([^\"']*)[\"']")
# Characters XML 1.0 cannot hold, even in CDATA: a reply carrying one is dropped by WeChat's parser. A vertical tab
# (a word processor's line break, pasted into a rule) or a form feed becomes a line break, the rest go.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
EMPTY_REPLY = "success"


class ProtocolError(Exception):
    """A request WeChat would never send; `status` is the HTTP answer (400, 403 or 413)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def signature(token: str, *parts: str) -> str:
    return hashlib.sha1("".join(sorted([token, *parts])).encode()).hexdigest()


def check_signature(token: str, given: str | None, *parts: str) -> None:
    if not given or not given.isascii() or not hmac.compare_digest(signature(token, *parts), given.lower()):
        raise ProtocolError(403, "bad signature")


def check_timestamp(timestamp: str | None, max_skew: int, now: float | None = None) -> None:
    if not _digits(timestamp, 12):
        raise ProtocolError(403, "bad timestamp")
    if abs((now or time.time()) - int(timestamp)) > max_skew:
        raise ProtocolError(403, "stale timestamp")  # a replay of an old signed request


def _digits(value: Any, most: int) -> bool:
    """ASCII digits only (str.isdigit() takes "²", which int() refuses), at most `most` of them."""
    return isinstance(value, str) and 0 < len(value) <= most and _DIGITS.fullmatch(value) is not None


def _element_value(element: ET.Element, depth: int = 0) -> Any:
    """The shape xmltodict gives (wechatpy's message classes expect it): text, None, or a dict of children."""
    children = list(element)
    if not children:
        return element.text
    if depth >= MAX_DEPTH:
        raise ProtocolError(400, "XML nested too deep")
    value: dict[str, Any] = {}
    for child in children:
        item = _element_value(child, depth + 1)
        if child.tag in value:
            previous = value[child.tag]  # text, None or a dict: a list is only ever one made here
            if isinstance(previous, list):
                previous.append(item)  # in place: a copy per sibling made 16,000 of them cost 0.2 s of CPU
            else:
                value[child.tag] = [previous, item]
        else:
            value[child.tag] = item
    return value


def parse_xml(body: bytes | str) -> dict[str, Any]:
    """Parse a WeChat XML document safely into a dict, refusing DTDs, non-UTF-8 and anything not <xml>."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError:
        raise ProtocolError(400, "body is not UTF-8") from None
    if _DTD.search(text) and _DTD.search(_NOT_MARKUP.sub("", text)):
        raise ProtocolError(400, "DTD refused")
    if (declared := _DECLARED_ENCODING.match(text)) and declared.group(1).lower() not in ("utf-8", "utf8"):
        raise ProtocolError(400, "declared encoding is not UTF-8")
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        raise ProtocolError(400, "malformed XML") from None
    if root.tag != "xml":
        raise ProtocolError(400, "root element is not <xml>")
    data = _element_value(root)
    if not isinstance(data, dict):
        raise ProtocolError(400, "empty <xml>")
    return data


def check_message(data: dict[str, Any]) -> None:
    for name in TEXT_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise ProtocolError(400, f"{name} is not text")
    for group in (*((name,) for name in REQUIRED_FIELDS), *TYPE_FIELDS.get(str(data.get("MsgType")).lower(), ())):
        if not any((data.get(name) or "").strip() for name in group):
            raise ProtocolError(400, f"missing {' or '.join(group)}")
    if len(data["FromUserName"]) > 64 or len(data["ToUserName"]) > 64 or len(data["MsgType"]) > 32:
        raise ProtocolError(400, "field too long")
    if not _digits(data["CreateTime"], 10):  # seconds: ten digits last until the year 2286
        raise ProtocolError(400, "bad CreateTime")
    if data.get("MsgId") is not None and not _digits(data["MsgId"], 24):
        raise ProtocolError(400, "bad MsgId")


def dedupe_key(data: dict[str, Any]) -> str:
    """A retry is the same delivery again, field for field. Messages are known by MsgId (WeChat's rule) with a digest
    of the whole message, events (no MsgId) by a digest of every field: FromUserName, CreateTime, Event, EventKey and
    the rest. So another message that reuses a MsgId (sample XML does) is not taken for a retry of the first, and two
    events of a kind in one second (two cards received, two jobs finished, two subscription prompts) count apart.
    """
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha1(canonical.encode()).hexdigest()
    if data.get("MsgId"):
        return f"m:{data['MsgId']}:{digest[:16]}"  # at most 24 digits: 43 characters
    return "e:" + digest


def render_reply(reply: Any, message: BaseMessage) -> str:
    """Passive reply XML addressed back to the sender, or "success" for no reply."""
    if not reply:
        return EMPTY_REPLY
    # wechatpy puts each value in one CDATA section: a "]]>" in it (a place name a citizen typed, echoed back; an
    # article title) would end the section early. Each is written as "]]]]><![CDATA[>", the same text in two sections.
    return create_reply(_mark_cdata_ends(reply), message, render=True).replace(_CDATA_END, "]]]]><![CDATA[>")


_CDATA_END = "\x00cdata-end\x00"  # no XML text holds a NUL, so no value can contain the marker


def _mark_cdata_ends(value: Any) -> Any:
    """Each text made XML-safe (see _NOT_XML) with its CDATA terminators marked."""
    if isinstance(value, str):
        if _NOT_XML.search(value):
            value = _NOT_XML.sub(lambda m: "\n" if m.group() in "\x0b\x0c" else "", value)
        return value.replace("]]>", _CDATA_END)
    if isinstance(value, list):
        return [_mark_cdata_ends(v) for v in value]
    if isinstance(value, dict):
        return {k: _mark_cdata_ends(v) for k, v in value.items()}
    if isinstance(value, BaseReply):
        for name, item in list(value._data.items()):
            value._data[name] = _mark_cdata_ends(item)
    return value


class Cipher:
    """Safe/compatible mode: msg_signature over the Encrypt field, AES-CBC with the account's EncodingAESKey."""

    def __init__(self, token: str, aes_key: str, appid: str) -> None:
        self._crypto = WeChatCrypto(token, aes_key, appid)
        self._cipher = WeChatCipher(self._crypto.key)
        self._appid = appid.encode()
        self.token = token

    def decrypt(self, envelope: dict[str, Any], msg_signature: str | None, timestamp: str, nonce: str) -> str:
        encrypted = envelope.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise ProtocolError(400, "missing Encrypt")
        check_signature(self.token, msg_signature, timestamp, nonce, encrypted)
        # The frame is checked whole (wechatpy reads the padding and the length without checking either): 16 random
        # bytes, the XML's length (4 bytes, big-endian), the XML, the appid, then PKCS#7 padding of 1 to 32 bytes.
        try:
            plain = self._cipher.decrypt(base64.b64decode(encrypted, validate=True))
        except (binascii.Error, ValueError):  # not base64, or not whole AES blocks
            raise ProtocolError(400, "cannot decrypt") from None
        pad = plain[-1] if plain else 0
        if not 1 <= pad <= 32 or plain[-pad:] != bytes([pad]) * pad or len(plain) < 20 + pad:
            raise ProtocolError(400, "bad padding")
        content = plain[16:-pad]
        length = int.from_bytes(content[:4], "big")
        if length > len(content) - 4:
            raise ProtocolError(400, "bad length")
        if content[4 + length :] != self._appid:
            raise ProtocolError(403, "message for another account")
        try:
            return content[4 : 4 + length].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(400, "not UTF-8 inside") from None

    def encrypt(self, reply_xml: str, nonce: str) -> str:
        if reply_xml == EMPTY_REPLY:
            return reply_xml  # WeChat accepts a bare "success" in every mode
        return self._crypto.encrypt_message(reply_xml, nonce, str(int(time.time())))
