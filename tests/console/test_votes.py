"""Console: campaigns and candidates, the follow warning, the brushing review with voids, exports, surveys."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from PIL import Image

from models import AuditLog, VoteCampaign
from server.extensions import db
from server.services import surveys, votes
from tests import factories
from tests.services.test_votes import brush, honest, make_campaign


@pytest.fixture(autouse=True)
def _one_transaction_mirror(request, monkeypatch):
    """Inside db_session every "commit" is a savepoint of one transaction, so transaction ids cannot tell votes
    apart: use the id-less delta path there. The snapshot path runs in the committed_db and live-server tests."""
    if "db_session" in request.fixturenames:
        monkeypatch.setattr(votes, "USE_TRANSACTION_IDS", False)


def test_create_campaign_and_candidate(as_admin, db_session):
    page = as_admin.get("/admin/votes/new")
    assert page.status_code == 200 and "仅限关注公众号的用户投票" in page.get_data(as_text=True)
    res = as_admin.post(
        "/admin/votes/new",
        {
            "title": "2026 最美城管人",
            "description": "",
            "starts_at": "2026-06-01T09:00",
            "ends_at": "2026-06-10T18:30",
            "votes_per_day": "5",
            "per_candidate_per_day": "1",
            "results_policy": "after_end",
        },
    )
    assert res.status_code == 302
    campaign = db_session.scalars(sa.select(VoteCampaign)).one()
    assert campaign.starts_at == datetime(2026, 6, 1, 1, 0, tzinfo=UTC)  # 09:00 Shanghai
    assert campaign.ends_at == datetime(2026, 6, 10, 10, 30, tzinfo=UTC)
    assert campaign.followers_only is False
    buf = io.BytesIO()
    Image.new("RGB", (300, 400), "blue").save(buf, "PNG")
    res = as_admin.post(
        f"/admin/votes/{campaign.id}/candidates/new",
        {
            "name": "王芳",
            "unit_name": "浦东分局",
            "story": "事迹",
            "sort": "1",
            "photo": (io.BytesIO(buf.getvalue()), "a.png"),
        },
        content_type="multipart/form-data",
    )
    assert res.status_code == 302
    detail = as_admin.get(f"/admin/votes/{campaign.id}").get_data(as_text=True)
    assert "王芳" in detail and "<svg" in detail
    assert campaign.candidates[0].photo_path.endswith(".jpg")
    actions = set(db_session.scalars(sa.select(AuditLog.action)))
    assert {"vote.campaign_create", "vote.candidate_create"} <= actions


def test_bad_period_is_refused(as_admin, db_session):
    res = as_admin.post(
        "/admin/votes/new",
        {
            "title": "测试",
            "starts_at": "2026-06-10T09:00",
            "ends_at": "2026-06-01T09:00",
            "votes_per_day": "1",
            "per_candidate_per_day": "1",
            "results_policy": "live",
        },
    )
    assert res.status_code == 400 and "结束时间必须晚于开始时间" in res.get_data(as_text=True)


def test_switching_followers_only_on_warns(as_admin, db_session):
    campaign = make_campaign()
    res = as_admin.post(
        f"/admin/votes/{campaign.id}/edit",
        {
            "title": campaign.title,
            "starts_at": "2026-05-01T00:00",
            "ends_at": "2026-06-01T00:00",
            "votes_per_day": "3",
            "per_candidate_per_day": "1",
            "results_policy": "live",
            "followers_only": "on",
        },
        follow_redirects=True,
    )
    html = res.get_data(as_text=True)
    assert res.status_code == 200 and "禁止以关注为投票前提" in html and campaign.followers_only is True


def test_review_flags_brushing_and_void_moves_ranking(as_admin, db_session, monkeypatch):
    monkeypatch.setitem(votes.RATE_LIMITS, "ip", 10_000)
    monkeypatch.setitem(votes.RATE_LIMITS, "subnet", 10_000)
    campaign = make_campaign(per_day=1)
    honest(campaign)
    brush(db_session, campaign)
    target = campaign.candidates[0]
    page = as_admin.get(f"/admin/votes/{campaign.id}/review").get_data(as_text=True)
    assert 'data-kind="ip" data-key="222.85.10.7"' in page and "可疑" in page and "300 个账号来自同一 IP" in page
    assert "分析时间" in page and f"/admin/votes/{campaign.id}/review?fresh=1" in page
    assert f'data-votes="{target.id}">314<' in as_admin.get(f"/admin/votes/{campaign.id}").get_data(as_text=True)
    cluster = as_admin.get(f"/admin/votes/{campaign.id}/review/ip?key=222.85.10.7").get_data(as_text=True)
    assert cluster.count('name="vote_id"') == 200
    no_reason = as_admin.post(
        f"/admin/votes/{campaign.id}/void",
        {"kind": "ip", "key": "222.85.10.7", "candidate_id": str(target.id)},
        follow_redirects=True,
    )
    assert "请填写作废原因" in no_reason.get_data(as_text=True)
    res = as_admin.post(
        f"/admin/votes/{campaign.id}/void",
        {"kind": "ip", "key": "222.85.10.7", "candidate_id": str(target.id), "reason": "同一 IP 新粉丝集中刷票"},
        follow_redirects=True,
    )
    assert "已作废 300 票" in res.get_data(as_text=True)
    assert f'data-votes="{target.id}">14<' in as_admin.get(f"/admin/votes/{campaign.id}").get_data(as_text=True)
    entry = db_session.scalars(sa.select(AuditLog).filter_by(action="vote.void")).one()
    assert entry.staff_name == "管理员甲" and entry.note == "同一 IP 新粉丝集中刷票"


def test_export_is_audited_and_matches(as_admin, db_session, monkeypatch):
    monkeypatch.setitem(votes.RATE_LIMITS, "ip", 10_000)
    campaign = make_campaign(per_day=1)
    honest(campaign, 12)
    res = as_admin.client.get(f"/admin/votes/{campaign.id}/export.xlsx")
    assert res.status_code == 200 and res.mimetype.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(res.data)).active
    got = {r[1]: r[3] for r in sheet.iter_rows(min_row=4, values_only=True) if isinstance(r[0], int)}
    assert got == {c.name: n for c, n in ((c, votes.db_counts(campaign.id)[c.id]) for c in campaign.candidates)}
    assert db_session.scalars(sa.select(AuditLog).filter_by(action="vote.export")).one().staff_name == "管理员甲"


def test_liaison_cannot_void_or_export(console, db_session):
    factories.staff("liaison1", "liaison", unit=factories.unit())
    console.login("liaison1")
    campaign = make_campaign()
    assert console.get("/admin/votes").status_code == 200
    assert console.get(f"/admin/votes/{campaign.id}/review").status_code == 403
    assert (
        console.post(f"/admin/votes/{campaign.id}/void", {"kind": "ip", "key": "x", "reason": "xx"}).status_code == 403
    )
    assert console.get(f"/admin/votes/{campaign.id}/export.xlsx").status_code == 403


def test_survey_create_results_and_export(as_admin, db_session):
    res = as_admin.post(
        "/admin/surveys/new",
        {
            "title": "2026年上半年满意度测评",
            "intro": "",
            "starts_at": "2026-03-01T00:00",
            "ends_at": "2026-06-30T23:59",
            "questions": "[单选 区] 您所在的区\n浦东新区\n黄浦区\n[打分] 总体评价\n"
            "[多选] 加强哪些\n占道\n噪声\n[填空 选填] 建议",
        },
    )
    assert res.status_code == 302
    survey = surveys.surveys()[0]
    district, score, multi, text = survey.questions
    at = datetime(2026, 4, 1, tzinfo=UTC)
    for i, (d, s) in enumerate([(0, 5), (0, 4), (0, 2), (1, 5)]):
        surveys.submit_response(
            survey,
            f"o-{i}",
            {district.id: [str(d)], score.id: [str(s)], multi.id: ["0", "1"], text.id: ["=cmd"]},
            now=at,
        )
    page = as_admin.get(f"/admin/surveys/{survey.id}").get_data(as_text=True)
    assert "75.0%" in page and "浦东新区" in page and "<svg" in page
    wb = load_workbook(io.BytesIO(as_admin.client.get(f"/admin/surveys/{survey.id}/export.xlsx").data))
    by_district = {r[0]: (r[1], r[2]) for r in wb["按区"].iter_rows(min_row=2, values_only=True)}
    assert by_district == {"浦东新区": (3, 66.7), "黄浦区": (1, 100.0)}
    details = list(wb["答卷明细"].iter_rows(min_row=2, values_only=True))
    assert len(details) == 4 and details[0][6] == "'=cmd"  # formula-like text stays text
    assert db_session.scalars(sa.select(AuditLog).filter_by(action="survey.export")).one().kind.value == "export"
    locked = as_admin.post(
        f"/admin/surveys/{survey.id}/edit",
        {
            "title": survey.title,
            "starts_at": "2026-03-01T00:00",
            "ends_at": "2026-06-30T23:59",
            "questions": "[打分] 新题",
        },
    )
    assert locked.status_code == 400 and "题目不能再修改" in locked.get_data(as_text=True)
    assert surveys.half_year_result(2026, 1).satisfied_pct == 75.0
    assert surveys.half_year_result(2026, 2).satisfied_pct is None


def test_voiding_ticked_votes_asks_first(as_admin, db_session):
    campaign = make_campaign()
    page = as_admin.get(f"/admin/votes/{campaign.id}/review/ip?key=222.85.10.7").get_data(as_text=True)
    form = page.split(f'<form method="post" action="/admin/votes/{campaign.id}/void"')[1].split(">")[0]
    assert "return confirm('作废所选的票？" in form  # as every other destructive button does


@pytest.mark.smoke  # on SQLite too, where the analysis is not made and the page must not say "nothing found"
def test_the_review_says_when_this_database_makes_no_analysis(as_admin, db_session):
    from tests.citizen.test_votes import campaign_now

    campaign = campaign_now()
    page = as_admin.get(f"/admin/votes/{campaign.id}/review").get_data(as_text=True)
    assert ('id="no-analysis"' in page) == (db.engine.dialect.name != "postgresql")
