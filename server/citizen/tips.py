"""随手拍 for citizens: file a tip (photos, location, description), see "my tips", support a nearby open tip."""

from __future__ import annotations

import secrets

from flask import abort, g, jsonify, redirect, render_template, request, send_file, url_for
from flask_wtf.csrf import CSRFError, validate_csrf
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms.validators import ValidationError

from server.citizen import bp, wants_json
from server.citizen.identity import citizen_required
from server.extensions import csrf
from server.services import ServiceError, images, tips

MAX_REQUEST = 100 * 1024 * 1024  # nine phone photos fit; each one is held to images.MAX_BYTES below
MB = 1024 * 1024
TOO_LARGE = f"上传内容过大：每张照片不超过 {images.MAX_BYTES // MB} MB，总共不超过 {MAX_REQUEST // MB} MB"


def _form_page(form: dict[str, str] | None = None, error: str | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    if error and wants_json():  # the page's script keeps everything picked and typed, photos included
        return jsonify(error=error), status
    form = dict(form or {})
    if error is None or not form.get("submit_key"):
        form.setdefault("submit_key", secrets.token_urlsafe(24))  # made by the page, resent on a double tap
    page = render_template(
        "citizen/tip_new.html",
        form=form,
        error=error,
        categories=tips.category_names(),
        max_photos=tips.MAX_PHOTOS,
        max_mb=images.MAX_BYTES // MB,
        max_total_mb=MAX_REQUEST // MB,
        description_min=tips.DESCRIPTION_MIN,
        description_max=tips.DESCRIPTION_MAX,
    )
    return page, status


@bp.get("/tips/new")
@citizen_required
def tip_new():  # type: ignore[no-untyped-def]
    if g.snapshot:
        return _snapshot_page()
    return _form_page()


def _snapshot_page():  # type: ignore[no-untyped-def]
    return render_template(
        "citizen/message.html", title="请在微信中打开", message="朋友圈预览页面不能提交线索，请关注公众号后从菜单进入。"
    ), 403


@bp.post("/tips")
@csrf.exempt  # checked below: CSRFProtect's own check would read the whole body before the size limit is set
@citizen_required
def tip_create():  # type: ignore[no-untyped-def]
    if g.snapshot:
        return _snapshot_page()
    request.max_content_length = MAX_REQUEST  # refused while reading, before any of it is spooled
    try:
        form = request.form.to_dict()
        uploads = [f for f in request.files.getlist("photos") if f and f.filename]
    except RequestEntityTooLarge:
        return _form_page(None, TOO_LARGE, 413)
    try:
        validate_csrf(form.get("csrf_token"))
    except ValidationError as exc:
        raise CSRFError(str(exc)) from None
    photos = []
    for n, upload in enumerate(uploads[: tips.MAX_PHOTOS + 1], 1):
        data = upload.stream.read(images.MAX_BYTES + 1)
        if len(data) > images.MAX_BYTES:
            return _form_page(form, f"第 {n} 张照片：{images.TOO_BIG}", 413)
        photos.append(data)
    try:
        tip = tips.submit_tip(
            g.openid,
            category=form.get("category", ""),
            description=form.get("description", ""),
            photos=photos,
            latitude=form.get("latitude"),
            longitude=form.get("longitude"),
            address=form.get("address"),
            phone=None if form.get("anonymous") else form.get("phone"),
            submit_key=form.get("submit_key", ""),
            ip=request.remote_addr,
        )
    except images.ImageRejected as exc:
        return _form_page(form, str(exc), 422)
    except ServiceError as exc:
        return _form_page(form, str(exc), 400)
    done = url_for("citizen.tip_detail", tracking_no=tip.tracking_no, filed=1)
    return jsonify(url=done) if wants_json() else redirect(done)


@bp.get("/tips")
@citizen_required
def tip_mine():  # type: ignore[no-untyped-def]
    return render_template("citizen/tip_mine.html", tips=tips.own_tips(g.openid))


@bp.get("/tips/<tracking_no>")
@citizen_required
def tip_detail(tracking_no: str):  # type: ignore[no-untyped-def]
    tip = tips.find_own_tip(g.openid, tracking_no) or abort(404)  # someone else's number: the same 404
    return render_template(
        "citizen/tip_detail.html", tip=tip, phone=tips.mask_phone(tip), filed=request.args.get("filed") == "1"
    )


@bp.get("/tips/<tracking_no>/photos/<int:photo_id>/<any(thumb, public):kind>")
@citizen_required
def tip_photo(tracking_no: str, photo_id: int, kind: str):  # type: ignore[no-untyped-def]
    photo = tips.own_photo(g.openid, tracking_no, photo_id) or abort(404)
    path = images.media_path(photo.thumb_path if kind == "thumb" else photo.public_path)
    if not path.is_file():
        abort(404)
    response = send_file(path, mimetype="image/jpeg", conditional=True)
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@bp.get("/tips/nearby")
@citizen_required
def tip_nearby():  # type: ignore[no-untyped-def]
    try:
        lat, lng = float(request.args["lat"]), float(request.args["lng"])
    except (KeyError, ValueError):
        return jsonify(tips=[])
    category = request.args.get("category", "")
    if not (-90 <= lat <= 90 and -180 <= lng <= 180) or category not in tips.category_names():
        return jsonify(tips=[])
    found = tips.nearby_open_tips(lat, lng, category)
    mine = tips.supported_ids(g.openid, [t.id for t, _ in found])
    return jsonify(
        tips=[
            {
                "no": t.tracking_no,
                "display_no": t.display_no,
                "category": t.category,
                "status": t.status.label,
                "summary": t.description[:40] + ("…" if len(t.description) > 40 else ""),
                "distance": round(d),
                "support_count": t.support_count,
                "supported": t.id in mine,
                "own": t.openid == g.openid,
            }
            for t, d in found
        ]
    )


@bp.post("/tips/<tracking_no>/support")
@citizen_required
def tip_support(tracking_no: str):  # type: ignore[no-untyped-def]
    if g.snapshot:
        return jsonify(error="请关注公众号后再操作"), 403
    try:
        tip, added = tips.support_tip(g.openid, tracking_no)
    except ServiceError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(support_count=tip.support_count, added=added)
