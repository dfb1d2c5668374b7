"""Who the citizen is: WeChat OAuth (snsapi_base) exchanged server-side; the openid lives in the signed session."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import requests
from flask import abort, g, redirect, render_template, request, session, url_for
from wechatpy.exceptions import WeChatClientException

from server.citizen import bp, wants_json
from server.redirects import local_path
from server.wechat.client import get_client

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


SNAPSHOT_RECHECK = 60  # seconds a Moments snapshot identity is kept before WeChat is asked again


def citizen_required(view: F) -> F:
    """Sets g.openid (and g.snapshot for Moments snapshot visitors); without one, goes through WeChat OAuth."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        openid = session.get("openid")
        if openid and session.get("snapshot") and request.method == "GET" and not wants_json():
            # Page loads only: a page's own background requests (the places poll) cannot follow a login redirect.
            # A Moments snapshot identity is asked again after a minute: the same phone may since have opened the
            # full page from the account (a minute, so that the answer itself cannot send the page round again).
            if time.time() - session.get("snapshot_at", 0) > SNAPSHOT_RECHECK:
                openid = None
        if not openid:
            if request.method != "GET":
                abort(401)  # a form posted without an identity: the page must be reopened from WeChat
            state = secrets.token_urlsafe(16)
            session["oauth_state"], session["oauth_next"] = state, request.full_path.rstrip("?")
            callback = url_for("citizen.oauth_callback", _external=True)
            return redirect(get_client().oauth_authorize_url(callback, state))
        g.openid, g.snapshot = openid, bool(session.get("snapshot"))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@bp.get("/oauth/callback")
def oauth_callback():  # type: ignore[no-untyped-def]
    code, state = request.args.get("code"), request.args.get("state")
    expected = session.pop("oauth_state", None)
    if not code:
        return render_template("citizen/message.html", title="未授权", message="需要您同意授权后才能继续。"), 403
    if not expected or not state or not secrets.compare_digest(state, expected):
        return render_template(
            "citizen/message.html", title="链接已失效", message="页面链接已失效，请从公众号菜单重新进入。"
        ), 400
    try:
        grant = get_client().oauth_exchange(code)
    except (WeChatClientException, requests.RequestException) as exc:
        log.info("oauth code refused: %s", getattr(exc, "errcode", exc))
        return render_template(
            "citizen/message.html", title="授权失败", message="微信授权失败，请从公众号菜单重新进入。"
        ), 400
    target = session.get("oauth_next")
    session.clear()  # a new identity: nothing from a previous one survives
    session["openid"] = grant["openid"]
    # Moments "snapshot" pages give a virtual openid: fine for reading, not for voting or registering.
    session["snapshot"] = bool(grant.get("is_snapshotuser"))
    if session["snapshot"]:
        session["snapshot_at"] = int(time.time())
    session.permanent = True
    return redirect(local_path(target, url_for("citizen.home"), "/m/"))
