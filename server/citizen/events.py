"""/m/events: open day and livestream registration, live places, my registrations with the check-in QR code."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from flask import Response, abort, flash, g, get_flashed_messages, jsonify, redirect, render_template, request, url_for

from models import Event, EventKind, Follower, Registration, RegistrationStatus, utcnow
from models.event import FIELD_LABELS
from server.citizen import bp, wants_json
from server.citizen.identity import citizen_required
from server.extensions import db
from server.inputs import to_int
from server.services import ServiceError, events
from server.services.events import Applicant


def _status_label(reg: Registration) -> str:
    """A livestream is booked (预约), not registered for: the same words as its button and flash."""
    if reg.status is RegistrationStatus.CONFIRMED and reg.event.kind is EventKind.LIVESTREAM:
        return "预约成功"
    return reg.status.label


def _ms(dt) -> int:  # type: ignore[no-untyped-def]
    return int(dt.timestamp() * 1000)


@bp.get("/events")
@citizen_required
def event_list():  # type: ignore[no-untyped-def]
    return render_template("citizen/event_list.html", events=events.published_events(), now=utcnow())


@bp.get("/events/<int:event_id>")
@citizen_required
def event_detail(event_id: int):  # type: ignore[no-untyped-def]
    event = events.visible_event(event_id) or abort(404)
    # A link may pick the session; personal fields are never filled from a URL someone else could craft.
    picked = {"session_id": request.args.get("session_id", "")}
    return _detail_page(event, picked, get_flashed_messages(with_categories=True))


def _detail_page(event: Event, form: Mapping[str, str], messages: list[tuple[str, str]]) -> str:
    """The event page; `form` fills the fields again (a refused registration keeps what the citizen typed)."""
    now = utcnow()
    return render_template(
        "citizen/event_detail.html",
        event=event,
        now=now,
        server_now_ms=_ms(now),
        opens_ms=_ms(event.registration_opens_at),
        closes_ms=_ms(event.registration_closes_at),
        left=events.places_left(event),
        mine=events.active_registration(g.openid, event.id),
        snapshot=g.snapshot,
        field_labels=FIELD_LABELS,
        form=form,
        messages=messages,
    )


@bp.get("/events/<int:event_id>/places")
@citizen_required
def event_places(event_id: int):  # type: ignore[no-untyped-def]
    """Polled by the page: places left per session and the server's clock (the countdown trusts it, not the phone)."""
    event = events.visible_event(event_id) or abort(404)
    now = utcnow()
    response = jsonify(
        now=_ms(now),
        opens_at=_ms(event.registration_opens_at),
        closes_at=_ms(event.registration_closes_at),
        open=event.registration_open(now),
        sessions={str(k): v for k, v in events.places_left(event).items()},
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/events/<int:event_id>/register")
@citizen_required
def event_register(event_id: int):  # type: ignore[no-untyped-def]
    form = request.form
    applicant = Applicant(
        companions=to_int(form.get("companions"), 0),
        name=form.get("name", ""),
        phone=form.get("phone", ""),
        id_number=form.get("id_number", ""),
        answers=[form.get(f"answer_{i}", "") for i in range(5)],
    )
    try:
        reg, created = events.register(
            g.openid,
            event_id,
            to_int(form.get("session_id"), 0),
            applicant,
            waitlist=form.get("waitlist", "1") == "1",
            snapshot=g.snapshot,
        )
    except ServiceError as exc:
        if wants_json():
            return jsonify(error=str(exc)), 400
        event = events.visible_event(event_id) or abort(404)
        # Rendered, not redirected: the answers survive, and the phone and ID number stay out of URLs and logs.
        return _detail_page(event, form, [("error", str(exc))]), 400
    message = {
        RegistrationStatus.CONFIRMED: "报名成功！入场时请出示二维码。"
        if reg.event.kind is EventKind.OFFLINE
        else "预约成功，直播开始时会通知您。",
        RegistrationStatus.WAITING: "名额不足，您已进入候补名单；有足够名额空出时会按顺序通知您。",
    }.get(reg.status, reg.status.label)
    if not created:
        verb = "预约" if reg.event.kind is EventKind.LIVESTREAM else "报名"
        message = f"您已{verb}过本活动：{_status_label(reg)}"
    if wants_json() and not form.get("from_page"):
        return jsonify(status=reg.status.value, registration_id=reg.id, created=created, message=message)
    flash(message, "success")
    if wants_json():  # the page's script: it goes to 我的报名 itself, so a refusal never leaves a POST in history
        return jsonify(
            status=reg.status.value, registration_id=reg.id, created=created, url=url_for("citizen.event_mine")
        )
    return redirect(url_for("citizen.event_mine"))


@bp.get("/events/mine")
@citizen_required
def event_mine():  # type: ignore[no-untyped-def]
    regs = events.own_registrations(g.openid)
    # Reminders and waiting-list offers are template messages: WeChat delivers them to followers only.
    following = bool(db.session.scalar(sa.select(Follower.subscribed).where(Follower.openid == g.openid)))
    return render_template(
        "citizen/event_mine.html",
        registrations=regs,
        following=following,
        positions={r.id: events.waiting_position(r) for r in regs if r.status is RegistrationStatus.WAITING},
        now=utcnow(),
        messages=get_flashed_messages(with_categories=True),
    )


@bp.get("/events/registrations/<int:registration_id>/qr.png")
@citizen_required
def event_qr(registration_id: int):  # type: ignore[no-untyped-def]
    """The check-in QR code: only its owner gets it, and only while the registration is confirmed."""
    reg = events.own_registration(g.openid, registration_id)
    if reg is None or reg.status is not RegistrationStatus.CONFIRMED:
        abort(404)
    response = Response(events.qr_png(events.checkin_token(reg)), mimetype="image/png")
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/events/registrations/<int:registration_id>/cancel")
@citizen_required
def event_cancel(registration_id: int):  # type: ignore[no-untyped-def]
    before = events.own_registration(g.openid, registration_id)
    held = before is not None and before.status in (RegistrationStatus.CONFIRMED, RegistrationStatus.OFFERED)
    try:
        reg = events.cancel(g.openid, registration_id)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        verb = "预约" if reg.event.kind is EventKind.LIVESTREAM else "报名"
        flash(f"已取消{verb}，名额已释放。" if held else "已取消候补。", "success")
    return redirect(url_for("citizen.event_mine"))


@bp.post("/events/registrations/<int:registration_id>/confirm")
@citizen_required
def event_confirm(registration_id: int):  # type: ignore[no-untyped-def]
    try:
        reg = events.confirm_offer(g.openid, registration_id)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(f"已确认参加，{_status_label(reg)}！", "success")
    return redirect(url_for("citizen.event_mine"))
