from __future__ import annotations

from flask import render_template
from flask_login import current_user

from models import Role
from server.console import bp
from server.console.access import visible_unit_ids
from server.console.charts import bar_chart
from server.services import dashboard


@bp.get("/")
def home():  # type: ignore[no-untyped-def]
    if current_user.role is Role.OFFICER:
        return render_template("console/officer_home.html")
    daily = dashboard.daily_new_followers(30)
    chart = bar_chart([(d.strftime("%m-%d"), n) for d, n in daily], title="近 30 天新增关注")
    return render_template(
        "console/home.html",
        counts=dashboard.follower_counts(),
        chart=chart,
        todo=dashboard.publishing_todo(visible_unit_ids()),
    )
