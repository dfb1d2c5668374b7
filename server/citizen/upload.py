"""/m/upload: bound staff upload several scene photos at once; one request per photo, retried by the page.

Each request carries a client-generated id: a retry after a dropped connection gets the first item back (and the
same bytes under another id are found by SHA-256), so a flaky network never makes duplicates.
"""

from __future__ import annotations

from flask import abort, g, jsonify, render_template, request

from server.citizen import bp
from server.citizen.identity import citizen_required
from server.services import ServiceError, images, materials


def _uploader():  # type: ignore[no-untyped-def]
    return materials.uploader_by_openid(g.openid)


@bp.get("/upload")
@citizen_required
def upload_page():  # type: ignore[no-untyped-def]
    staff = _uploader()
    if staff is None:
        return render_template("citizen/upload_denied.html"), 403
    return render_template("citizen/upload.html", staff=staff, max_mb=images.MAX_BYTES // (1024 * 1024))


@bp.post("/upload")
@citizen_required
def upload_photo():  # type: ignore[no-untyped-def]
    staff = _uploader()
    if staff is None:
        abort(403)
    photo = request.files.get("photo")
    if photo is None:
        return jsonify({"error": "没有收到照片"}), 400
    data = photo.read(images.MAX_BYTES + 1)
    form = request.form
    try:
        item, created = materials.upload_photo(
            staff,
            data,
            client_id=form.get("client_id", ""),
            caption=form.get("caption"),
            latitude=form.get("latitude"),
            longitude=form.get("longitude"),
            address=form.get("address"),
        )
    except ServiceError as exc:
        return jsonify({"error": str(exc)}), 400
    return jsonify({"id": item.id, "created": created, "state": item.state.value}), 201 if created else 200
