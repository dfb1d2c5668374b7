"""Template filters shared by the console and the citizen pages: times are stored in UTC, shown in Shanghai."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def local_dt(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "" if value is None else value.astimezone(LOCAL_TZ).strftime(fmt)


def local_when(value: datetime | None) -> str:
    """A time for citizens: 07月15日 09:00, with the year when it is not this one (seen in December, "07月15日"
    reads as last summer)."""
    if value is None:
        return ""
    local = value.astimezone(LOCAL_TZ)
    return local.strftime("%m月%d日 %H:%M" if local.year == datetime.now(LOCAL_TZ).year else "%Y年%m月%d日 %H:%M")


def figure(value: float | None) -> str:
    """A figure for a table: thousands separated, at most two decimals, never in scientific notation; — for none."""
    if value is None:
        return "—"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def register_filters(app: Flask) -> None:
    app.add_template_filter(local_dt)
    app.add_template_filter(local_when)
    app.add_template_filter(figure)
