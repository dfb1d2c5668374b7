from __future__ import annotations

from flask import current_app, render_template, url_for

from server.citizen import bp
from server.citizen.identity import citizen_required

# (endpoint, label, hint): a tile appears once its feature's pages exist
TILES = [
    ("citizen.tip_new", "随手拍", "举报违法线索"),
    ("citizen.tip_mine", "我的线索", "查看办理进度"),
    ("citizen.event_list", "活动报名", "7·15 公众开放日、直播预约"),
    ("citizen.contact_list", "社区联络点", "就近找城管执法社区工作室"),
    ("citizen.vote_list", "投票测评", "最美城管人投票、满意度测评"),
]


@bp.get("/")
@citizen_required
def home():  # type: ignore[no-untyped-def]
    tiles = [(url_for(ep), label, hint) for ep, label, hint in TILES if ep in current_app.view_functions]
    return render_template("citizen/home.html", tiles=tiles)
