"""Citizen vote and survey pages: OAuth identity, the vote button's JSON answer, refusals, one survey answer each;
and votes sent at once to the live gunicorn server (3 processes) counting exactly once."""

from __future__ import annotations

import re
import secrets
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from itsdangerous import URLSafeTimedSerializer

from models import SurveyResponse, Vote
from server.services import surveys, votes
from tests.services.test_votes import _committed_campaign


@pytest.fixture(autouse=True)
def _one_transaction_mirror(request, monkeypatch):
    """Inside db_session every "commit" is a savepoint of one transaction, so transaction ids cannot tell votes
    apart: use the id-less delta path there. The snapshot path runs in the committed_db and live-server tests."""
    if "db_session" in request.fixturenames:
        monkeypatch.setattr(votes, "USE_TRANSACTION_IDS", False)


def campaign_now(**kwargs):
    now = datetime.now(UTC)
    campaign = votes.save_campaign(
        title="最美城管人",
        description="网络投票",
        starts_at=kwargs.pop("starts_at", now - timedelta(hours=1)),
        ends_at=kwargs.pop("ends_at", now + timedelta(days=3)),
        votes_per_day=kwargs.pop("per_day", 2),
        per_candidate_per_day=1,
        followers_only=False,
        results_policy=kwargs.pop("results_policy", "live"),
    )
    for name in ("王芳", "李强"):
        votes.save_candidate(campaign, name=name, unit_name="浦东分局", story="十年如一日\n守护街巷")
    return campaign


def csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def vote_json(client, campaign, candidate, token):
    return client.post(
        f"/m/vote/{campaign.id}/cast",
        data={"csrf_token": token, "candidate_id": candidate.id},
        headers={"Accept": "application/json"},
    )


def test_vote_page_button_and_count(client, citizen_login):
    campaign = campaign_now()
    citizen_login("o-voter", path=f"/m/vote/{campaign.id}")
    page = client.get(f"/m/vote/{campaign.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "王芳" in html and "投 TA 一票" in html and "每人每天可投 2 票" in html
    first, second = campaign.candidates
    res = vote_json(client, campaign, first, csrf(html))
    assert res.status_code == 200 and res.json == {
        "ok": True,
        "message": "投票成功！今天还可以投 1 票",
        "count": 1,
        "remaining": 1,
        "candidate_done": True,  # one vote a candidate a day: the page closes the button
        "counts": {str(first.id): 1, str(second.id): 0},  # the page redraws its ranking from these
    }
    again = vote_json(client, campaign, first, csrf(html))
    assert again.status_code == 400 and "已为 TA 投过" in again.json["error"]
    # A refusal for the day says which buttons close (a page left open in another tab offered them again).
    assert again.json["closes"] == ["candidate", "今天已投过 TA"]
    assert vote_json(client, campaign, second, csrf(html)).json["remaining"] == 0
    used_up = vote_json(client, campaign, second, csrf(html)).json
    assert "票已经投完" in used_up["error"] and used_up["closes"] == ["all", "今日票已投完"]
    detail = client.get(f"/m/vote/{campaign.id}/c/{first.id}").get_data(as_text=True)
    assert "守护街巷" in detail and f'data-count="{first.id}">1<' in detail
    assert "今日票已投完" in detail and "投 TA 一票" not in detail  # said before a tap


def test_form_fallback_without_javascript(client, citizen_login):
    campaign = campaign_now()
    citizen_login("o-nojs", path=f"/m/vote/{campaign.id}")
    token = csrf(client.get(f"/m/vote/{campaign.id}").get_data(as_text=True))
    res = client.post(
        f"/m/vote/{campaign.id}/cast", data={"csrf_token": token, "candidate_id": campaign.candidates[0].id}
    )
    assert res.status_code == 302
    assert "投票成功" in client.get(res.headers["Location"]).get_data(as_text=True)


def test_snapshot_visitor_can_look_but_not_vote(client, citizen_login, db_session):
    campaign = campaign_now()
    citizen_login("o-moments", snapshot=True, path=f"/m/vote/{campaign.id}")
    html = client.get(f"/m/vote/{campaign.id}").get_data(as_text=True)
    assert "朋友圈快照" in html and "投 TA 一票" not in html
    res = vote_json(client, campaign, campaign.candidates[0], csrf(html))
    assert res.status_code == 400 and "快照" in res.json["error"]
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Vote)) == 0


def test_outside_the_period_is_refused_clearly(client, citizen_login):
    now = datetime.now(UTC)
    campaign = campaign_now(starts_at=now - timedelta(days=3), ends_at=now - timedelta(minutes=1))
    citizen_login("o-late", path=f"/m/vote/{campaign.id}")
    html = client.get(f"/m/vote/{campaign.id}").get_data(as_text=True)
    assert "不在投票时间" in html
    res = vote_json(client, campaign, campaign.candidates[0], csrf(html))
    assert res.status_code == 400 and res.json["error"] == "投票已结束，感谢关注"


def test_hidden_results_show_no_counts(client, citizen_login):
    campaign = campaign_now(results_policy="hidden")
    citizen_login("o-h", path=f"/m/vote/{campaign.id}")
    html = client.get(f"/m/vote/{campaign.id}").get_data(as_text=True)
    assert "data-count" not in html and "票数不公开" in html and "当前排名" not in html
    body = vote_json(client, campaign, campaign.candidates[0], csrf(html)).json
    assert body["ok"] and body["count"] is None and "counts" not in body  # nor the ranking's counts


def test_share_card_is_public(client, db_session):
    campaign = campaign_now()
    res = client.get(f"/m/vote/{campaign.id}/c/{campaign.candidates[0].id}/share")
    html = res.get_data(as_text=True)
    assert res.status_code == 200 and "王芳" in html and "去投票" in html
    # both ends of the period in one format: a date and a time each
    assert re.search(r"投票时间：\d\d月\d\d日 \d\d:\d\d 至 \d\d月\d\d日 \d\d:\d\d<", html)


def test_posting_without_identity_is_refused(client, db_session):
    campaign = campaign_now()
    assert client.post(f"/m/vote/{campaign.id}/cast", data={"candidate_id": 1}).status_code in (400, 401)


def test_survey_answered_once(client, citizen_login, db_session):
    now = datetime.now(UTC)
    survey = surveys.save_survey(
        title="2026年上半年满意度测评",
        intro="",
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
        questions="[单选 区] 您所在的区\n浦东新区\n黄浦区\n[打分] 总体评价\n[填空 选填] 建议",
    )
    district, score, text = survey.questions
    citizen_login("o-survey", path=f"/m/survey/{survey.id}")
    html = client.get(f"/m/survey/{survey.id}").get_data(as_text=True)
    assert "您所在的区" in html and "很满意" in html
    missing = client.post(f"/m/survey/{survey.id}", data={"csrf_token": csrf(html), f"q{district.id}": "1"})
    assert missing.status_code == 400 and "还有 1 道题未回答：第 2 题" in missing.get_data(as_text=True)
    assert f'class="card question missing" id="q{score.id}"' in missing.get_data(as_text=True)
    both = client.post(f"/m/survey/{survey.id}", data={"csrf_token": csrf(html)}).get_data(as_text=True)
    assert "还有 2 道题未回答：第 1、2 题" in both and both.count("card question missing") == 2  # all at once
    data = {"csrf_token": csrf(html), f"q{district.id}": "1", f"q{score.id}": "5", f"q{text.id}": "多些巡查"}
    done = client.post(f"/m/survey/{survey.id}", data=data).get_data(as_text=True)
    assert "提交成功" in done and 'href="/m/vote/"' in done  # a way on from the thanks, not a dead end
    again = client.post(f"/m/survey/{survey.id}", data=data)  # a double tap: the first one was saved
    assert again.status_code == 200 and "提交成功" in again.get_data(as_text=True)
    assert "您已参加过本次测评" in client.get(f"/m/survey/{survey.id}").get_data(as_text=True)
    response = db_session.scalars(sa.select(SurveyResponse)).one()
    assert response.district == "黄浦区"


def _survey_with_text_question():
    now = datetime.now(UTC)
    return surveys.save_survey(
        title="2026年下半年满意度测评",
        intro="",
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
        questions="[单选] 您对市容环境是否满意\n满意\n不满意\n[填空 选填] 您的建议",
    )


def test_a_repeated_survey_submit_shows_the_thanks_not_an_error(client, citizen_login, db_session):
    survey = _survey_with_text_question()
    choice, text = survey.questions
    citizen_login("o-double-tap", path=f"/m/survey/{survey.id}")
    html = client.get(f"/m/survey/{survey.id}").get_data(as_text=True)
    assert "data-submit-once" in html and "js/submit_once.js" in html  # the button turns 「提交中…」 at the first tap
    data = {"csrf_token": csrf(html), f"q{choice.id}": "0", f"q{text.id}": "路灯坏了"}
    assert "提交成功" in client.post(f"/m/survey/{survey.id}", data=data).get_data(as_text=True)
    for resend in (data, {"csrf_token": csrf(html)}):  # the same answers, or a stale empty form sent again
        res = client.post(f"/m/survey/{survey.id}", data=resend)
        body = res.get_data(as_text=True)
        assert res.status_code == 200 and "提交成功" in body and 'class="error"' not in body
    assert db_session.scalar(sa.select(sa.func.count()).select_from(SurveyResponse)) == 1


def test_the_survey_page_script_gets_json_and_a_page_to_go_to(client, citizen_login, db_session):
    # The page sends in the background (a failed send then shows in place, not as WeChat's error page).
    survey = _survey_with_text_question()
    choice, text = survey.questions
    citizen_login("o-fetch", path=f"/m/survey/{survey.id}")
    assert client.get(f"/m/survey/{survey.id}/done").headers["Location"] == f"/m/survey/{survey.id}"  # not yet
    html = client.get(f"/m/survey/{survey.id}").get_data(as_text=True)
    ajax = {"Accept": "application/json", "X-Requested-With": "fetch", "Origin": "http://localhost"}
    blank = client.post(f"/m/survey/{survey.id}", data={"csrf_token": csrf(html)}, headers=ajax)
    assert blank.status_code == 400 and blank.json == {
        "error": "还有 1 道题未回答：第 1 题，请补充后再提交",
        "missing": [choice.id],
    }
    data = {"csrf_token": "expired", f"q{choice.id}": "0", f"q{text.id}": "路灯坏了"}
    stale = client.post(f"/m/survey/{survey.id}", data=data, headers=ajax)
    assert stale.status_code == 400 and "页面停留太久已过期" in stale.json["error"]
    data["csrf_token"] = stale.json["csrf_token"]  # swapped in by the page: the next tap goes through
    for _ in range(2):  # the second: a resend after an answer lost on the way back
        sent = client.post(f"/m/survey/{survey.id}", data=data, headers=ajax)
        assert sent.status_code == 200 and sent.json == {"url": f"/m/survey/{survey.id}/done"}
    assert db_session.scalar(sa.select(sa.func.count()).select_from(SurveyResponse)) == 1
    assert "提交成功" in client.get(f"/m/survey/{survey.id}/done").get_data(as_text=True)


def test_a_refused_survey_still_shows_its_error_to_a_new_citizen(client, citizen_login, db_session):
    survey = _survey_with_text_question()
    citizen_login("o-first-time", path=f"/m/survey/{survey.id}")
    html = client.get(f"/m/survey/{survey.id}").get_data(as_text=True)
    res = client.post(f"/m/survey/{survey.id}", data={"csrf_token": csrf(html)})
    assert res.status_code == 400 and "还有 1 道题未回答：第 1 题" in res.get_data(as_text=True)


def test_every_survey_field_has_a_label(client, citizen_login, db_session):
    survey = _survey_with_text_question()
    choice, text = survey.questions
    citizen_login("o-labels", path=f"/m/survey/{survey.id}")
    html = client.get(f"/m/survey/{survey.id}").get_data(as_text=True)
    # options sit inside their <label>; the free text is named by its question
    assert re.search(rf'<legend id="q{text.id}-text">2\. 您的建议', html)
    assert re.search(rf'<textarea name="q{text.id}"[^>]*aria-labelledby="q{text.id}-text"', html)
    assert len(re.findall(rf'<label class="choice"><input type="radio" name="q{choice.id}"', html)) == 2


# --- the live gunicorn server ---------------------------------------------------------------------------------------

LIVE_SECRET = "live-test-secret-key-0123456789abcdef"  # tests/conftest.py live_server


def signed_identity(openid: str) -> tuple[str, str]:
    """A session cookie and CSRF form token as the live server would have issued after OAuth (its SECRET_KEY)."""
    signer = Flask("sign")
    signer.secret_key = LIVE_SECRET
    raw = secrets.token_hex(20)
    cookie = signer.session_interface.get_signing_serializer(signer).dumps(
        {"openid": openid, "snapshot": False, "csrf_token": raw}
    )
    token = URLSafeTimedSerializer(LIVE_SECRET, salt="wtf-csrf-token").dumps(raw)
    return cookie, token


@pytest.mark.timeout(120)
def test_live_server_counts_each_vote_once(live_server, committed_db):
    campaign_id, ids = _committed_campaign(per_day=2, per_candidate=1)
    citizens = [f"o-live-{n}" for n in range(10)]
    identities = {openid: signed_identity(openid) for openid in citizens}
    # each citizen double-taps each of the 3 candidates 3 times: 90 requests at once over 3 processes
    jobs = [(openid, cid) for openid in citizens for cid in ids for _ in range(3)]
    barrier = threading.Barrier(len(jobs))
    outcomes: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def send(openid: str, candidate_id: int) -> None:
        cookie, token = identities[openid]
        barrier.wait()
        res = requests.post(
            f"{live_server.url}/m/vote/{campaign_id}/cast",
            data={"csrf_token": token, "candidate_id": candidate_id},
            headers={"Accept": "application/json"},
            cookies={"session": cookie},
            timeout=30,
        )
        with lock:
            outcomes.append((res.status_code, res.json()))

    threads = [threading.Thread(target=send, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [body for status, body in outcomes if status == 200]
    assert all(status in (200, 400) for status, _ in outcomes), outcomes
    assert len(accepted) == 20  # 10 citizens × 2 votes a day
    rows = committed_db.execute(sa.select(Vote.openid, Vote.candidate_id)).all()
    assert len(rows) == 20 and len(set(rows)) == 20  # never twice for one candidate
    assert votes.counts(campaign_id) == votes.db_counts(campaign_id)
    assert sum(votes.counts(campaign_id).values()) == 20


def test_the_vote_form_cannot_send_a_citizen_elsewhere(client, citizen_login):
    campaign = campaign_now()
    citizen_login("o-redirect", path=f"/m/vote/{campaign.id}")
    token = csrf(client.get(f"/m/vote/{campaign.id}").get_data(as_text=True))
    res = client.post(
        f"/m/vote/{campaign.id}/cast",
        data={"csrf_token": token, "candidate_id": campaign.candidates[0].id, "back": "https://evil.example/"},
    )
    assert res.status_code == 302 and res.headers["Location"].endswith(f"/m/vote/{campaign.id}")


def test_an_expired_survey_page_keeps_the_answers(client, citizen_login, db_session):
    survey = _survey_with_text_question()
    choice, text = survey.questions
    citizen_login("o-slow", path=f"/m/survey/{survey.id}")
    data = {"csrf_token": "expired", f"q{choice.id}": "0", f"q{text.id}": "路灯坏了"}
    res = client.post(
        f"/m/survey/{survey.id}", data=data, headers={"Referer": f"http://localhost/m/survey/{survey.id}"}
    )
    page = res.get_data(as_text=True)
    assert res.status_code == 400 and "页面停留太久已过期，您的答案都已保留" in page
    assert f'name="q{choice.id}" value="0" checked' in page and "路灯坏了" in page
    assert db_session.scalar(sa.select(sa.func.count()).select_from(SurveyResponse)) == 0
    data["csrf_token"] = csrf(page)  # the page comes back with a fresh token: the next tap goes through
    assert "提交成功" in client.post(f"/m/survey/{survey.id}", data=data).get_data(as_text=True)


def test_a_cross_site_post_to_the_survey_is_refused_not_given_a_fresh_token(client, citizen_login, db_session):
    survey = _survey_with_text_question()
    choice, _ = survey.questions
    citizen_login("o-target", path=f"/m/survey/{survey.id}")
    data = {"csrf_token": "expired", f"q{choice.id}": "0"}
    res = client.post(f"/m/survey/{survey.id}", data=data, headers={"Origin": "https://evil.example"})
    assert res.status_code == 400 and 'name="csrf_token"' not in res.get_data(as_text=True)


def test_the_rules_and_the_intro_keep_their_lines(client, citizen_login, db_session):
    # An editor writes the vote's rules and the survey's intro line by line; the phone ran them into one paragraph
    # (「评选规则： 1. 每人每天可投 3 票 2. 严禁刷票」).
    campaign = campaign_now()
    votes.save_campaign(
        title=campaign.title,
        description="评选规则：\r\n1. 每人每天可投 2 票\r\n\r\n2. 严禁刷票",
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        votes_per_day=2,
        per_candidate_per_day=1,
        followers_only=False,
        results_policy="live",
        campaign=campaign,
    )
    now = datetime.now(UTC)
    survey = surveys.save_survey(
        title="2026年下半年满意度测评",
        intro="尊敬的市民：\n问卷约需 2 分钟",
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
        questions="[打分] 总体评价",
    )
    citizen_login("o-reader", path=f"/m/vote/{campaign.id}")
    page = client.get(f"/m/vote/{campaign.id}").get_data(as_text=True)
    assert "<p>评选规则：</p><p>1. 每人每天可投 2 票</p><p>2. 严禁刷票</p>" in page
    page = client.get(f"/m/survey/{survey.id}").get_data(as_text=True)
    assert "<p>尊敬的市民：</p><p>问卷约需 2 分钟</p>" in page
