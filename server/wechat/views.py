"""GET /wechat verifies the URL; POST /wechat takes messages in plaintext, compatible or safe mode."""

from __future__ import annotations

import logging

from flask import Response, current_app, request

from server.wechat import bp
from server.wechat.msglog import LogUnavailable
from server.wechat.protocol import ProtocolError, check_message, check_signature, check_timestamp, dedupe_key, parse_xml

log = logging.getLogger(__name__)


def _plain(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@bp.errorhandler(ProtocolError)
def _refuse(exc: ProtocolError) -> Response:
    log.info("wechat request refused (%s): %s from %s", exc.status, exc, request.remote_addr)
    return _plain({400: "bad request", 403: "forbidden", 413: "too large"}[exc.status], exc.status)


def _check_url_signature() -> None:
    args = request.args
    check_timestamp(args.get("timestamp"), current_app.config["WECHAT_MAX_CLOCK_SKEW"])
    check_signature(current_app.config["WECHAT_TOKEN"], args.get("signature"), args["timestamp"], args.get("nonce", ""))


@bp.get("/wechat")
def wechat_verify() -> Response:
    """WeChat's server check: echo echostr (in plain text, whatever the encryption mode) if the signature holds."""
    if not request.args.get("echostr"):
        return _plain("bad request", 400)
    _check_url_signature()
    return _plain(request.args["echostr"])


@bp.post("/wechat")
def wechat_receive() -> Response:
    config = current_app.config
    limit = config["WECHAT_MAX_BODY"]
    if (request.content_length or 0) > limit:
        raise ProtocolError(413, "body too large")
    args = request.args
    nonce = args.get("nonce", "")
    encrypted = args.get("encrypt_type", "raw").lower() == "aes"
    if encrypted:
        cipher = current_app.extensions["wechat_cipher"]
        if cipher is None:
            raise ProtocolError(400, "safe mode is not configured (WECHAT_AES_KEY)")
        check_timestamp(args.get("timestamp"), config["WECHAT_MAX_CLOCK_SKEW"])
        if args.get("signature"):  # WeChat sends both; a wrong URL signature is as bad as a wrong msg_signature
            check_signature(config["WECHAT_TOKEN"], args["signature"], args["timestamp"], nonce)
        body = request.stream.read(limit + 1)
        if len(body) > limit:
            raise ProtocolError(413, "body too large")
        envelope = parse_xml(body)
        data = parse_xml(cipher.decrypt(envelope, args.get("msg_signature"), args["timestamp"], nonce))
    else:
        _check_url_signature()
        body = request.stream.read(limit + 1)  # chunked bodies have no Content-Length: bound the read itself
        if len(body) > limit:
            raise ProtocolError(413, "body too large")
        data = parse_xml(body)
    check_message(data)
    key = dedupe_key(data)
    try:
        # The signature (checked above in both modes) rides along: one signed URL carries one delivery.
        reply = current_app.extensions["wechat_gateway"].handle(data, key, signature=args.get("signature", ""))
    except LogUnavailable:
        # Not recorded, so not acknowledged: WeChat retries, and nothing is lost if the database is back by then.
        log.error("message log unavailable for %s; asking WeChat to retry", key)
        return _plain("temporarily unavailable", 503)
    if encrypted:
        reply = current_app.extensions["wechat_cipher"].encrypt(reply, nonce)
    return Response(reply, mimetype="text/plain" if reply == "success" else "application/xml")
