"""The custom menu editor: default and officers' (conditional) menus, publish, history, restore, pull."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for

from models import MenuKind, MenuVersion, Role, Staff
from server.console import bp
from server.console.access import require_roles
from server.extensions import db
from server.services import ServiceError
from server.services import menus as menu_service

EDITORS = (Role.ADMIN, Role.EDITOR)
KIND_LABELS = {MenuKind.DEFAULT: "默认菜单", MenuKind.CONDITIONAL: "一线队员菜单"}


def _kind(value: str | None) -> MenuKind:
    try:
        return MenuKind(value or "default")
    except ValueError:
        abort(404)


def _editor_config(readonly: bool = False) -> dict[str, Any]:
    """Types, fields and limits for static/js/menu_editor.js, so the browser checks what the server checks."""
    return {
        "types": [{"value": t, "label": label} for t, label in menu_service.TYPE_LABELS.items()],
        "fields": menu_service.TYPE_FIELDS,
        "field_labels": menu_service.FIELD_LABELS,
        "limits": {
            "top": menu_service.MAX_TOP,
            "sub": menu_service.MAX_SUB,
            "top_name": menu_service.MAX_TOP_NAME,
            "sub_name": menu_service.MAX_SUB_NAME,
            "key": menu_service.MAX_KEY,
            "url": menu_service.MAX_URL,
            "domains": menu_service.MAX_DOMAINS,
            "reply": 2048,
        },
        "readonly": readonly,
        "builtin": sorted(menu_service.builtin_clicks()),  # answered by the system: no reply box
    }


def _render_editor(kind: MenuKind, *, payload: dict[str, Any] | None = None, error: str | None = None):  # type: ignore[no-untyped-def]
    buttons, shown = menu_service.editor_buttons(kind)
    pending = menu_service.draft(kind)
    texts: dict[str, str] = {}
    if payload is not None:  # a refused submit: show what was sent, not what is stored
        buttons = payload.get("buttons") if isinstance(payload.get("buttons"), list) else []
        texts = {k: v for k, v in (payload.get("replies") or {}).items() if isinstance(v, str)}
    data = {
        **_editor_config(),
        "buttons": buttons,
        "replies": menu_service.click_replies(menu_service.normalize(buttons)),
        "texts": texts,
    }
    return render_template(
        "console/menu_edit.html",
        kind=kind,
        kinds=KIND_LABELS,
        data=data,
        draft=pending,
        live=menu_service.live(kind),
        shown=shown,
        base=menu_service.draft_token(pending),
        names=_names([v for v in (pending, menu_service.live(kind)) if v]),
        sources=menu_service.SOURCE_LABELS,
        tag=menu_service.OFFICER_TAG,
        error=error,
    ), 400 if error else 200


def _names(versions: list[MenuVersion]) -> dict[int, str]:
    ids = {v.created_by_id for v in versions if v.created_by_id}
    if not ids:
        return {}
    return {row.id: row.name for row in db.session.execute(sa.select(Staff.id, Staff.name).where(Staff.id.in_(ids)))}


def _payload() -> dict[str, Any]:
    """The editor's JSON, refused unless it has the editor's shape and only text WeChat and PostgreSQL can hold."""
    malformed = ServiceError("菜单数据格式不正确，请刷新页面后重试")
    try:
        payload = json.loads(request.form.get("payload") or "")
        dumped = json.dumps(payload, ensure_ascii=False)
        dumped.encode()  # a lone surrogate (\ud800) cannot be stored
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError; RecursionError: [[[[…]]]]
        raise malformed from None
    if not isinstance(payload, dict) or not isinstance(payload.get("replies") or {}, dict):
        raise malformed
    if "\\u0000" in dumped:  # NUL, which json.dumps escapes: PostgreSQL's text refuses it
        raise ServiceError("菜单名称或内容包含无效字符（NUL）")
    return payload


@bp.get("/menu")
@require_roles(*EDITORS)
def menu_edit():  # type: ignore[no-untyped-def]
    return _render_editor(_kind(request.args.get("kind")))


@bp.post("/menu/draft", defaults={"publish": False})
@bp.post("/menu/publish", defaults={"publish": True}, endpoint="menu_publish")
@require_roles(*EDITORS)
def menu_save(publish: bool):  # type: ignore[no-untyped-def]
    kind = _kind(request.form.get("kind"))
    payload: dict[str, Any] | None = None
    try:
        payload = _payload()
        menu_service.save_draft(
            kind, payload.get("buttons"), payload.get("replies") or {}, base=request.form.get("base") or None
        )
        if publish and menu_service.draft(kind) is None and menu_service.live(kind) is not None:
            # The menu is what WeChat shows (a changed click reply, live at once, or a second click): not an error.
            flash("菜单与线上版本相同，无需重新发布；点击后回复已保存，立即生效", "success")
            _warn_silent(menu_service.live(kind))  # a reply cleared just now leaves its button silent
            return redirect(url_for("console.menu_edit", kind=kind.value))
        if publish:
            version = menu_service.publish_draft(kind)
    except ServiceError as exc:
        return _render_editor(kind, payload=payload or {"buttons": []}, error=str(exc))
    if publish:
        flash(f"{KIND_LABELS[kind]}已发布到微信（版本 #{version.id}），用户重新进入公众号后可见", "success")
        _warn_silent(version)
    else:
        flash("草稿已保存，尚未发布", "success")
    return redirect(url_for("console.menu_edit", kind=kind.value))


@bp.post("/menu/pull")
@require_roles(*EDITORS)
def menu_pull():  # type: ignore[no-untyped-def]
    kind = _kind(request.form.get("kind"))
    try:
        menu_service.pull_from_wechat(kind)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash("已把微信上的线上菜单拉取到草稿，核对后点「保存并发布」", "success")
    return redirect(url_for("console.menu_edit", kind=kind.value))


@bp.post("/menu/discard")
@require_roles(*EDITORS)
def menu_discard():  # type: ignore[no-untyped-def]
    kind = _kind(request.form.get("kind"))
    menu_service.discard_draft(kind)
    flash("已放弃草稿，编辑器显示线上版本", "success")
    return redirect(url_for("console.menu_edit", kind=kind.value))


@bp.get("/menu/history")
@require_roles(*EDITORS)
def menu_history():  # type: ignore[no-untyped-def]
    kind = request.args.get("kind")
    selected = _kind(kind) if kind else None
    versions = menu_service.history(selected)
    live_ids = {v.id for k in MenuKind if (v := menu_service.live(k))}
    return render_template(
        "console/menu_history.html",
        versions=versions,
        selected=selected,
        kinds=KIND_LABELS,
        live_ids=live_ids,
        names=_names(versions),
        sources=menu_service.SOURCE_LABELS,
        summary=menu_service.summary,
    )


@bp.get("/menu/versions/<int:version_id>")
@require_roles(*EDITORS)
def menu_version(version_id: int):  # type: ignore[no-untyped-def]
    version = db.session.get(MenuVersion, version_id) or abort(404)
    data = {
        **_editor_config(readonly=True),
        "buttons": version.buttons,
        "replies": menu_service.click_replies(version.buttons),
        "texts": {},
    }
    return render_template(
        "console/menu_version.html",
        version=version,
        kinds=KIND_LABELS,
        data=data,
        names=_names([version]),
        sources=menu_service.SOURCE_LABELS,
        pretty=json.dumps({"button": version.buttons}, ensure_ascii=False, indent=2),
    )


def _warn_silent(version: MenuVersion) -> None:
    if silent := menu_service.silent_clicks(version.buttons):
        names = "、".join(f"「{n}」" for n in silent)
        flash(f"注意：菜单{names}点击后没有设置回复，用户只会收到默认回复。请在编辑器中填写「点击后回复」。", "warning")


@bp.post("/menu/versions/<int:version_id>/restore")
@require_roles(*EDITORS)
def menu_restore(version_id: int):  # type: ignore[no-untyped-def]
    db.session.get(MenuVersion, version_id) or abort(404)
    try:
        version = menu_service.restore_version(version_id)
    except ServiceError as exc:
        flash(str(exc), "error")
        return redirect(url_for("console.menu_history"))
    flash(f"已恢复版本 #{version_id} 并发布到微信（新版本 #{version.id}）", "success")
    _warn_silent(version)
    return redirect(url_for("console.menu_history", kind=version.kind.value))
