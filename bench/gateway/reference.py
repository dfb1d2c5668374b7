"""The references: what Flask + wechatpy cost alone, and with the least storage the issue asks for.

`app` checks the signature, decrypts in safe mode, parses the message with wechatpy and answers the bench's keyword
reply, encrypted when the request was: no database, no Redis. `stored` does the same plus one Redis round trip
(the dedupe claim, SET NX) and one durable row (an autocommit INSERT on a per-thread connection) per message, with
no router, rules, retries, pooling or error handling. Ours ÷ these is what the product's own work costs.
"""

import os
import threading

import psycopg
import redis
from flask import Flask, Response, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

TOKEN = os.environ["WECHAT_TOKEN"]
REPLY = os.environ["BENCH_REPLY"]
TABLE = "bench_reference_log"  # made (and emptied) by the bench
crypto = WeChatCrypto(TOKEN, os.environ["WECHAT_AES_KEY"], os.environ["WECHAT_APPID"])


def _answer(store: bool) -> Response:
    args = request.args
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    aes = args.get("encrypt_type") == "aes"
    try:
        if aes:
            body = crypto.decrypt_message(request.get_data(), args.get("msg_signature", ""), timestamp, nonce)
        else:
            check_signature(TOKEN, args.get("signature", ""), timestamp, nonce)
            body = request.get_data()
    except InvalidSignatureException:
        return Response("forbidden", status=403)
    message = parse_message(body)
    if store:
        _store(f"{message.source}:{message.id}", body)
    reply = TextReply(content=REPLY, message=message).render()
    if aes:
        reply = crypto.encrypt_message(reply, nonce, timestamp)
    return Response(reply, mimetype="application/xml")


app = Flask(__name__)
app.add_url_rule("/", "ready", lambda: "ok")
app.add_url_rule("/wechat", "wechat", lambda: _answer(False), methods=["POST"])

stored = Flask(__name__)
stored.add_url_rule("/", "ready", lambda: "ok")
stored.add_url_rule("/wechat", "wechat", lambda: _answer(True), methods=["POST"])

_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
_local = threading.local()


def _store(key: str, body: str | bytes) -> None:
    if not _redis.set(f"wx:ref:{key}", b"", nx=True, ex=120):
        return
    conn = getattr(_local, "conn", None)
    if conn is None:  # gunicorn's threads start after the fork: each has its own
        dsn = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        conn = _local.conn = psycopg.connect(dsn, autocommit=True)
    text = body.decode() if isinstance(body, bytes) else body
    conn.execute(f"INSERT INTO {TABLE} (dedupe_key, body) VALUES (%s, %s) ON CONFLICT DO NOTHING", (key, text))
