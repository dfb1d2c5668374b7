"""Channel QR codes (渠道二维码): list with figures, create, edit name/unit/reply, (re)generate and download the QR."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.datastructures import MultiDict

from models import Channel, Role
from server.console import bp, reply_fields
from server.console.access import require_roles
from server.extensions import db
from server.inputs import to_int
from server.services import ServiceError, channels
from server.services import staff as staff_service

EDIT_ROLES = (Role.ADMIN, Role.EDITOR)  # as the menu and the auto-replies: what citizens receive
REPLY_LABELS = {"": "不回复", **reply_fields.REPLY_LABELS}


def _channel_or_404(channel_id: int) -> Channel:
    return db.session.get(Channel, channel_id) or abort(404)


def _reply_from_form(form: MultiDict[str, str]) -> channels.ReplyInput:
    reply_type = form.get("reply_type", "")
    articles = reply_fields.articles_from_form(form)
    if reply_type not in REPLY_LABELS:
        raise ServiceError("回复类型不正确")
    return channels.ReplyInput(
        reply_type=reply_type,
        text=form.get("reply_text", ""),
        media_id=form.get("media_id", "").strip(),
        articles=articles,
    )


def _values(channel: Channel | None, form: MultiDict[str, str] | None = None) -> dict[str, Any]:
    """What the form shows: as typed after a refusal, else as stored (or a fresh scene for a new channel)."""
    if form is not None:
        articles = []
        try:
            articles = _reply_from_form(form).articles or []
        except ServiceError:
            pass
        return {
            "name": form.get("name", ""),
            "scene": form.get("scene", ""),
            "unit_id": form.get("unit_id", ""),
            "reply_type": form.get("reply_type", ""),
            "reply_text": form.get("reply_text", ""),
            "media_id": form.get("media_id", ""),
            "articles": articles,
        }
    if channel is None:
        return {"name": "", "scene": channels.new_scene(), "unit_id": "", "reply_type": "", "reply_text": "",
                "media_id": "", "articles": []}  # fmt: skip
    reply = channels.reply_input(channel.reply_rule)
    return {
        "name": channel.name,
        "scene": channel.scene,
        "unit_id": str(channel.unit_id or ""),
        "reply_type": reply.reply_type,
        "reply_text": reply.text or "",
        "media_id": reply.media_id or "",
        "articles": list(reply.articles or []),
    }


def _form(channel: Channel | None, values: dict[str, Any], error: str | None) -> tuple[str, int]:
    return render_template(
        "console/channel_form.html",
        channel=channel,
        values=values,
        article_rows=reply_fields.article_rows(values["articles"]),
        error=error,
        units=staff_service.units_tree(),
        reply_labels=REPLY_LABELS,
    ), 400 if error else 200


@bp.get("/channels")
@require_roles(*EDIT_ROLES)
def channel_list():  # type: ignore[no-untyped-def]
    return render_template(
        "console/channel_list.html",
        rows=channels.list_channels(),
        recent_days=channels.RECENT_DAYS,
        reply_labels=REPLY_LABELS,
    )


@bp.route("/channels/new", methods=["GET", "POST"])
@require_roles(*EDIT_ROLES)
def channel_new():  # type: ignore[no-untyped-def]
    if request.method == "GET":
        return _form(None, _values(None), None)
    form = request.form
    try:
        channel = channels.create_channel(
            name=form.get("name", ""),
            scene=form.get("scene", ""),
            unit_id=to_int(form.get("unit_id"), lo=1),
            reply=_reply_from_form(form),
            created_by_id=current_user.id,
        )
    except ServiceError as exc:
        return _form(None, _values(None, form), str(exc))
    try:
        channels.request_qr(channel)
    except ServiceError as exc:  # the channel is kept: the QR is retried from its page
        flash(f"渠道「{channel.name}」已保存，但二维码暂未生成：{exc}。可稍后在本页点「生成二维码」重试。", "error")
    else:
        flash(f"已创建渠道「{channel.name}」，可下载二维码印制使用。", "success")
    return redirect(url_for("console.channel_edit", channel_id=channel.id))


@bp.route("/channels/<int:channel_id>", methods=["GET", "POST"])
@require_roles(*EDIT_ROLES)
def channel_edit(channel_id: int):  # type: ignore[no-untyped-def]
    channel = _channel_or_404(channel_id)
    if request.method == "GET":
        return _form(channel, _values(channel), None)
    form = request.form
    try:
        channels.update_channel(
            channel, name=form.get("name", ""), unit_id=to_int(form.get("unit_id"), lo=1), reply=_reply_from_form(form)
        )
    except ServiceError as exc:
        db.session.rollback()  # the page shows the stored channel again, not the refused values half-applied
        return _form(channel, _values(None, form) | {"scene": channel.scene}, str(exc))
    flash(f"已保存：{channel.name}。扫码的粉丝马上收到新的回复。", "success")
    return redirect(url_for("console.channel_list"))


@bp.post("/channels/<int:channel_id>/qr")
@require_roles(*EDIT_ROLES)
def channel_qr(channel_id: int):  # type: ignore[no-untyped-def]
    channel = _channel_or_404(channel_id)
    try:
        channels.request_qr(channel)  # one that has its code already is left as it is: a double click is harmless
    except ServiceError as exc:
        flash(f"二维码未生成：{exc}。请稍后重试。", "error")
    else:
        flash(f"已生成「{channel.name}」的二维码", "success")
    return redirect(url_for("console.channel_edit", channel_id=channel.id))


@bp.get("/channels/<int:channel_id>/qr.png")
@require_roles(*EDIT_ROLES)
def channel_qr_png(channel_id: int):  # type: ignore[no-untyped-def]
    channel = _channel_or_404(channel_id)
    if not channel.qr_url:
        abort(404)
    response = Response(channels.qr_png(channel), mimetype="image/png")
    if request.args.get("download"):
        # The scene is ASCII by construction: a safe file name without quoting rules
        response.headers["Content-Disposition"] = f'attachment; filename="qr-{channel.scene}.png"'
    response.headers["Cache-Control"] = "private, no-store"
    return response
