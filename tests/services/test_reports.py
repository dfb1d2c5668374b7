"""Reports: the Excel workbook opens, holds the figures and native charts; stored once per period."""

from __future__ import annotations

import io
import zipfile
from datetime import date, timedelta

import openpyxl
import pytest
import sqlalchemy as sa

from models import PublicityRecord, RecordKind, StatArticle, StatDaily, StatReport
from server.extensions import db
from server.services import datacube, reports, targets
from tests import factories


@pytest.fixture
def february(db_session):
    start = date(2026, 2, 1)
    db_session.add(StatDaily(ref_date=date(2026, 1, 31), cumulate_user=10_000))
    db_session.add_all(
        [
            StatDaily(
                ref_date=start + timedelta(days=i),
                cumulate_user=10_000 + 10 * (i + 1),
                new_user=12,
                cancel_user=2,
                read_user=1000 + i,
                share_user=50,
            )
            for i in range(28)
        ]
    )
    db_session.add(
        StatArticle(
            msgid="9_1",
            title="垃圾分类新规",
            publish_date=date(2026, 2, 3),
            stat_date=date(2026, 2, 10),
            read_user=120_000,
            share_user=900,
        )
    )
    db_session.commit()
    factories.unit("一分局")
    targets.add_record(kind="media_report", title="报道", happened_on="2026-02-05", outlet="新华网", submit_key="r1")


def test_monthly_workbook_opens_with_figures_and_charts(february, monkeypatch):
    monkeypatch.setattr(datacube, "beijing_today", lambda: date(2026, 3, 1))
    content = reports.workbook(reports.build("monthly", date(2026, 2, 14)))
    wb = openpyxl.load_workbook(io.BytesIO(content))
    assert wb.sheetnames == ["概览", "每日数据", "图文排行", "新增来源", "单位考核"]
    overview = {row[0]: row[1] for row in wb["概览"].iter_rows(min_row=5, max_row=16, values_only=True)}
    assert overview["期初粉丝"] == 10_000 and overview["期末粉丝"] == 10_280 and overview["净增粉丝"] == 280
    assert overview["新关注"] == 12 * 28 and overview["阅读人数"] == sum(1000 + i for i in range(28))
    assert overview["媒体报道"] == 1
    daily = list(wb["每日数据"].iter_rows(min_row=2, values_only=True))
    assert len(daily) == 28 and daily[0][1] == 10_010
    assert wb["图文排行"]["B2"].value == "垃圾分类新规"
    # Native Excel charts, read back by openpyxl and present as chart parts in the package.
    charts = wb["每日数据"]._charts
    assert len(charts) == 3
    assert {type(c).__name__ for c in charts} == {"LineChart", "BarChart"}
    assert len(wb["单位考核"]._charts) == 1
    names = zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert sum(n.startswith("xl/charts/chart") for n in names) == 4


def test_generate_stores_once_per_period_and_schedule_picks_last_month(february, monkeypatch):
    monkeypatch.setattr(datacube, "beijing_today", lambda: date(2026, 3, 1))
    first = reports.generate("monthly", date(2026, 2, 1), by="张三")
    again = reports.generate("monthly", date(2026, 2, 20), by="李四")
    assert again.id == first.id and again.generated_by == "李四"
    done = reports.generate_scheduled(today=date(2026, 3, 1))
    assert [(r.kind, r.period_start) for r in done] == [("monthly", date(2026, 2, 1))]
    assert reports.db.session.scalar(sa.select(sa.func.count()).select_from(StatReport)) == 1
    done = reports.generate_scheduled(today=date(2026, 1, 1))
    assert [(r.kind, r.period_start) for r in done] == [("monthly", date(2025, 12, 1)), ("yearly", date(2025, 1, 1))]
    yearly = openpyxl.load_workbook(io.BytesIO(done[1].content))
    assert yearly["概览"]["A1"].value == "2025 年宣传工作年报"
    # The days after the 1st build it again (a failed sync on the 1st left the last day out), unless someone has
    # built it by hand since.
    assert [r.period_start for r in reports.generate_scheduled(today=date(2026, 3, 2))] == [date(2026, 2, 1)]
    reports.generate("monthly", date(2026, 2, 1), by="王五")
    assert reports.generate_scheduled(today=date(2026, 3, 3)) == []
    assert reports.list_reports()[0].generated_by == "王五"


def test_the_scheduled_build_leaves_a_report_built_by_hand_while_it_ran(february, monkeypatch):
    monkeypatch.setattr(datacube, "beijing_today", lambda: date(2026, 3, 1))
    workbook, clicked = reports.workbook, []

    def slow_workbook(data):  # the scheduled build is still writing its workbook when an editor clicks 生成
        if not clicked:
            clicked.append("clicking")
            clicked[0] = reports.generate("monthly", date(2026, 2, 1), by="王五")
        return workbook(data)

    monkeypatch.setattr(reports, "workbook", slow_workbook)
    [kept] = reports.generate_scheduled(today=date(2026, 3, 1))
    assert kept.generated_by == "王五" and kept.content == clicked[0].content
    assert db.session.scalar(sa.select(StatReport.generated_by)) == "王五"
    # Built by hand before the scheduled run started: the 1st's run replaces it, as it did.
    clicked.append("done")
    [replaced] = reports.generate_scheduled(today=date(2026, 3, 1))
    assert replaced.generated_by == reports.SCHEDULED_BY


def test_scheduled_task_runs_through_celery(february, monkeypatch):
    from server.tasks import stats as stats_tasks

    monkeypatch.setattr(datacube, "beijing_today", lambda: date(2026, 3, 1))
    stats_tasks.generate_scheduled_reports.delay()  # eager in tests
    assert [r.period_start for r in reports.list_reports()] == [date(2026, 2, 1)]


def test_the_month_under_way_counts_only_what_has_happened(february, monkeypatch):
    """An open day published ahead of time, or a report dated later in the month, has not happened yet: the report's
    figures say what the targets table beside them says, not what is scheduled through the month's end."""
    from datetime import UTC, datetime

    from server.services import events

    monkeypatch.setattr(datacube, "beijing_today", lambda: date(2026, 2, 14))
    starts = datetime(2026, 2, 25, 2, tzinfo=UTC)  # 10:00 Beijing, eleven days ahead
    open_day = events.save_event(
        title="城管开放日",
        kind="offline",
        registration_opens_at=starts - timedelta(days=20),
        registration_closes_at=starts - timedelta(days=1),
        published=True,
    )
    events.save_session(open_day, starts_at=starts, ends_at=starts + timedelta(hours=2), quota=50, venue="市民中心")
    # Recorded before add_record refused dates after today (it does now): rows like it may be in the database.
    db.session.add(
        PublicityRecord(
            kind=RecordKind.MEDIA_REPORT,
            title="后来的",
            outlet="新华网",
            happened_on=date(2026, 2, 20),
            submit_key="r2",
        )
    )
    db.session.commit()

    for kind in ("monthly", "yearly"):
        data = reports.build(kind, date(2026, 2, 1))
        assert data.records["media_reports"] == 1, kind  # 5 February's, not 20 February's
        assert data.records["activities"] == 0, kind  # the open day is on the 25th
        p = {item.key: item for item in data.progress}
        assert p["activities"].actual == data.records["activities"]


def test_the_scheduled_report_waits_for_the_months_last_day(app):
    """WeChat publishes a day's figures at about 10:00 Beijing the next day, and the sync fetches them after that: a
    report built earlier on the 1st ended a day short (期末粉丝 of the day before, the last day's new followers and
    reads missing)."""
    beat = app.config["CELERY"]["beat_schedule"]
    report, sync = beat["stats-reports"]["schedule"], beat["stats-datacube"]["schedule"]  # both in UTC
    assert report.day_of_month == {1, 2, 3}  # the 1st, then again unless rebuilt by hand (below)
    assert min(report.hour) * 60 + min(report.minute) > max(sync.hour) * 60 + max(sync.minute)
