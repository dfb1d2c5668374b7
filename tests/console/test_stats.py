"""Console statistics pages: the dashboard percentages, plan and records forms, reports, roles."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime

import openpyxl
import pytest

from models import Channel, InboundMessage, PublicityRecord, RecordKind, StatDaily
from server.services import datacube, targets
from tests import factories


@pytest.fixture
def today(monkeypatch):
    monkeypatch.setattr(datacube, "beijing_today", lambda: date(2026, 3, 15))  # as of 14 March: 20 % of the year


@pytest.fixture
def figures(db_session, today):
    db_session.add_all(
        [
            StatDaily(ref_date=date(2025, 12, 31), cumulate_user=1_000_000),
            StatDaily(
                ref_date=date(2026, 3, 14), cumulate_user=1_030_000, new_user=40, cancel_user=5, read_user=300_000
            ),
        ]
    )
    db_session.add_all(
        [
            PublicityRecord(
                kind=RecordKind.MEDIA_REPORT,
                title=f"r{i}",
                outlet="新华网",
                happened_on=date(2026, 2, 1),
                submit_key=f"k{i}",
            )
            for i in range(100)
        ]
    )
    db_session.commit()
    targets.save_plan(2026, {"baseline_reads": "1000000"})


def test_dashboard_shows_hand_computed_percentages(as_admin, figures):
    res = as_admin.get("/admin/stats?year=2026")
    assert res.status_code == 200
    html = res.get_data(as_text=True)
    assert "按当前进度：年底 +15.0 % — 落后" in html  # followers +3 % by 20 % of the year
    assert 'data-testid="pct-followers">完成 15.0 % · 应完成 20.0 %' in html
    assert 'data-testid="pct-reads">完成 25.0 % · 应完成 20.0 %' in html
    assert 'data-testid="pct-positive_reports">完成 20.0 % · 应完成 20.3 %' in html  # own records: through today
    assert "按当前进度：年底 +50.0 %（目标 +20 %）— 领先" in html
    assert html.count("<svg") >= 3
    for grain in ("day", "month"):
        assert as_admin.get(f"/admin/stats?year=2026&grain={grain}").status_code == 200


def test_nav_links_the_dashboard(as_admin, db_session):
    assert 'href="/admin/stats"' in as_admin.get("/admin/").get_data(as_text=True)


def test_plan_form_saves_and_refuses_bad_input(as_admin, db_session, today):
    res = as_admin.post("/admin/stats/plan", {"year": "2026", "activities": "abc"})
    assert res.status_code == 400 and "须为数字" in res.get_data(as_text=True)
    for value, message in (("1e309", "须为数字"), ("-inf", "须为数字"), ("nan", "须为数字"), ("3000000000", "过大")):
        res = as_admin.post("/admin/stats/plan", {"year": "2026", "activities": value})
        assert res.status_code == 400 and message in res.get_data(as_text=True), value
    res = as_admin.post("/admin/stats/plan", {"year": "2026", "follower_growth_pct": "1e300"})
    assert res.status_code == 400 and "过大" in res.get_data(as_text=True)
    res = as_admin.post("/admin/stats/plan", {"year": "2026", "activities": "90", "products": "12"})
    assert res.status_code == 302
    assert targets.get_plan(2026).activities == 90
    res = as_admin.post("/admin/stats/plan/projects?year=2026", {"name": "开放日", "months": "7"})
    assert res.status_code == 302
    assert "开放日" in as_admin.get("/admin/stats/plan?year=2026").get_data(as_text=True)


def test_reviewer_reads_but_cannot_edit_the_plan(console, db_session, today):
    factories.staff("rev1", "reviewer")
    console.login("rev1")
    assert console.get("/admin/stats/plan?year=2026").status_code == 200
    assert console.post("/admin/stats/plan", {"year": "2026", "activities": "1"}).status_code == 403
    assert console.get("/admin/stats/sync").status_code == 403


def test_liaison_records_only_for_own_unit(console, db_session, today):
    mine, other = factories.unit("一分局"), factories.unit("二分局")
    factories.staff("liaison1", "liaison", unit=mine)
    console.login("liaison1")
    console.get("/admin/stats/records")
    data = {"kind": "activity", "title": "进社区", "happened_on": "2026-03-01", "submit_key": "abc123"}
    assert console.post("/admin/stats/records", {**data, "unit_id": str(other.id)}).status_code == 403
    assert console.post("/admin/stats/records", data).status_code == 302
    assert console.post("/admin/stats/records", data).status_code == 302  # a double submit
    records = targets.list_records(2026).items
    assert [(r.title, r.unit_id) for r in records] == [("进社区", mine.id)]


def test_a_year_of_records_is_paged_not_cut_at_a_number(as_admin, db_session, today, monkeypatch):
    from server.extensions import db

    monkeypatch.setattr(targets, "RECORDS_PER_PAGE", 2)
    for day in (1, 2, 3):
        db.session.add(
            PublicityRecord(
                kind=RecordKind.MEDIA_REPORT, title=f"报道{day}", happened_on=date(2026, 3, day), submit_key=f"k{day}"
            )
        )
    db.session.commit()
    first = as_admin.get("/admin/stats/records?year=2026").get_data(as_text=True)
    assert "报道3" in first and "报道2" in first and "报道1" not in first and "第 1 / 2 页" in first
    assert "报道1" in as_admin.get("/admin/stats/records?year=2026&page=2").get_data(as_text=True)


def test_reports_generate_list_download_print(as_admin, figures):
    res = as_admin.post("/admin/stats/reports", {"kind": "monthly", "period": "2026-02"})
    assert res.status_code == 302
    page = as_admin.get("/admin/stats/reports").get_data(as_text=True)
    assert "2026-02" in page
    report_id = int(re.search(r"/admin/stats/reports/(\d+)\.xlsx", page).group(1))
    res = as_admin.client.get(f"/admin/stats/reports/{report_id}.xlsx")
    assert res.status_code == 200 and res.mimetype.endswith("spreadsheetml.sheet")
    wb = openpyxl.load_workbook(io.BytesIO(res.data))
    assert wb["每日数据"]._charts
    res = as_admin.get("/admin/stats/reports/print?kind=yearly&period=2026")
    html = res.get_data(as_text=True)
    assert res.status_code == 200 and "@media print" in html and "<svg" in html and "2026 年宣传工作年报" in html
    assert as_admin.client.get("/admin/stats/reports/export?kind=monthly&period=2026-02").status_code == 200
    assert as_admin.get("/admin/stats/reports/print?kind=weekly").status_code == 400


def test_scoreboard_and_weights(as_admin, db_session, today):
    factories.unit("一分局")
    assert "一分局" in as_admin.get("/admin/stats/scoreboard?year=2026&month=3").get_data(as_text=True)
    assert as_admin.post("/admin/stats/weights", {"year": "2026", "activities": "7"}).status_code == 302
    assert targets.get_weights()["activities"] == 7


def test_sync_page_and_backfill(as_admin, db_session, emulator, today):
    emulator.hook("today", {"date": "2026-03-15"})
    assert as_admin.get("/admin/stats/sync").status_code == 200
    res = as_admin.post("/admin/stats/sync", {"start": "2026-03-01"})  # tasks run eagerly in tests
    assert res.status_code == 302
    page = as_admin.get("/admin/stats/sync").get_data(as_text=True)
    assert "getusercumulate" in page
    assert datacube.followers_on(date(2026, 3, 14)) is not None


def test_table_figures_are_never_in_scientific_notation():
    from server.filters import figure

    assert [figure(v) for v in (58_574_200.0, -5.85, 2.5, 3.0, 0.0, None)] == [
        "58,574,200",
        "-5.85",
        "2.5",
        "3",
        "0",
        "—",
    ]


def test_scan_scenes_count_through_today_and_name_channels(as_admin, db_session):
    """The card reads our own log: today's scans count (as on the channel list), a channel QR shows by name, and
    the one-off staff binding scenes are one row, not one per token."""
    now = datetime.now(UTC)
    db_session.add(Channel(name="人民广场宣传栏", scene="square_board"))
    keys = [("scan", "square_board"), ("subscribe", "qrscene_square_board"), ("scan", "bind_tok1")]
    keys += [("subscribe", "qrscene_bind_tok2")]
    db_session.add_all(
        InboundMessage(
            dedupe_key=f"e:{i}",
            openid=f"o-{i}",
            msg_type="event",
            event=event,
            event_key=key,
            payload={},
            sent_at=now,
            received_at=now,
        )
        for i, (event, key) in enumerate(keys)
    )
    db_session.commit()
    html = as_admin.get("/admin/stats").get_data(as_text=True)
    card = html.split("扫码关注场景")[1]
    assert (
        '<td>人民广场宣传栏 <code class="hint">square_board</code></td><td class="num">1</td><td class="num">1</td>'
        in card
    )
    assert '<td>人员微信绑定二维码</td><td class="num">1</td><td class="num">1</td>' in card
    assert "tok1" not in card and "tok2" not in card


def test_a_yearly_workbook_downloads_named_for_its_year(as_admin, db_session, today):
    # The direct download was named as a month (宣传工作年报-2026-01.xlsx); the stored one says 2026.
    from urllib.parse import quote

    res = as_admin.client.get("/admin/stats/reports/export?kind=yearly&period=2026")
    assert res.status_code == 200
    assert res.headers["Content-Disposition"].endswith(quote("宣传工作年报-2026.xlsx"))
    res = as_admin.client.get("/admin/stats/reports/export?kind=monthly&period=2026-02")
    assert res.headers["Content-Disposition"].endswith(quote("宣传工作月报-2026-02.xlsx"))


def test_the_records_page_says_events_count_by_themselves(as_admin, db_session, today):
    # Published events count towards 活动/直播 on their own: a page telling editors to register 活动 and 直播 here
    # had the open day counted twice.
    html = as_admin.get("/admin/stats/records?year=2026").get_data(as_text=True)
    assert "「活动」中发布的开放日和直播按场次日期自动计入，请勿重复登记" in html


def test_the_scoreboard_chart_draws_a_fractional_score_as_the_table_prints_it(as_admin, db_session):
    # Four photos at the default 0.2 each: 0.8. The chart drew int(0.8), a 0 bar under a table saying 0.8.
    officer = factories.staff("of1", "officer", unit=factories.unit("浦东分局"))
    factories.photo_library(officer, 4, set())
    page = as_admin.get(f"/admin/stats/scoreboard?year={datetime.now(UTC).year}").get_data(as_text=True)
    assert re.search(r"浦东分局</td>.*?<strong>0\.8</strong>", page, re.S)
    chart = page.split('class="card chart"')[1].split("</svg>")[0]
    assert re.findall(r'<text class="value"[^>]*>([^<]*)</text>', chart) == ["0.8"]
    assert "浦东分局：0.8</title>" in chart


def test_without_last_years_reads_the_reads_target_is_unknown_not_zero(as_admin, db_session, today):
    page = as_admin.get("/admin/stats?year=2026").get_data(as_text=True)
    row = page.split("<td>阅读量")[1].split("</tr>")[0]
    cells = re.findall(r'<td class="num">(.*?)</td>', row, re.S)
    assert cells[0].startswith("—") and "+20 %" in cells[0]
    assert "缺少上年阅读量基线" in row


def test_the_net_followers_chart_shows_a_day_of_net_loss_below_zero(as_admin, db_session, today):
    db_session.add_all(
        [
            StatDaily(ref_date=date(2026, 3, 12), cumulate_user=1_000_030, new_user=40, cancel_user=10),
            StatDaily(ref_date=date(2026, 3, 13), cumulate_user=1_000_005, new_user=5, cancel_user=30),
        ]
    )
    db_session.commit()
    html = as_admin.get("/admin/stats?year=2026&grain=day").get_data(as_text=True)
    chart = re.search(r'<svg [^>]*aria-label="净增粉丝".*?</svg>', html, re.S).group(0)
    assert "<title>03-13：-25</title>" in chart and 'fill="#b91c1c"' in chart
    assert "<title>03-12：30</title>" in chart
    assert re.search(r'<text class="low"[^>]*>-25</text>', chart)  # the axis is labelled down to the loss
