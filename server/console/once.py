"""Create forms that save once per submit: `@once_per_submit` on the view, `submitted(url)` where it succeeds, and
`{{ submit_key(form) }}` in the form (server/services/submits.py explains the key)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import flash, g, redirect, request, url_for
from markupsafe import Markup, escape

from server.redirects import local_path
from server.services import ServiceError, submits

REPEATED = "已保存（重复的提交只保存了一次）。"


def submitted(url: str) -> None:
    """The view saved, and leads to `url`: a second copy of this submit is sent there too."""
    g.submit_result = url


def _sent_with(page_key: str) -> str:
    """The page's key and what was sent with it. A double click sends the same twice; a form filled in again after
    the back button (the browser may keep the old key) sends something else, and is a new submit."""
    digest = hashlib.sha256(page_key.encode())
    for name in sorted(request.form):
        if name != "csrf_token":
            for value in request.form.getlist(name):
                digest.update(f"\0{name}\0{value}".encode())
    for name in sorted(request.files):
        stream = request.files[name].stream  # its size, not the body's: multipart boundaries differ per copy
        size = stream.seek(0, 2)
        stream.seek(0)
        digest.update(f"\0{name}\0{request.files[name].filename}\0{size}".encode())
    return digest.hexdigest()


def _back() -> str:
    """The page the form was on (a POST-only URL has no page to return to)."""
    came_from = urlsplit(request.referrer or "")
    path = came_from.path + (f"?{came_from.query}" if came_from.query else "")
    return local_path(path if came_from.netloc == request.host else None, url_for("console.home"), "/admin/")


def once_per_submit(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        page_key = request.form.get("submit_key") if request.method == "POST" else None
        if not submits.valid(page_key):  # an edit form, or a page from before this release: unguarded, as before
            return view(*args, **kwargs)
        assert page_key is not None
        key = _sent_with(page_key)
        try:
            first = submits.claim(key)
        except ServiceError as exc:
            flash(str(exc), "error")
            return redirect(_back())
        if first is not None:
            flash(REPEATED, "success")
            return redirect(first)
        g.submit_result = None
        try:
            response = view(*args, **kwargs)
        except BaseException:
            submits.release(key)
            raise
        if g.submit_result:
            submits.done(key, g.submit_result)
        else:  # refused: the form comes back with the same key, and the corrected copy must go through
            submits.release(key)
        return response

    return wrapper


def submit_key_field(form: Any = None) -> Markup:
    """The hidden field: the key the form was shown with (after a refusal), else a new one."""
    key = form.get("submit_key") if form is not None and hasattr(form, "get") else None
    value = key if submits.valid(key) else submits.new_key()
    return Markup('<input type="hidden" name="submit_key" value="{}">').format(escape(value))
