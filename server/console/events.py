"""/admin/events: events and their sessions, registrations (masked), export, walk-ins and the check-in scanner."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask import session as flask_session
from flask_login import current_user
from redis.exceptions import RedisError
from sqlalchemy.orm import selectinload
from wechatpy.exceptions import WeChatClientException

from models import Event, EventKind, EventSession, Role, utcnow
from models.event import FIELD_LABELS
from server.console import bp
from server.console.access import CONSOLE_ROLES, require_roles
from server.console.once import once_per_submit, submitted
from server.extensions import db
from server.filters import LOCAL_TZ
from server.inputs import to_int
from server.services import ServiceError, events
from server.services.events import Applicant
from server.wechat import jssdk

log = logging.getLogger(__name__)

MANAGERS = (Role.ADMIN, Role.EDITOR)
SESSION_FIELDS = ("starts_at", "ends_at", "quota", "venue", "stream_url")
SCANNERS = (Role.ADMIN, Role.EDITOR, Role.LIAISON)


def _local(value: str | None) -> datetime | None:
    """A datetime-local field (Beijing time) as an aware UTC datetime; None if empty, malformed or out of range."""
    try:
        # In UTC here, not first where the database takes it: year 1 at 00:00 in Beijing is before year 1 in UTC.
        return datetime.fromisoformat(value).replace(tzinfo=LOCAL_TZ).astimezone(UTC) if value else None
    except (ValueError, OverflowError):
        return None


def _event_or_404(event_id: int) -> Event:
    return db.session.get(Event, event_id) or abort(404)


def _session_or_404(event_id: int, session_id: int) -> EventSession:
    session = db.session.get(EventSession, session_id)
    if session is None or session.event_id != event_id:
        abort(404)
    return session


@bp.get("/events")
@require_roles(*CONSOLE_ROLES)
def event_list():  # type: ignore[no-untyped-def]

    all_events = db.session.scalars(
        sa.select(Event)
        .options(selectinload(Event.sessions))
        .order_by(Event.registration_opens_at.desc(), Event.id.desc())
    )
    now = utcnow()
    return render_template(
        "console/event_list.html",
        events=list(all_events),
        now=now,
        numbers=events.year_numbers(now.astimezone(LOCAL_TZ).year, now),
        can_manage=current_user.role in MANAGERS,
    )


@bp.route("/events/new", methods=["GET", "POST"], defaults={"event_id": None})
@bp.route("/events/<int:event_id>/edit", methods=["GET", "POST"])
@require_roles(*MANAGERS)
@once_per_submit
def event_edit(event_id: int | None):  # type: ignore[no-untyped-def]
    event = _event_or_404(event_id) if event_id else None
    error = None
    if request.method == "POST":
        form = request.form
        try:
            event = events.save_event(
                title=form.get("title", ""),
                kind=form.get("kind", ""),
                description=form.get("description", ""),
                registration_opens_at=_local(form.get("registration_opens_at")),
                registration_closes_at=_local(form.get("registration_closes_at")),
                max_companions=to_int(form.get("max_companions"), 0),
                required_fields=form.getlist("required_fields"),
                questions=form.get("questions", "").splitlines(),
                hold_minutes=to_int(form.get("hold_minutes"), 120),
                retention_days=to_int(form.get("retention_days"), 30),
                published=form.get("published") == "on",
                event=event,
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            flash(f"已保存：{event.title}", "success")
            submitted(url := url_for("console.event_detail", event_id=event.id))
            return redirect(url)
    return render_template(
        "console/event_form.html",
        event=event,
        error=error,
        form=request.form,
        kinds=list(EventKind),
        field_labels=FIELD_LABELS,
    ), 400 if error else 200


@bp.get("/events/<int:event_id>")
@require_roles(*CONSOLE_ROLES)
def event_detail(event_id: int):  # type: ignore[no-untyped-def]
    event = _event_or_404(event_id)
    return _detail_page(event, to_int(request.args.get("session"), event.sessions[0].id if event.sessions else 0))


def _detail_page(event: Event, session_id: int, walk_in: Mapping[str, str] | None = None) -> str:
    """The event's page with one session's list; `walk_in` fills the walk-in form again (a refused one)."""
    current = next((s for s in event.sessions if s.id == session_id), None)
    now = utcnow()
    held = min((s.starts_at for s in event.sessions if s.cancelled_at is None), default=event.registration_opens_at)
    year = held.astimezone(LOCAL_TZ).year  # the event's year, not this one: next July's open day has figures now
    numbers = next((e for e in events.year_numbers(year, now)["per_event"] if e["id"] == event.id), None)
    return render_template(
        "console/event_detail.html",
        event=event,
        current=current,
        listing=events.session_rows(current.id, page=to_int(request.args.get("page"), 1, lo=1)) if current else None,
        notices=events.notice_tally(current.id) if current else [],
        numbers=numbers,
        sent=flask_session.pop("session_form", None),
        can_manage=current_user.role in MANAGERS,
        can_scan=current_user.role in SCANNERS,
        now=now,
        walk_in=walk_in or {},
    )


@bp.post("/events/<int:event_id>/sessions", defaults={"session_id": None})
@bp.post("/events/<int:event_id>/sessions/<int:session_id>")
@require_roles(*MANAGERS)
@once_per_submit
def event_session_save(event_id: int, session_id: int | None):  # type: ignore[no-untyped-def]
    event = _event_or_404(event_id)
    session = _session_or_404(event.id, session_id) if session_id is not None else None
    form = request.form
    revision = session.revision if session is not None else None
    try:
        session = events.save_session(
            event,
            starts_at=_local(form.get("starts_at")),
            ends_at=_local(form.get("ends_at")),
            quota=to_int(form.get("quota"), 0),
            venue=form.get("venue", ""),
            stream_url=form.get("stream_url", ""),
            session=session,
        )
    except ServiceError as exc:
        flash(str(exc), "error")
        # What was typed comes back in the form after the redirect, not an empty form to fill again.
        kept = (*SESSION_FIELDS, "submit_key")  # the same key: the corrected form is the same submit
        flask_session["session_form"] = {"for": session_id} | {k: form.get(k, "")[:512] for k in kept}
        back = {"session": session_id} if session_id else {}
        return redirect(url_for("console.event_detail", event_id=event.id, **back))
    if revision is not None and session.revision != revision:
        told = events.change_notices(session)
        flash(f"场次已保存。时间或地点有变更，将向 {told} 位报名者（含候补）发送通知", "success")
    else:
        flash("场次已保存", "success")
    submitted(url := url_for("console.event_detail", event_id=event.id, session=session.id))
    return redirect(url)


@bp.post("/events/<int:event_id>/sessions/<int:session_id>/cancel")
@require_roles(*MANAGERS)
def event_session_cancel(event_id: int, session_id: int):  # type: ignore[no-untyped-def]
    session = _session_or_404(event_id, session_id)
    try:
        told = events.cancel_session(session, request.form.get("reason", ""))
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(f"场次已取消，将向 {told} 位报名者（含候补）发送取消通知", "success")
    return redirect(url_for("console.event_detail", event_id=event_id, session=session.id))


@bp.get("/events/<int:event_id>/sessions/<int:session_id>/export")
@require_roles(*MANAGERS)
def event_export(event_id: int, session_id: int):  # type: ignore[no-untyped-def]
    session = _session_or_404(event_id, session_id)
    name, data = events.export_session(session.id)
    return Response(
        data,
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f"attachment; filename={name}", "Cache-Control": "no-store"},
    )


@bp.post("/events/<int:event_id>/walk-in")
@require_roles(*SCANNERS)
@once_per_submit  # a double tap at the gate (slow network) is one visitor, not two places and two check-ins
def event_walk_in(event_id: int):  # type: ignore[no-untyped-def]
    event = _event_or_404(event_id)
    form = request.form
    try:
        events.walk_in(
            event,
            to_int(form.get("session_id"), 0),
            Applicant(
                companions=to_int(form.get("companions"), 0), name=form.get("name", ""), phone=form.get("phone", "")
            ),
            over_quota=form.get("over_quota") == "on",
            staff_id=current_user.id,
        )
    except ServiceError as exc:
        # Rendered, not redirected: the visitor's name and phone come back in the form, and stay out of the cookie.
        flash(str(exc), "error")
        session_id = to_int(form.get("session_id"), 0)
        if form.get("next") == "scan":
            return _scan_page(event, session_id, walk_in=form), 400
        return _detail_page(event, session_id, walk_in=form), 400
    flash("现场登记成功，已签到", "success")
    view = "console.event_scan" if form.get("next") == "scan" else "console.event_detail"  # staff stay where they were
    submitted(url := url_for(view, event_id=event.id, session=form.get("session_id")))
    return redirect(url)


@bp.get("/events/<int:event_id>/scan")
@require_roles(*SCANNERS)
def event_scan(event_id: int):  # type: ignore[no-untyped-def]
    return _scan_page(_event_or_404(event_id), to_int(request.args.get("session"), 0))


def _scan_page(event: Event, session_id: int, walk_in: Mapping[str, str] | None = None) -> str:
    current = next((s for s in event.sessions if s.id == session_id), None)  # None: every session
    # Walk-ins at the gate need a session: the one picked, or the only one.
    walk_in_session = current or (event.sessions[0] if len(event.sessions) == 1 else None)
    if event.kind is not EventKind.OFFLINE:
        walk_in_session = None
    return render_template(
        "console/event_scan.html",
        event=event,
        current=current,
        walk_in_session=walk_in_session,
        walk_in=walk_in or {},
    )


@bp.post("/events/<int:event_id>/scan")
@require_roles(*SCANNERS)
def event_scan_check(event_id: int):  # type: ignore[no-untyped-def]
    _event_or_404(event_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):  # the scan page posts an object; any other JSON is read as an empty form
        body = request.form
    result = events.check_in(
        event_id,
        str(body.get("token", "")),
        str(body.get("nonce", "")),
        staff_id=current_user.id,
        session_id=to_int(str(body.get("session_id") or "")) or None,
    )
    return jsonify(result.as_json())


@bp.get("/events/jssdk-config")
@require_roles(*SCANNERS)
def event_jssdk_config():  # type: ignore[no-untyped-def]
    """wx.config's signed fields for a page of ours, so the scan page can open WeChat's own scanner."""
    url = request.args.get("url", "")
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed [IPv6] host
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or parts.netloc != request.host:
        return jsonify(error="只能为本站页面生成微信 JS-SDK 配置"), 400
    try:
        config = jssdk.jsapi_config(url)
    except (WeChatClientException, requests.RequestException, RedisError):
        log.exception("jsapi config failed")
        return jsonify(error="暂时无法连接微信，请改用摄像头或手动输入"), 503
    response = jsonify(config)
    response.headers["Cache-Control"] = "no-store"  # a fresh nonce and timestamp each time
    return response


@bp.get("/events/checkin-key.pem")
@require_roles(*CONSOLE_ROLES)
def event_public_key():  # type: ignore[no-untyped-def]
    """The Ed25519 public key: with it a scanner can verify QR codes without the server."""
    return Response(events.public_key_pem(), mimetype="application/x-pem-file")
