"""Followers: search, daily subscribes/unsubscribes, remarks (synced to WeChat) and CSV export.

Followers belong to the account, not to a unit: every console role sees the same list.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user

from models import Follower, Role
from server.console import bp
from server.console.access import CONSOLE_ROLES, require_roles
from server.console.charts import bar_chart
from server.extensions import db
from server.filters import LOCAL_TZ
from server.inputs import to_int
from server.redirects import local_path
from server.services import ServiceError, audit, channels, follower_sync
from server.services import followers as follower_service

log = logging.getLogger(__name__)

MANAGERS = (Role.ADMIN, Role.EDITOR)  # set remarks; take the whole list away as a file (openids of every follower)


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return to_int(raw, 1, lo=1)  # nonsense or absurd: the first page


@bp.get("/followers")
@require_roles(*CONSOLE_ROLES)
def follower_list():  # type: ignore[no-untyped-def]
    search, errors = follower_service.parse_filter(request.args)
    result = follower_service.search(search, _page_number())
    daily = follower_service.daily_changes(30)
    return render_template(
        "console/follower_list.html",
        search=search,
        query=search.as_dict(),
        errors=errors,
        result=result,
        scenes=follower_service.source_scenes(),
        scene_names=channels.scene_names(),  # a channel QR's scene shows as the channel's name
        scene_none=follower_service.SCENE_NONE,
        new_chart=bar_chart([(d.strftime("%m-%d"), n) for d, n, _ in daily], title="近 30 天每日关注次数"),
        left_chart=bar_chart([(d.strftime("%m-%d"), n) for d, _, n in daily], title="近 30 天每日取消关注次数"),
        new_total=sum(n for _, n, _ in daily),
        left_total=sum(n for _, _, n in daily),
        filtered=bool(search.as_dict()),
        can_export=current_user.role in MANAGERS,
        sync=(sync := follower_sync.state()),
        sync_running=follower_sync.running(sync),
    )


@bp.post("/followers/sync")
@require_roles(*MANAGERS)
def follower_sync_start():  # type: ignore[no-untyped-def]
    from server.tasks.followers import sync_followers

    if follower_sync.running(follower_sync.state()):
        flash("与微信的同步正在进行，完成后本页显示结果。", "info")
        return redirect(url_for("console.follower_list"))
    audit.record("follower.sync", target_type="follower")
    db.session.commit()
    try:
        sync_followers.delay()
    except Exception:
        log.exception("follower sync failed to run")
        if sync_followers.app.conf.task_always_eager:  # ran here (demo, tests): its state below says why
            flash("同步没有完成，请稍后再试；原因见本页的同步状态。", "error")
        else:
            flash("任务队列暂时不可用，同步没有开始，请稍后再试。", "error")
    else:
        flash("已开始与微信同步粉丝名单，完成后本页显示结果。", "success")
    return redirect(url_for("console.follower_list"))


@bp.get("/followers/export.csv")
@require_roles(*MANAGERS)
def follower_export():  # type: ignore[no-untyped-def]
    search, _ = follower_service.parse_filter(request.args)
    chunks = follower_service.export_csv(search)  # audited here, before the first row leaves
    filename = f"followers-{datetime.now(LOCAL_TZ):%Y%m%d-%H%M}.csv"
    return Response(
        stream_with_context(chunks),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _follower_or_404(follower_id: int) -> Follower:
    return db.session.get(Follower, follower_id) or abort(404)


def _detail(follower: Follower, *, error: str | None = None, remark: str | None = None) -> str:
    return render_template(
        "console/follower_detail.html",
        follower=follower,
        last_active=follower_service.last_active(follower.openid),
        scene_names=channels.scene_names(),
        error=error,
        remark=follower.remark or "" if remark is None else remark,
        can_edit=current_user.role in MANAGERS,
        max_bytes=follower_service.REMARK_MAX_BYTES,
        back=_safe_back(request.args.get("back")),
    )


def _safe_back(value: str | None) -> str:
    """Only a path inside the follower list: never a redirect elsewhere."""
    return local_path(value, url_for("console.follower_list"), "/admin/followers")


@bp.get("/followers/<int:follower_id>")
@require_roles(*CONSOLE_ROLES)
def follower_detail(follower_id: int):  # type: ignore[no-untyped-def]
    return _detail(_follower_or_404(follower_id))


@bp.post("/followers/<int:follower_id>/remark")
@require_roles(*MANAGERS)
def follower_remark(follower_id: int):  # type: ignore[no-untyped-def]
    follower = _follower_or_404(follower_id)
    remark = request.form.get("remark", "")
    try:
        follower_service.set_remark(follower, remark)
    except ServiceError as exc:
        return _detail(follower, error=str(exc), remark=remark), 400
    flash("备注已保存，并已同步到微信", "success")
    return redirect(url_for("console.follower_detail", follower_id=follower.id, back=request.args.get("back")))
