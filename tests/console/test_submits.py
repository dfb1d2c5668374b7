"""Create forms save once per submit: a double click, a resent form or two copies at once make one row."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Article, Event, FormSubmit, Survey, VoteCampaign, VoteCandidate, utcnow
from server.extensions import db
from server.services import events, submits
from tests import factories
from tests.conftest import SQLITE
from tests.console.conftest import Console
from tests.services.test_races import race


def key_on(html: str) -> str:
    found = re.search(r'name="submit_key" value="([^"]+)"', html)
    assert found, "no submit key on the page"
    return found.group(1)


def count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model))


ARTICLE = {"title": "劝离占道摊贩", "author": "城管", "body_html": "<p>案情经过</p>"}


def test_a_double_submitted_article_is_saved_once_and_both_copies_lead_to_it(as_admin):
    key = key_on(as_admin.get("/admin/articles/new").get_data(as_text=True))
    first = as_admin.post("/admin/articles/new", {**ARTICLE, "submit_key": key})
    second = as_admin.post("/admin/articles/new", {**ARTICLE, "submit_key": key})
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert count(Article) == 1
    assert "重复的提交只保存了一次" in as_admin.get(second.headers["Location"]).get_data(as_text=True)
    other = key_on(as_admin.get("/admin/articles/new").get_data(as_text=True))
    assert other != key  # each new form is a new submit
    assert as_admin.post("/admin/articles/new", {**ARTICLE, "submit_key": other}).status_code == 302
    assert count(Article) == 2


def test_a_refused_submit_frees_its_key_for_the_corrected_form(as_admin):
    key = key_on(as_admin.get("/admin/articles/new").get_data(as_text=True))
    refused = as_admin.post("/admin/articles/new", {**ARTICLE, "title": "", "submit_key": key})
    assert refused.status_code == 400 and key_on(refused.get_data(as_text=True)) == key  # shown again, same key
    assert count(FormSubmit) == 0  # nothing left claimed: sent again unchanged, it is refused again with the reason
    again = as_admin.post("/admin/articles/new", {**ARTICLE, "title": "", "submit_key": key})
    assert again.status_code == 400 and "上一次提交仍在处理" not in again.get_data(as_text=True)
    assert as_admin.post("/admin/articles/new", {**ARTICLE, "submit_key": key}).status_code == 302
    assert count(Article) == 1
    assert db.session.scalar(sa.select(sa.func.count()).where(FormSubmit.result_url.is_not(None))) == 1


def test_a_submit_that_fails_in_the_view_frees_its_key(as_admin, monkeypatch):
    monkeypatch.setattr(submits, "WAIT", 0.3)
    form = {"name": "张队长", "submit_key": submits.new_key()}
    for _ in range(2):  # the campaign is gone (an abort in the view): each copy says so, none is held up
        assert as_admin.post("/admin/votes/999999/candidates/new", form).status_code == 404
    assert count(FormSubmit) == 0


def test_a_form_filled_in_again_after_the_back_button_is_a_new_submit(as_admin):
    # The browser may bring the page back with its old key; what was typed tells a new article from a double click.
    key = key_on(as_admin.get("/admin/articles/new").get_data(as_text=True))
    first = as_admin.post("/admin/articles/new", {**ARTICLE, "submit_key": key})
    second = as_admin.post("/admin/articles/new", {**ARTICLE, "title": "清理乱张贴", "submit_key": key})
    assert first.status_code == second.status_code == 302 and first.headers["Location"] != second.headers["Location"]
    assert sorted(db.session.scalars(sa.select(Article.title))) == ["劝离占道摊贩", "清理乱张贴"]


def test_editing_is_not_guarded_and_shows_no_key(as_admin):
    as_admin.post("/admin/articles/new", {**ARTICLE, "submit_key": submits.new_key()})
    article = db.session.scalars(sa.select(Article)).one()
    assert 'name="submit_key"' not in as_admin.get(f"/admin/articles/{article.id}/edit").get_data(as_text=True)


def _event_form() -> dict[str, str]:
    return {
        "title": "7·15 公众开放日",
        "kind": "offline",
        "description": "参观指挥中心",
        "registration_opens_at": "2027-07-01T09:00",
        "registration_closes_at": "2027-07-14T18:00",
        "max_companions": "1",
        "hold_minutes": "120",
        "retention_days": "30",
    }


def test_events_sessions_campaigns_candidates_and_surveys_are_saved_once(as_admin):
    key = key_on(as_admin.get("/admin/events/new").get_data(as_text=True))
    for _ in range(2):
        assert as_admin.post("/admin/events/new", {**_event_form(), "submit_key": key}).status_code == 302
    assert count(Event) == 1
    event = db.session.scalars(sa.select(Event)).one()

    key = key_on(as_admin.get(f"/admin/events/{event.id}").get_data(as_text=True))
    session = {"starts_at": "2027-07-15T09:00", "ends_at": "2027-07-15T11:00", "quota": "50", "venue": "指挥中心"}
    for _ in range(2):
        as_admin.post(f"/admin/events/{event.id}/sessions", {**session, "submit_key": key})
    db.session.expire_all()
    assert len(db.session.get(Event, event.id).sessions) == 1

    key = key_on(as_admin.get("/admin/votes/new").get_data(as_text=True))
    campaign = {
        "title": "最美城管人",
        "starts_at": "2027-01-01T00:00",
        "ends_at": "2027-01-31T23:59",
        "votes_per_day": "3",
        "per_candidate_per_day": "1",
        "results_policy": "live",
        "submit_key": key,
    }
    for _ in range(2):
        assert as_admin.post("/admin/votes/new", campaign).status_code == 302
    assert count(VoteCampaign) == 1
    campaign_id = db.session.scalars(sa.select(VoteCampaign.id)).one()

    page = as_admin.get(f"/admin/votes/{campaign_id}/candidates/new").get_data(as_text=True)
    candidate = {"name": "张队长", "unit": "浦东分局", "story": "十年如一日守护街面", "submit_key": key_on(page)}
    for _ in range(2):
        assert as_admin.post(f"/admin/votes/{campaign_id}/candidates/new", candidate).status_code == 302
    assert count(VoteCandidate) == 1

    key = key_on(as_admin.get("/admin/surveys/new").get_data(as_text=True))
    survey = {
        "title": "2027 上半年满意度测评",
        "starts_at": "2027-01-01T00:00",
        "ends_at": "2027-06-30T23:59",
        "questions": "[单选] 您满意吗\n满意\n不满意",
        "submit_key": key,
    }
    for _ in range(2):
        assert as_admin.post("/admin/surveys/new", survey).status_code == 302
    assert count(Survey) == 1


def test_a_submit_whose_first_copy_died_is_taken_over_after_a_while(db_session):
    key = submits.new_key()
    assert submits.claim(key) is None
    db.session.execute(sa.update(FormSubmit).values(claimed_at=utcnow() - submits.STALE * 2))
    db.session.commit()
    assert submits.claim(key) is None  # the first copy's process is gone: this one goes ahead
    submits.done(key, "/admin/articles/7")
    assert submits.claim(key) == "/admin/articles/7"


@pytest.mark.skipif(SQLITE, reason="races need a database that runs writers side by side")
def test_two_copies_at_the_same_moment_save_one_article(app, committed_db):
    factories.staff("admin1", "admin")
    db.session.commit()
    key = submits.new_key()
    consoles = [Console(app.test_client()) for _ in range(4)]
    for console in consoles:
        with app.app_context():  # its own g: Flask-Login keeps the logged-in user there
            assert console.login("admin1").status_code == 302

    def post(i: int):
        return consoles[i].post("/admin/articles/new", {**ARTICLE, "submit_key": key})

    answers = race(app, 4, post)
    assert [a.status_code for a in answers] == [302] * 4
    assert len({a.headers["Location"] for a in answers}) == 1
    assert count(Article) == 1


def test_a_copy_that_finds_the_first_still_running_says_so_and_goes_back_to_the_page(app, as_admin, monkeypatch):
    from server.console import once

    monkeypatch.setattr(submits, "WAIT", 0.3)
    now = utcnow()
    event = events.save_event(
        title="开放日", kind="offline", description="", registration_opens_at=now,
        registration_closes_at=now + timedelta(days=9), max_companions=0, required_fields=[], questions=[],
        hold_minutes=120, retention_days=30, published=False,
    )  # fmt: skip
    form = {"starts_at": "2027-07-15T09:00", "ends_at": "2027-07-15T11:00", "quota": "50", "venue": "指挥中心"}
    form["submit_key"] = key_on(as_admin.get(f"/admin/events/{event.id}").get_data(as_text=True))
    path = f"/admin/events/{event.id}/sessions"
    with app.test_request_context(path, method="POST", data=form):
        running = once._sent_with(form["submit_key"])
    db.session.add(FormSubmit(key=running, claimed_at=utcnow()))  # the first copy, still at work
    db.session.commit()
    res = as_admin.post(path, form, headers={"Referer": f"http://localhost/admin/events/{event.id}"})
    assert res.status_code == 302 and res.headers["Location"] == f"/admin/events/{event.id}"
    assert "上一次提交仍在处理" in as_admin.get(res.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Event, event.id).sessions == []
