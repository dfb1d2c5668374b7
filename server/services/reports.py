"""Monthly and yearly reports: one data set, rendered as an Excel workbook (native charts) or a printable page."""

from __future__ import annotations

import calendar
import io
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Alignment, Font, PatternFill
from sqlalchemy.exc import IntegrityError

from models import StatReport, utcnow
from server.extensions import db
from server.services import ServiceError, datacube, sheets, targets

KINDS = {"monthly": "月报", "yearly": "年报"}


@dataclass
class ReportData:
    kind: str
    start: date
    end: date
    title: str
    totals: dict[str, Any]
    daily: list[dict[str, Any]]
    progress: list[targets.Progress]
    top: list[Any]
    ten_w: list[Any]
    sources: list[dict[str, Any]]
    scoreboard: list[targets.ScoreRow]
    records: dict[str, int] = field(default_factory=dict)
    through: date | None = None  # the last day the targets' progress counts (today, for the month under way)


def period(kind: str, start: date) -> tuple[date, date]:
    if kind == "monthly":
        first = start.replace(day=1)
        return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])
    if kind == "yearly":
        return date(start.year, 1, 1), date(start.year, 12, 31)
    raise ServiceError("报表类型不正确")


def previous_month(today: date) -> date:
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1)


def _filled(rows: list[dict[str, Any]], start: date, end: date, grain: str) -> list[dict[str, Any]]:
    """One row per day (or month) of the period, so tables and charts keep their shape where data is missing."""
    found = {r["bucket"]: r for r in rows}
    buckets, day = [], start
    while day <= end:
        buckets.append(day)
        day = day + timedelta(days=1) if grain == "day" else (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    empty = {"followers": None, "new": 0, "cancel": 0, "net": 0, "reads": 0, "shares": 0}
    return [found.get(b) or {"bucket": b, **empty} for b in buckets]


def build(kind: str, start: date) -> ReportData:
    """Everything a report shows, each figure aggregated in SQL."""
    start, end = period(kind, start)
    today = datacube.beijing_today()
    last = min(end, today - timedelta(days=1))
    through = min(end, today)  # the office's own records and events: what has happened, not what is scheduled
    grain = "day" if kind == "monthly" else "month"
    daily = _filled(datacube.series(start, end, grain), start, end, grain)
    before = datacube.followers_on(start - timedelta(days=1))
    after = datacube.followers_on(last) if last >= start else None
    totals = {
        "followers_start": before,
        "followers_end": after,
        "followers_net": (after - before) if after is not None and before is not None else None,
        "new": sum(r["new"] for r in daily),
        "cancel": sum(r["cancel"] for r in daily),
        "reads": sum(r["reads"] for r in daily),
        "shares": sum(r["shares"] for r in daily),
        "articles": datacube.count_articles(start, end),
    }
    title = f"{start.year} 年{start.month} 月宣传工作月报" if kind == "monthly" else f"{start.year} 年宣传工作年报"
    return ReportData(
        kind=kind,
        start=start,
        end=end,
        title=title,
        totals=totals,
        daily=daily,
        progress=targets.progress(start.year, as_of=through),
        through=through,
        top=datacube.top_articles(start, end, 20),
        ten_w=datacube.top_articles(start, end, 100, min_reads=targets.TEN_W),
        sources=datacube.new_by_source(start, end),
        scoreboard=targets.scoreboard(start.year, start.month if kind == "monthly" else None),
        records={
            name: int(targets.count(name, start, through))
            for name in ("media_reports", "activities", "livestreams", "products")
        },
    )


HEAD = Font(bold=True, color="FFFFFF")
HEAD_FILL = PatternFill("solid", fgColor="0B5CAD")


def _table(ws: Any, row: int, headers: list[str], rows: list[list[Any]]) -> int:
    for col, text in enumerate(headers, 1):
        cell = ws.cell(row=row, column=col, value=text)
        cell.font, cell.fill = HEAD, HEAD_FILL
        cell.alignment = Alignment(horizontal="center")
    for r, values in enumerate(rows, row + 1):
        for col, value in enumerate(values, 1):
            ws.cell(row=r, column=col, value=value)
    return row + len(rows)


def workbook(data: ReportData) -> bytes:
    """An .xlsx with the figures and native Excel charts (they stay editable in Excel and WPS)."""
    wb = Workbook()
    ws = wb.active
    ws.title = "概览"
    ws["A1"] = data.title
    ws["A1"].font = Font(bold=True, size=16)
    ws["A2"] = f"统计区间：{data.start} 至 {data.end}（北京时间，数据来自微信公众平台与人工登记）"
    t = data.totals
    summary = [
        ["期初粉丝", t["followers_start"]],
        ["期末粉丝", t["followers_end"]],
        ["净增粉丝", t["followers_net"]],
        ["新关注", t["new"]],
        ["取消关注", t["cancel"]],
        ["阅读人数", t["reads"]],
        ["分享人数", t["shares"]],
        ["发布图文", t["articles"]],
        ["媒体报道", data.records.get("media_reports", 0)],
        ["活动", data.records.get("activities", 0)],
        ["直播", data.records.get("livestreams", 0)],
        ["新媒体产品", data.records.get("products", 0)],
    ]
    end = _table(ws, 4, ["指标", "数值"], summary)
    _table(
        ws,
        end + 2,
        ["年度目标", "目标", "完成", "应完成（时间进度）", "年底预计", "状态"],
        [
            [
                p.label,
                p.fmt(p.target) if p.unit != "%" else f"+{p.target:.0f} %",
                p.fmt(p.actual),
                p.fmt(p.expected),
                p.fmt(p.projected),
                p.summary,
            ]
            for p in data.progress
        ],
    )
    ws.column_dimensions["A"].width = 18
    for col in "BCDE":
        ws.column_dimensions[col].width = 16
    ws.column_dimensions["F"].width = 48

    ds = wb.create_sheet("每日数据" if data.kind == "monthly" else "每月数据")
    rows = [[r["bucket"], r["followers"], r["new"], r["cancel"], r["net"], r["reads"], r["shares"]] for r in data.daily]
    _table(ds, 1, ["日期", "粉丝总数", "新关注", "取消关注", "净增", "阅读人数", "分享人数"], rows)
    for r in range(2, len(rows) + 2):
        ds.cell(row=r, column=1).number_format = "yyyy-mm-dd"
    ds.column_dimensions["A"].width = 12
    n = len(rows)
    if n:
        cats = Reference(ds, min_col=1, min_row=2, max_row=n + 1)
        line = LineChart()
        line.title, line.y_axis.title, line.height, line.width = "粉丝总数", "人", 8, 18
        line.add_data(Reference(ds, min_col=2, min_row=1, max_row=n + 1), titles_from_data=True)
        line.set_categories(cats)
        ds.add_chart(line, "I2")
        bars = BarChart()
        bars.title, bars.height, bars.width = "新关注与取消关注", 8, 18
        bars.add_data(Reference(ds, min_col=3, max_col=4, min_row=1, max_row=n + 1), titles_from_data=True)
        bars.set_categories(cats)
        ds.add_chart(bars, "I19")
        reads = LineChart()
        reads.title, reads.height, reads.width = "阅读人数", 8, 18
        reads.add_data(Reference(ds, min_col=6, min_row=1, max_row=n + 1), titles_from_data=True)
        reads.set_categories(cats)
        ds.add_chart(reads, "I36")

    aw = wb.create_sheet("图文排行")
    _table(
        aw,
        1,
        ["排名", "标题", "发布日期", "阅读人数", "分享人数", "点赞", "在看"],
        [
            [i, sheets.text(a.title or a.msgid), a.publish_date, a.read_user, a.share_user, a.like_user, a.zaikan_user]
            for i, a in enumerate(data.top, 1)
        ],
    )
    aw.column_dimensions["B"].width = 40
    end = len(data.top) + 3
    aw.cell(row=end, column=1, value="10W+ 文章").font = Font(bold=True)
    _table(
        aw,
        end + 1,
        ["标题", "发布日期", "阅读人数"],
        [[sheets.text(a.title or a.msgid), a.publish_date, a.read_user] for a in data.ten_w],
    )

    sw = wb.create_sheet("新增来源")
    _table(sw, 1, ["来源", "新关注", "取消关注"], [[s["label"], s["new"], s["cancel"]] for s in data.sources])
    if data.sources:
        chart = BarChart()
        chart.type, chart.title, chart.height, chart.width = "bar", "新关注来源", 8, 16
        chart.add_data(Reference(sw, min_col=2, min_row=1, max_row=len(data.sources) + 1), titles_from_data=True)
        chart.set_categories(Reference(sw, min_col=1, min_row=2, max_row=len(data.sources) + 1))
        sw.add_chart(chart, "E2")

    uw = wb.create_sheet("单位考核")
    headers = ["排名", "单位", *(label for label, _ in targets.METRICS.values()), "得分"]
    last = _table(
        uw,
        1,
        headers,
        [
            [r.rank, "　" * r.depth + sheets.text(r.unit_name), *(r.values[m] for m in targets.METRICS), r.score]
            for r in data.scoreboard
        ],
    )
    uw.column_dimensions["B"].width = 18
    top = [r for r in data.scoreboard if r.depth == 0]  # a district's score holds its squads': the chart shows these
    if top:
        first = last + 2
        _table(uw, first, ["一级单位", "得分"], [[sheets.text(r.unit_name), r.score] for r in top])
        chart = BarChart()
        chart.title, chart.height, chart.width = "单位得分", 8, 18
        chart.add_data(Reference(uw, min_col=2, min_row=first, max_row=first + len(top)), titles_from_data=True)
        chart.set_categories(Reference(uw, min_col=1, min_row=first + 1, max_row=first + len(top)))
        uw.add_chart(chart, f"{chr(ord('A') + len(headers) + 1)}2")

    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def filename(kind: str, start: date) -> str:
    if kind == "monthly":
        return f"宣传工作月报-{start:%Y-%m}.xlsx"
    return f"宣传工作年报-{start:%Y}.xlsx"


def generate(kind: str, start: date, *, by: str) -> StatReport:
    """Build and store the report for the period; generating it again replaces the stored one, except that the
    scheduled run leaves alone a report someone built by hand while it was building (theirs is as new, and theirs is
    the one they are about to download)."""
    start, _ = period(kind, start)
    started = utcnow()
    content = workbook(build(kind, start))
    values = {"content": content, "size": len(content), "generated_at": utcnow(), "generated_by": by[:64]}
    stored = sa.select(StatReport).filter_by(kind=kind, period_start=start).with_for_update()
    report = db.session.scalar(stored)  # locked: a build by hand committing now is seen, or waits for ours
    if report is None:
        report = StatReport(kind=kind, period_start=start, **values)
        db.session.add(report)
        try:
            db.session.commit()
            return report
        except IntegrityError:  # the scheduled run and a click at the same moment: update the winner's row
            db.session.rollback()
            report = db.session.scalar(stored)
            assert report is not None
    if by == SCHEDULED_BY and report.generated_by != SCHEDULED_BY and report.generated_at >= started:
        db.session.commit()
        return report
    for name, value in values.items():
        setattr(report, name, value)
    db.session.commit()
    return report


SCHEDULED_BY = "定时任务"


def generate_scheduled(today: date | None = None) -> list[StatReport]:
    """On the 1st: last month's report, and on 1 January last year's too. On the days after, the same again unless
    someone has built it by hand since: a sync that failed or ran late on the 1st left the month's last day out, and
    WeChat corrects delayed days afterwards."""
    today = today or datacube.beijing_today()
    periods = [("monthly", previous_month(today))]
    if today.month == 1:
        periods.append(("yearly", date(today.year - 1, 1, 1)))
    done = []
    for kind, start in periods:
        stored = db.session.scalar(sa.select(StatReport.generated_by).filter_by(kind=kind, period_start=start))
        if today.day == 1 or stored in (None, SCHEDULED_BY):
            done.append(generate(kind, start, by=SCHEDULED_BY))
    return done


def list_reports(limit: int = 60) -> list[StatReport]:
    return list(
        db.session.scalars(sa.select(StatReport).order_by(StatReport.period_start.desc(), StatReport.kind).limit(limit))
    )
