"""Publishing against the emulator: exactly once, in order, under concurrency and crashes; failures show."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from PIL import Image

from models import Article, ArticlePush, ArticleStatus, PushStatus
from server.extensions import db
from server.services import articles, columns, publishing
from server.wechat import client as client_module
from tests import factories


def jpeg(w: int = 1200, h: int = 700, colour: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def people():
    unit = factories.unit("浦东分局")
    return {
        "editor": factories.staff("ed1", "editor"),
        "reviewer": factories.staff("rv1", "reviewer"),
        "liaison": factories.staff("li1", "liaison", unit=unit),
        "unit": unit,
    }


def approved(people, title: str, column_id: int | None = None) -> Article:
    a = articles.save_article(
        people["liaison"], title=title, body_html=f"<p>{title}的案情</p>", column_id=column_id, author="城管"
    )
    articles.set_cover(people["liaison"], a.id, jpeg())
    articles.submit(people["liaison"], a.id)
    return articles.review(people["reviewer"], a.id, approve=True)


def week_of_daily_cases(people, start: datetime, count: int = 7) -> list[ArticlePush]:
    column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    pushes = []
    for i in range(count):
        a = approved(people, f"案例{i}", column.id)
        pushes.append(articles.schedule_push(people["editor"], [a.id], start + timedelta(minutes=i), column.id))
    return pushes


def published_titles(emulator) -> list[str]:
    state = emulator.state()
    return [a["title"] for job in state["publishes"] if job["publish_status"] == 0 for a in job["articles"]]


def test_week_published_exactly_once_in_order_by_two_concurrent_runs(app, emulator, committed_db):
    people = factories_people()
    start = datetime.now(UTC) + timedelta(minutes=5)
    pushes = week_of_daily_cases(people, start)
    now = start + timedelta(minutes=10)  # all seven are due
    errors: list[BaseException] = []

    def run():
        try:
            with app.app_context():
                for _ in range(3):
                    publishing.run_due(now)
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert published_titles(emulator) == [f"每日一案｜案例{i}" for i in range(7)]
    assert len([c for c in emulator.state()["calls"] if c["path"] == "cgi-bin/draft/add"]) == 7
    # The push events were not delivered here: the polling fallback settles them, counted against the budget.
    publishing.poll_submitted(now + timedelta(minutes=10))
    db.session.expire_all()
    for push in pushes:
        push = db.session.get(ArticlePush, push.id)
        assert push.status is PushStatus.PUBLISHED and push.wechat_article_id
        assert push.articles[0].url.startswith(emulator.url)
        assert push.articles[0].status is ArticleStatus.PUBLISHED
    assert publishing.polls_today(now + timedelta(minutes=10)) == 7


def factories_people():
    unit = factories.unit("浦东分局")
    return {
        "editor": factories.staff("ed1", "editor"),
        "reviewer": factories.staff("rv1", "reviewer"),
        "liaison": factories.staff("li1", "liaison", unit=unit),
        "unit": unit,
    }


def test_worker_dying_after_claim_resumes_after_lease(emulator, db_session, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    pushes = week_of_daily_cases(people, start, 2)
    now = start + timedelta(minutes=3)
    assert publishing.claim_next(now) == pushes[0].id  # ...and the worker dies here
    assert publishing.run_due(now) == []  # leased: nobody else touches it, nor jumps ahead of it
    assert published_titles(emulator) == []
    later = now + publishing.LEASE + timedelta(seconds=1)
    assert publishing.run_due(later) == [pushes[0].id, pushes[1].id]
    assert published_titles(emulator) == ["每日一案｜案例0", "每日一案｜案例1"]


def test_crash_after_draft_add_does_not_add_again(emulator, db_session, people, monkeypatch):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    real = client_module.SharedTokenClient.raw_post

    def dying(self, endpoint, data):
        if endpoint == "cgi-bin/freepublish/submit":
            raise RuntimeError("worker killed")
        return real(self, endpoint, data)

    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", dying)
    now = start + timedelta(minutes=1)
    with pytest.raises(RuntimeError):
        publishing.run_due(now)
    assert db.session.get(ArticlePush, push.id, populate_existing=True).draft_media_id
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", real)
    publishing.run_due(now + publishing.LEASE + timedelta(seconds=1))
    calls = emulator.state()["calls"]
    assert len([c for c in calls if c["path"] == "cgi-bin/draft/add"]) == 1
    assert len([c for c in calls if c["path"] == "cgi-bin/freepublish/submit"]) == 1
    assert db.session.get(ArticlePush, push.id, populate_existing=True).status is PushStatus.SUBMITTED


def test_crash_after_submit_before_recording_is_never_resubmitted(emulator, db_session, people, monkeypatch):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    real = client_module.SharedTokenClient.raw_post

    def dying(self, endpoint, data):
        result = real(self, endpoint, data)
        if endpoint == "cgi-bin/freepublish/submit":
            raise RuntimeError("killed before the publish_id was saved")
        return result

    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", dying)
    now = start + timedelta(minutes=1)
    with pytest.raises(RuntimeError):
        publishing.run_due(now)
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", real)
    publishing.run_due(now + publishing.LEASE + timedelta(seconds=1))
    assert len([c for c in emulator.state()["calls"] if c["path"] == "cgi-bin/freepublish/submit"]) == 1
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.FAILED and "核对" in push.error_message


def test_push_event_settles_the_push_through_the_handler(emulator, wechat, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    publishing.run_due(start + timedelta(minutes=1))
    event = emulator.state()["push_events"][-1]
    res = wechat.post(event["xml"])
    assert res.status_code == 200
    db.session.expire_all()  # the handler wrote from its own session
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.PUBLISHED
    assert push.articles[0].wechat_article_id == event["event"]["PublishEventInfo"]["article_id"]
    assert push.articles[0].url
    # a repeated event changes nothing; no polling was spent
    assert publishing.record_result(push.publish_id, 0, "other").wechat_article_id == push.wechat_article_id
    assert publishing.polls_today() == 0


def test_48001_fails_plainly_with_manual_fallback(emulator, db_session, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("fail", {"path": "cgi-bin/freepublish/submit", "errcode": 48001})
    publishing.run_due(start + timedelta(minutes=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.FAILED and push.error_code == 48001
    assert "手动发布" in push.error_message
    assert push in publishing.recent_failures()
    html = articles.export_html(push)
    assert "案例0的案情" in html
    publishing.mark_published_manually(people["editor"], push.id, ["https://mp.weixin.qq.com/s/abc"])
    assert push.status is PushStatus.PUBLISHED and push.manual
    assert push.articles[0].url == "https://mp.weixin.qq.com/s/abc"


def test_content_rejected_by_wechat_is_a_failure(emulator, wechat, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("publish-outcome", {"publish_status": 4, "fail_idx": [1]})
    publishing.run_due(start + timedelta(minutes=1))
    wechat.post(emulator.state()["push_events"][-1]["xml"])
    db.session.expire_all()
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.FAILED and push.error_message == "平台审核不通过"
    assert push.articles[0].status is ArticleStatus.FAILED


def test_transient_error_retries_with_backoff(emulator, db_session, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("fail", {"path": "cgi-bin/draft/add", "errcode": -1})
    now = start + timedelta(minutes=1)
    publishing.run_due(now)
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.PUBLISHING and push.lease_until > now and push.error_code == -1
    publishing.run_due(push.lease_until + timedelta(seconds=1))
    assert db.session.get(ArticlePush, push.id, populate_existing=True).status is PushStatus.SUBMITTED
    assert len(published_titles(emulator)) == 1


def test_polling_respects_the_daily_budget(emulator, db_session, people, redis_client):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    publishing.run_due(start + timedelta(minutes=1))
    later = start + timedelta(minutes=30)
    redis_client.set(publishing._poll_key(later), publishing.POLL_DAILY_BUDGET)
    assert publishing.poll_submitted(later) == 0
    assert db.session.get(ArticlePush, push.id).status is PushStatus.SUBMITTED
    assert not [c for c in emulator.state()["calls"] if c["path"] == "cgi-bin/freepublish/get"]


def test_unapproved_articles_cannot_be_scheduled_and_the_calendar_shows_gaps(db_session, people):
    column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    draft = articles.save_article(people["editor"], title="未审", body_html="<p>x</p>", column_id=column.id)
    with pytest.raises(articles.ServiceError):
        articles.schedule_push(people["editor"], [draft.id], datetime.now(UTC) + timedelta(days=1), column.id)
    today = columns.local_day(datetime.now(UTC))
    a = approved(people, "有安排", column.id)
    articles.schedule_push(people["editor"], [a.id], columns.slot_at(column, today + timedelta(days=2)), column.id)
    days = columns.calendar(today + timedelta(days=1), today + timedelta(days=3))
    gaps = {d.day: [c.name for c in d.gaps] for d in days}
    assert "每日一案" in gaps[today + timedelta(days=1)]
    assert "每日一案" not in gaps[today + timedelta(days=2)]
    assert db_session.scalar(sa.select(sa.func.count()).select_from(ArticlePush)) == 1
