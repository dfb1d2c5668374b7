"""Publishing against the emulator: exactly once, in order, under concurrency and crashes; failures show."""

from __future__ import annotations

import io
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
import sqlalchemy as sa
from celery.schedules import crontab
from PIL import Image

from models import AlertDuty, Article, ArticlePush, ArticleStatus, AuditLog, PublishOrphan, PushNotice, PushStatus
from server.extensions import db
from server.services import ServiceError, articles, columns, images, publishing
from server.wechat import client as client_module
from tests import factories
from tests.conftest import Sender

SUBMIT = "cgi-bin/freepublish/submit"


def jpeg(w: int = 1200, h: int = 700, colour: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def people():
    return factories.newsroom()


def approved(people, title: str, column_id: int | None = None) -> Article:
    body = f"<p>{title}的案情</p>"
    a = articles.save_article(
        people["liaison"], title=title, body_html=body, column_id=column_id, author="城管", cover=jpeg()
    )
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
    people = factories.newsroom()
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


def held(push_id: int) -> bool:
    """A live connection holds the push's lock (its publishing process is alive)."""
    query = sa.select(publishing._held()).select_from(ArticlePush).where(ArticlePush.id == push_id)
    return bool(db.session.scalar(query))


def test_a_live_claim_holds_the_queue_and_a_killed_worker_is_taken_over_at_once(app, emulator, committed_db):
    people = factories.newsroom()
    start = datetime.now(UTC) + timedelta(minutes=5)
    pushes = week_of_daily_cases(people, start, 2)
    now = start + timedelta(minutes=3)
    worker = db.engine.connect()  # the first worker's own connection, as publishing.holding() opens one
    assert publishing.claim_next(now, hold=publishing.Hold(worker)) == pushes[0].id  # ...and it is still at work
    assert held(pushes[0].id)
    assert publishing.run_due(now + timedelta(hours=1)) == []  # alive, however long: nobody overtakes it
    assert published_titles(emulator) == []
    # SIGKILL: the process and its connection are gone, PostgreSQL drops the lock. (The bench/publish drill found
    # the next pushes waiting out a 5-minute lease behind it, all published late in one burst.)
    worker.invalidate()
    worker.close()
    for _ in range(100):  # the server notices the closed socket within milliseconds
        if not held(pushes[0].id):
            break
        time.sleep(0.02)
        db.session.rollback()
    assert publishing.run_due(now) == [pushes[0].id, pushes[1].id]  # the next run, not a lease later, in order
    assert published_titles(emulator) == ["每日一案｜案例0", "每日一案｜案例1"]
    assert not held(pushes[0].id) and not held(pushes[1].id)  # a finished run leaves no lock behind


def test_the_beat_publishes_at_the_start_of_every_minute(app):
    # Pushes are scheduled on full minutes; a 60 s interval would run at whatever second beat started (the drill
    # saw every push go out at :05, and could as well have been :59).
    schedule = app.config["CELERY"]["beat_schedule"]["articles-publish"]["schedule"]
    assert isinstance(schedule, crontab)
    assert schedule.minute == set(range(60)) and schedule.hour == set(range(24))


def test_pushes_finishing_in_the_same_second_are_each_settled_by_their_event(emulator, wechat, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    pushes = week_of_daily_cases(people, start, 3)
    assert publishing.run_due(start + timedelta(minutes=5)) == [p.id for p in pushes]  # a backlog, in one run
    events = [e["xml"] for e in emulator.state()["push_events"]]
    assert len(events) == 3
    # Same sender, same second: only the publish_id tells the events apart (the drill saw two of three dropped).
    for xml in events:
        xml = re.sub(r"<CreateTime>\d+</CreateTime>", "<CreateTime>1767225600</CreateTime>", xml)
        assert wechat.post(xml).status_code == 200
        assert wechat.post(xml).status_code == 200  # a true duplicate is still one
    db.session.expire_all()
    assert [db.session.get(ArticlePush, p.id).status for p in pushes] == [PushStatus.PUBLISHED] * 3


class WorkerKilled(BaseException):
    """A SIGKILL, as far as the code under test can tell: not an Exception, so nothing in it handles the death."""


def _dying(real, endpoint_to_kill: str, *, after_sending: bool):
    """raw_post that kills the worker at one endpoint, before or after WeChat got the request."""

    def dying(self, endpoint, data):
        if endpoint == endpoint_to_kill and not after_sending:
            raise WorkerKilled("worker killed")
        result = real(self, endpoint, data)
        if endpoint == endpoint_to_kill:
            raise WorkerKilled("worker killed before the answer was saved")
        return result

    return dying


def last_publish_event(emulator) -> dict:
    return [e for e in emulator.state()["push_events"] if e["event"]["Event"] == "PUBLISHJOBFINISH"][-1]


def calls_to(emulator, path: str) -> list[dict]:
    return [c for c in emulator.state()["calls"] if c["path"] == path]


def test_an_unexpected_error_is_retried_a_bounded_number_of_times_and_the_queue_moves_on(
    emulator, db_session, people, monkeypatch
):
    start = datetime.now(UTC) + timedelta(minutes=5)
    broken, later = week_of_daily_cases(people, start, 2)
    real = client_module.SharedTokenClient.raw_post

    def bad_draft(self, endpoint, data):
        if endpoint == "cgi-bin/draft/add" and data["articles"][0]["title"].endswith("案例0"):
            raise KeyError("media_id")  # an answer of a shape nobody expected
        return real(self, endpoint, data)

    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", bad_draft)
    now = start + timedelta(minutes=2)  # both are due
    for minute in range(0, 60, 2):  # the broken one is retried with its backoff, then given up; order is kept
        publishing.run_due(now + timedelta(minutes=minute))
    push = db.session.get(ArticlePush, broken.id, populate_existing=True)
    assert push.status is PushStatus.FAILED and push.attempts == publishing.MAX_ATTEMPTS
    assert "意外错误：KeyError" in push.error_message
    assert db.session.get(ArticlePush, later.id, populate_existing=True).status is PushStatus.PUBLISHED
    assert len(calls_to(emulator, SUBMIT)) == 1  # the later one's, once


def test_crash_after_draft_add_does_not_add_again(emulator, db_session, people, monkeypatch):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    real = client_module.SharedTokenClient.raw_post
    # The worker dies once the draft is recorded and the submit is marked, before the request leaves.
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", _dying(real, SUBMIT, after_sending=False))
    now = start + timedelta(minutes=1)
    with pytest.raises(WorkerKilled):
        publishing.run_due(now)
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.draft_media_id and push.submit_started_at and push.publish_id is None
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", real)
    # From the database a crash just before sending looks like one just after: nobody submits by themselves.
    publishing.run_due(now + publishing.LEASE + timedelta(seconds=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.UNCERTAIN and push.articles[0].status is ArticleStatus.UNCERTAIN
    assert not calls_to(emulator, SUBMIT)
    # The editor finds nothing on the platform and retries on purpose: the recorded draft is submitted, once.
    publishing.retry_uncertain(people["editor"], push.id)
    publishing.run_due(now + publishing.LEASE + timedelta(seconds=2))
    assert len(calls_to(emulator, "cgi-bin/draft/add")) == 1
    assert len(calls_to(emulator, SUBMIT)) == 1
    assert db.session.get(ArticlePush, push.id, populate_existing=True).status is PushStatus.SUBMITTED
    assert published_titles(emulator) == ["每日一案｜案例0"]


@pytest.mark.parametrize("outcome", [0, 1], ids=["already-published", "still-publishing-draft-present"])
def test_crash_after_submit_before_recording_is_never_resubmitted(emulator, wechat, people, monkeypatch, outcome):
    emulator.hook("users", {"users": [{"openid": "o-editor-1", "subscribe": 1}]})
    people["editor"].openid = "o-editor-1"
    db.session.commit()
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    # 1: WeChat is still publishing, so the draft is still in the draft box (looking it up would prove nothing).
    emulator.hook("publish-outcome", {"publish_status": outcome})
    real = client_module.SharedTokenClient.raw_post
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", _dying(real, SUBMIT, after_sending=True))
    now = start + timedelta(minutes=1)
    with pytest.raises(WorkerKilled):
        publishing.run_due(now)
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", real)
    assert bool(emulator.state()["drafts"]) is (outcome == 1)
    for minutes in (6, 7, 30):  # the lease runs out; later runs leave it alone too
        publishing.run_due(now + timedelta(minutes=minutes))
    assert len(calls_to(emulator, SUBMIT)) == 1
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.UNCERTAIN
    assert push.error_message.startswith("发布状态不明，请在公众平台核对后标记")
    assert push in publishing.recent_failures()
    with pytest.raises(ServiceError):
        publishing.release_failed(people["editor"], push.id)  # only a check decides what happens to it
    # The duty editor hears of it once, whatever the number of runs.
    (notice,) = emulator.state()["templates_sent"]
    assert notice["touser"] == "o-editor-1" and notice["data"]["thing1"]["value"] == "发布状态不明，请核对"
    assert notice["data"]["thing4"]["value"] == "上次提交后未收到结果"
    if outcome == 1:
        (job,) = emulator.state()["publishes"]
        emulator.hook("finish-publish", {"publish_id": job["publish_id"], "publish_status": 0})
    # WeChat's result names a publish_id we never recorded: the push is found by its articles' titles and settled.
    event = last_publish_event(emulator)
    assert wechat.post(event["xml"]).status_code == 200
    db.session.expire_all()
    info = event["event"]["PublishEventInfo"]
    url = info["article_detail"]["item"][0]["article_url"]
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.PUBLISHED and push.publish_id == str(info["publish_id"])
    assert push.articles[0].url == url and push.wechat_article_id == info["article_id"]
    # The console's red state clears: the banner, and the article's own status.
    assert push.error_message is None and push not in publishing.recent_failures()
    assert push.articles[0].status is ArticleStatus.PUBLISHED and push.articles[0].wechat_article_id
    assert audit_actions(push)[-1] == "push.settled_from_event"
    assert not pending_orphans()
    before = settled_state(push)
    assert wechat.post(event["xml"]).status_code == 200  # WeChat's retry of the event changes nothing
    db.session.expire_all()
    assert settled_state(db.session.get(ArticlePush, push.id)) == before
    assert audit_actions(push).count("push.settled_from_event") == 1
    assert len(calls_to(emulator, SUBMIT)) == 1 and published_titles(emulator) == ["每日一案｜案例0"]
    assert not emulator.state()["templates_sent"][1:]  # no second notice either


def audit_actions(push: ArticlePush) -> list[str]:
    query = sa.select(AuditLog.action).where(AuditLog.target_type == "article_push", AuditLog.target_id == str(push.id))
    query = query.order_by(AuditLog.id)
    return list(db.session.scalars(query))


def settled_state(push: ArticlePush) -> tuple:
    articles = [(a.status, a.url, a.wechat_article_id, a.published_at) for a in push.articles]
    return push.status, push.publish_id, push.wechat_article_id, push.published_at, push.error_message, articles


def pending_orphans() -> dict[str, str]:
    """The successful jobs kept for run_due to attribute again: publish_id -> article_id."""
    db.session.expire_all()
    return dict(db.session.execute(sa.select(PublishOrphan.publish_id, PublishOrphan.article_id)).all())


def _orphaned(people, monkeypatch, start: datetime, count: int = 1) -> list[ArticlePush]:
    """Pushes whose worker died after freepublish/submit reached WeChat, before its answer was recorded."""
    pushes = week_of_daily_cases(people, start, count)
    real = client_module.SharedTokenClient.raw_post
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", _dying(real, SUBMIT, after_sending=True))
    for i in range(count):  # each run takes the last one over (UNCERTAIN), then dies on the next
        with pytest.raises(WorkerKilled):
            publishing.run_due(start + timedelta(seconds=1) + i * (publishing.LEASE + timedelta(minutes=1)))
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", real)
    return [db.session.get(ArticlePush, p.id, populate_existing=True) for p in pushes]


def _event_info(emulator, index: int = -1) -> dict:
    events = [e for e in emulator.state()["push_events"] if e["event"]["Event"] == "PUBLISHJOBFINISH"]
    return events[index]["event"]["PublishEventInfo"]


def _settle(info: dict) -> str:
    urls = [i["article_url"] for i in info["article_detail"]["item"]]
    return publishing.settle_orphan(str(info["publish_id"]), info["article_id"], urls)


def test_an_orphaned_submit_whose_worker_is_alive_is_asked_again_by_the_next_run(
    emulator, db_session, people, monkeypatch, redis_client
):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = _orphaned(people, monkeypatch, start)
    assert push.status is PushStatus.PUBLISHING and push.publish_id is None  # not yet taken over
    info = _event_info(emulator)
    with publishing.holding() as hold:
        assert hold.take(push.id)  # as if its worker were still waiting for the answer
        assert _settle(info) == "busy"
        hold.release(push.id)
    assert db.session.get(ArticlePush, push.id, populate_existing=True).status is PushStatus.PUBLISHING
    assert list(pending_orphans()) == [str(info["publish_id"])]  # kept: the event is not sent again
    redis_client.flushdb()  # a restarted Redis without persistence: the kept result is a row, it survives
    # The worker is gone now: the next run settles the push from the kept result, before taking it over.
    publishing.run_due(start + timedelta(minutes=6))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.PUBLISHED and push.publish_id == str(info["publish_id"])
    assert [a.url for a in push.articles] == [i["article_url"] for i in info["article_detail"]["item"]]
    assert "push.uncertain" not in audit_actions(push) and not pending_orphans()
    publishing.run_due(start + timedelta(minutes=30))  # nothing is left to take over
    assert len(calls_to(emulator, SUBMIT)) == 1 and not emulator.state()["templates_sent"]


def test_an_orphan_no_push_or_two_pushes_match_is_left_to_the_editor(emulator, db_session, people, monkeypatch):
    start = datetime.now(UTC) + timedelta(minutes=5)
    first, second = _orphaned(people, monkeypatch, start, 2)
    assert first.status is PushStatus.UNCERTAIN and second.status is PushStatus.PUBLISHING
    info = _event_info(emulator, 0)
    second.articles[0].title = first.articles[0].title  # two lost answers for the same titles: which was it?
    db.session.commit()
    before = [settled_state(first), settled_state(second)]
    assert _settle(info) == "ambiguous"
    db.session.expire_all()
    assert [settled_state(db.session.get(ArticlePush, p.id)) for p in (first, second)] == before
    second.articles[0].title = "另一篇"
    first.articles[0].title = "编辑改过的标题"  # nothing has WeChat's titles
    db.session.commit()
    assert _settle(info) == "unmatched"
    first = db.session.get(ArticlePush, first.id, populate_existing=True)
    assert first.status is PushStatus.UNCERTAIN and first.publish_id is None and first in publishing.recent_failures()
    assert not pending_orphans()  # neither is asked again: it is the editor's
    # The editor finds the article on the platform and pastes its link.
    urls = [i["article_url"] for i in info["article_detail"]["item"]]
    publishing.mark_published_manually(people["editor"], first.id, urls)
    push = db.session.get(ArticlePush, first.id, populate_existing=True)
    assert push.status is PushStatus.PUBLISHED and push.articles[0].url == urls[0] and push.error_message is None
    # The same event again later: the push an editor settled is left as it is.
    before = settled_state(push)
    first.articles[0].title = second.articles[0].title = "每日一案｜案例0"
    db.session.commit()
    assert _settle(info) == "unmatched"
    assert settled_state(db.session.get(ArticlePush, push.id, populate_existing=True)) == before


def test_a_failed_job_of_an_orphan_is_left_to_the_editor(emulator, wechat, people, monkeypatch):
    emulator.hook("publish-outcome", {"publish_status": 4})  # 平台审核不通过: a failed job names no article
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = _orphaned(people, monkeypatch, start)
    publishing.run_due(start + publishing.LEASE + timedelta(minutes=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.UNCERTAIN
    before = settled_state(push)
    event = last_publish_event(emulator)
    assert event["event"]["PublishEventInfo"]["publish_status"] == 4
    assert wechat.post(event["xml"]).status_code == 200
    db.session.expire_all()
    assert settled_state(db.session.get(ArticlePush, push.id)) == before
    assert not calls_to(emulator, "cgi-bin/freepublish/getarticle") and not pending_orphans()


def _wait_for(predicate, seconds: float = 5.0):
    deadline = time.monotonic() + seconds
    while not (found := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def _held_now(push_id: int) -> bool:
    db.session.rollback()  # a fresh look at pg_locks
    return held(push_id)


def _publish_in_thread(app, now: datetime) -> tuple[threading.Thread, list[BaseException]]:
    """A worker publishing due pushes in a thread of its own (own connections, own hold), as a Celery worker."""
    errors: list[BaseException] = []

    def run():
        try:
            with app.app_context():
                publishing.run_due(now)
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _published_event(emulator) -> dict:
    return _wait_for(
        lambda: next((e for e in emulator.state()["push_events"] if e["event"]["Event"] == "PUBLISHJOBFINISH"), None)
    )


def test_the_event_beating_the_submit_answer_of_a_live_worker_is_settled_after_it(app, emulator, committed_db, account):
    people = factories.newsroom()
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("delay", {"path": SUBMIT, "seconds": 2})  # WeChat publishes, pushes the event, answers late
    thread, errors = _publish_in_thread(app, start + timedelta(seconds=1))
    event = _published_event(emulator)
    wechat = Sender(app.test_client(), account)
    assert wechat.post(event["xml"]).status_code == 200  # while the worker still waits for the answer
    db.session.expire_all()
    assert db.session.get(ArticlePush, push.id).status is PushStatus.PUBLISHING  # "busy": not taken from it
    assert list(pending_orphans()) == [str(event["event"]["PublishEventInfo"]["publish_id"])]
    thread.join()
    assert not errors
    db.session.expire_all()
    push = db.session.get(ArticlePush, push.id)
    publish_id = str(event["event"]["PublishEventInfo"]["publish_id"])
    assert push.status is PushStatus.SUBMITTED and push.publish_id == publish_id
    # The next run settles it from the kept event: no freepublish/get spent, no editor needed.
    publishing.run_due(start + timedelta(minutes=1))
    db.session.expire_all()
    push = db.session.get(ArticlePush, push.id)
    assert push.status is PushStatus.PUBLISHED and push.articles[0].url and not pending_orphans()
    assert publishing.polls_today() == 0 and "push.settled_from_event" not in audit_actions(push)
    assert len(calls_to(emulator, SUBMIT)) == 1


def test_a_push_settled_from_the_event_stays_so_when_the_late_answer_comes(app, emulator, committed_db, account):
    people = factories.newsroom()
    start = datetime.now(UTC) + timedelta(minutes=5)
    push, later = week_of_daily_cases(people, start, 2)
    emulator.hook("delay", {"path": SUBMIT, "seconds": 4})
    thread, errors = _publish_in_thread(app, start + timedelta(minutes=1, seconds=1))  # both are due
    event = _published_event(emulator)
    # The worker lives, but its lock connection is lost (a network blip, a restarted pgbouncer): to the rest of
    # the system it looks dead, and the event settles its push.
    holder = sa.text(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = :key AND objid::bigint = :push"
        " AND objsubid = 2 AND granted"
    )
    pid = _wait_for(lambda: db.session.scalar(holder, {"key": publishing.HOLD_KEY, "push": push.id}))
    db.session.execute(sa.select(sa.func.pg_terminate_backend(pid)))
    db.session.commit()
    _wait_for(lambda: not _held_now(push.id))
    wechat = Sender(app.test_client(), account)
    assert wechat.post(event["xml"]).status_code == 200
    db.session.expire_all()
    push = db.session.get(ArticlePush, push.id)
    assert push.status is PushStatus.PUBLISHED
    settled = settled_state(push)
    thread.join()
    # The answer found the push settled under its row lock and left it. Releasing the lost lock failed quietly, and
    # the run claimed nothing more: it had no lock to hold a claim with.
    assert errors == []
    assert db.session.get(ArticlePush, later.id).status is PushStatus.SCHEDULED
    db.session.expire_all()
    push = db.session.get(ArticlePush, push.id)
    assert settled_state(push) == settled and push.status is PushStatus.PUBLISHED
    assert push.publish_id == str(event["event"]["PublishEventInfo"]["publish_id"])
    assert "push.settled_from_event" in audit_actions(push)
    assert len(calls_to(emulator, SUBMIT)) == 1
    assert publishing.run_due(start + timedelta(minutes=1, seconds=5)) == [later.id]  # the next run, on a new one


def test_submit_refused_by_wechat_is_retried_safely(emulator, db_session, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("fail", {"path": SUBMIT, "errcode": -1})  # WeChat answered: system busy, nothing published
    now = start + timedelta(minutes=1)
    publishing.run_due(now)
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.PUBLISHING and push.submit_started_at is None and push.error_code == -1
    publishing.run_due(push.lease_until + timedelta(seconds=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.SUBMITTED
    assert [c["errcode"] for c in calls_to(emulator, SUBMIT)] == [-1, 0]
    assert published_titles(emulator) == ["每日一案｜案例0"]


def test_read_timeout_on_submit_waits_for_a_person(emulator, db_session, people, monkeypatch):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    real = client_module.SharedTokenClient.raw_post

    def slow_answer(self, endpoint, data):
        result = real(self, endpoint, data)
        if endpoint == SUBMIT:
            raise requests.ReadTimeout("the answer never came")  # WeChat got it; we cannot know
        return result

    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", slow_answer)
    publishing.run_due(start + timedelta(minutes=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.UNCERTAIN and "ReadTimeout" in push.error_message
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", real)
    publishing.run_due(start + timedelta(minutes=30))
    assert len(calls_to(emulator, SUBMIT)) == 1


def test_an_unreachable_wechat_is_retried_and_says_so_in_chinese(
    app, emulator, db_session, people, redis_client, monkeypatch
):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    dead = client_module.SharedTokenClient(
        "wxdead", "secret", base="http://127.0.0.1:9/", redis=redis_client, timeout=1
    )
    monkeypatch.setitem(app.extensions, "wechat_client", dead)  # the real client, pointed at a closed port
    publishing.run_due(start + timedelta(minutes=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.PUBLISHING and push.lease_until is not None  # tried again after its backoff
    assert push.error_message == "无法连接微信服务器，请稍后再试"  # not "网络错误：ConnectionError"


def test_a_cut_off_answer_to_submit_waits_for_a_person(emulator, db_session, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("publish-outcome", {"publish_status": 1})  # still publishing: the draft is still in the box
    emulator.hook("garble", {"path": SUBMIT})  # WeChat took it; its answer arrived cut off (a proxy, a reset)
    publishing.run_due(start + timedelta(minutes=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.UNCERTAIN and "无法解析" in push.error_message
    publishing.run_due(start + timedelta(minutes=30))
    assert len(calls_to(emulator, SUBMIT)) == 1  # a second submit would have published it twice


def test_a_lost_cover_file_fails_plainly(emulator, db_session, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    images.media_path(push.articles[0].cover_path).unlink()
    publishing.run_due(start + timedelta(minutes=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.FAILED and "封面文件丢失" in push.error_message
    assert not calls_to(emulator, "cgi-bin/draft/add")


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


def test_every_body_image_uploaded_is_remembered_for_the_manual_export_and_a_retry(emulator, db_session, people):
    """Only the first body image's WeChat URL was kept (the mapping was changed in place after its first commit):
    the manual fallback's HTML pointed the others at the console, which WeChat's editor cannot fetch."""
    body = [articles.store_body_image(jpeg(colour=c)) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    a = articles.save_article(
        people["liaison"],
        title="三张现场照片",
        body_html="<p>案情</p>" + "".join(f'<img src="{src}">' for src in body),
        cover=jpeg(),
    )
    articles.submit(people["liaison"], a.id)
    articles.review(people["reviewer"], a.id, approve=True)
    start = datetime.now(UTC) + timedelta(minutes=5)
    push = articles.schedule_push(people["editor"], [a.id], start, None)
    emulator.hook("fail", {"path": "cgi-bin/freepublish/submit", "errcode": 48001})
    publishing.run_due(start + timedelta(minutes=1))
    db.session.expire_all()
    push = db.session.get(ArticlePush, push.id)
    assert push.status is PushStatus.FAILED
    assert sorted(push.articles[0].wechat_images) == sorted(body)
    html = articles.export_html(push)
    assert "/admin/" not in html and html.count(emulator.url) == 3
    assert len(calls_to(emulator, "cgi-bin/media/uploadimg")) == 3


@pytest.mark.parametrize(
    ("errcode", "errmsg", "told"),
    [
        (
            53503,
            "draft not pass publish check rid: 64ffdf3b-25c2606d-7d6d6392",
            "草稿未通过微信的发布检查（53503）：请",
        ),
        (53504, "please use draft on mp.weixin.qq.com rid: 1-2-3", "需在公众平台发表这篇草稿（53504）：请"),
        (53505, "please save draft manually rid: 1-2-3", "需先在公众平台手动保存草稿（53505）：请"),
        (53599, "something new hint: [x1] rid: 1-2-3", "微信拒绝发布：53599 something new"),  # as sent, no noise
        (45003, "title size out of limit rid: 1-2-3", "微信拒绝发布：45003 标题过长"),  # the shared table's
    ],
)
def test_a_refused_submit_tells_the_editor_what_to_do(emulator, db_session, people, errcode, errmsg, told):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("fail", {"path": SUBMIT, "errcode": errcode, "errmsg": errmsg})
    publishing.run_due(start + timedelta(minutes=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.FAILED and push.error_code == errcode
    assert push.error_message.startswith(told) and "rid" not in push.error_message
    assert "hint" not in push.error_message


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


def test_a_push_busy_at_every_attempt_fails_saying_why_in_chinese(emulator, db_session, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    busy = {"path": "cgi-bin/draft/add", "errcode": -1, "errmsg": "system error rid: 6752e0b1-1a2b3c4d-5e6f7a8b"}
    emulator.hook("fail", busy | {"times": publishing.MAX_ATTEMPTS})
    now = start + timedelta(minutes=1)
    for _ in range(publishing.MAX_ATTEMPTS):
        publishing.run_due(now)
        push = db.session.get(ArticlePush, push.id, populate_existing=True)
        now = (push.lease_until or now) + timedelta(seconds=1)
    assert push.status is PushStatus.FAILED and push.error_message == "多次重试仍失败：-1 微信系统繁忙"


def test_polling_respects_the_daily_budget(emulator, db_session, people, redis_client):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    publishing.run_due(start + timedelta(minutes=1))
    later = start + timedelta(minutes=30)
    redis_client.set(publishing._poll_key(later), publishing.POLL_DAILY_BUDGET)
    assert publishing.poll_submitted(later) == 0
    assert db.session.get(ArticlePush, push.id).status is PushStatus.SUBMITTED
    assert not [c for c in emulator.state()["calls"] if c["path"] == "cgi-bin/freepublish/get"]


def test_a_poll_that_times_out_holds_up_neither_the_run_nor_the_failure_notices(
    app, emulator, db_session, people, monkeypatch
):
    emulator.hook("users", {"users": [{"openid": "o-ed", "subscribe": 1}]})
    bind(people["editor"], "o-ed")
    start = datetime.now(UTC) + timedelta(minutes=5)
    (waiting,) = week_of_daily_cases(people, start, 1)
    emulator.hook("publish-outcome", {"publish_status": 1})  # the event is late: polled after POLL_AFTER
    publishing.run_due(start + timedelta(minutes=1))
    (failing,) = week_of_daily_cases(people, start + timedelta(minutes=2), 1)
    emulator.hook("fail", {"path": "cgi-bin/draft/add", "errcode": 48001})
    with app.app_context():
        monkeypatch.setattr(client_module.get_client(), "timeout", 0.5)
    emulator.hook("delay", {"path": "cgi-bin/freepublish/get", "seconds": 1.5})  # a slow WeChat: a ReadTimeout
    publishing.run_due(start + timedelta(minutes=10))
    assert db.session.get(ArticlePush, failing.id, populate_existing=True).status is PushStatus.FAILED
    assert db.session.get(ArticlePush, waiting.id, populate_existing=True).status is PushStatus.SUBMITTED
    sent = emulator.state()["templates_sent"]
    assert [(t["touser"], t["data"]["character_string5"]["value"]) for t in sent] == [("o-ed", f"P{failing.id}")]


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


def bind(person, openid: str) -> None:
    person.openid = openid
    db.session.commit()


FAILURES = {
    # name: (how WeChat fails it, what the notice gives as the reason)
    "content-rejected": ({"publish-outcome": {"publish_status": 4, "fail_idx": [1]}}, "平台审核不通过"),
    "publish-failed": ({"publish-outcome": {"publish_status": 3}}, "发布失败（常规失败）"),
    "quota-45009": ({"fail": {"path": "cgi-bin/draft/add", "errcode": 45009}}, "今日接口调用次数已用完（45009），…"),
    "no-permission-48001": ({"fail": {"path": SUBMIT, "errcode": 48001}}, "公众号没有发布接口权限（48001）：…"),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_each_failure_reaches_the_bound_editors_once(app, emulator, wechat, people, failure, monkeypatch):
    hooks, reason = FAILURES[failure]
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://wx.example.gov.cn/")
    emulator.hook("users", {"users": [{"openid": o, "subscribe": 1} for o in ("o-ed", "o-rv", "o-ad")]})
    bind(people["editor"], "o-ed")
    bind(people["reviewer"], "o-rv")  # bound, but a reviewer cannot act on a push
    bind(factories.staff("ad1", "admin"), "o-ad")
    factories.staff("ed2", "editor")  # not bound: WeChat has nowhere to send it
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    for name, payload in hooks.items():
        emulator.hook(name, payload)
    now = start + timedelta(minutes=1)
    publishing.run_due(now)
    if "publish-outcome" in hooks:  # the verdict comes with PUBLISHJOBFINISH, delivered twice as WeChat may
        xml = last_publish_event(emulator)["xml"]
        assert wechat.post(xml).status_code == 200 and wechat.post(xml).status_code == 200
    for minutes in (2, 3, 60):
        publishing.run_due(now + timedelta(minutes=minutes))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.FAILED and push.articles[0].status is ArticleStatus.FAILED
    sent = emulator.state()["templates_sent"]
    assert sorted(t["touser"] for t in sent) == ["o-ad", "o-ed"]
    for notice in sent:
        assert notice["data"]["thing1"]["value"] == "推文发布失败"
        assert notice["data"]["thing2"]["value"] == "每日一案｜案例0"
        assert notice["data"]["thing4"]["value"] == reason
        assert notice["data"]["character_string5"]["value"] == f"P{push.id}"
        assert notice["url"] == f"https://wx.example.gov.cn/admin/articles/pushes/{push.id}"  # beat has no request


def test_the_duty_roster_decides_and_a_second_failure_is_a_second_notice(emulator, db_session, people):
    emulator.hook("users", {"users": [{"openid": o, "subscribe": 1} for o in ("o-ed", "o-ad")]})
    bind(people["editor"], "o-ed")
    bind(factories.staff("ad1", "admin"), "o-ad")
    db.session.add(AlertDuty(staff_id=people["editor"].id))  # on duty this week: only they are told
    db.session.commit()
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("fail", {"path": "cgi-bin/draft/add", "errcode": 45009})
    emulator.hook("fail", {"path": "cgi-bin/message/template/send", "errcode": -1})  # the first send fails
    now = start + timedelta(minutes=1)
    publishing.run_due(now)
    assert emulator.state()["templates_sent"] == []
    publishing.run_due(now + timedelta(minutes=1))  # tried again on the next run
    assert [t["touser"] for t in emulator.state()["templates_sent"]] == ["o-ed"]
    db.session.execute(sa.delete(AlertDuty))  # off the roster: every bound editor and admin hears of the next one
    db.session.commit()
    # The editor gives the articles back and schedules them again; this time WeChat refuses permission.
    publishing.release_failed(people["editor"], push.id)
    again = articles.schedule_push(people["editor"], [push.articles[0].id], start + timedelta(minutes=2), None)
    emulator.hook("fail", {"path": SUBMIT, "errcode": 48001})
    emulator.hook("fail", {"path": "cgi-bin/message/template/send", "errcode": -1})  # the editor's send fails...
    for minutes in (3, 4):
        publishing.run_due(now + timedelta(minutes=minutes))
    sent = [(t["touser"], t["data"]["character_string5"]["value"]) for t in emulator.state()["templates_sent"]]
    # ...the admin's still goes out in that run, and the editor's on the next
    assert sent == [("o-ed", f"P{push.id}"), ("o-ad", f"P{again.id}"), ("o-ed", f"P{again.id}")]


def test_a_notice_wechat_refuses_for_good_is_not_sent_again(emulator, db_session, people):
    emulator.hook("users", {"users": [{"openid": "o-ed", "subscribe": 1}]})
    bind(people["editor"], "o-ed")
    db.session.add(AlertDuty(staff_id=people["editor"].id))
    db.session.commit()
    start = datetime.now(UTC) + timedelta(minutes=5)
    week_of_daily_cases(people, start, 1)
    emulator.hook("fail", {"path": "cgi-bin/draft/add", "errcode": 45009})
    # 43004: the editor unfollowed; only the first send is refused, so a retry would go through
    emulator.hook("fail", {"path": "cgi-bin/message/template/send", "errcode": 43004, "times": 1})
    for minutes in (1, 2, 3):
        publishing.run_due(start + timedelta(minutes=minutes))
    assert emulator.state()["templates_sent"] == []
    (notice,) = db.session.scalars(sa.select(PushNotice)).all()
    assert notice.sent_at is None and notice.attempts == publishing.NOTICE_MAX_ATTEMPTS
    assert notice.error.startswith("43004")


def test_a_deliberate_retry_of_a_published_push_is_refused_by_wechat(emulator, db_session, people, monkeypatch):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    real = client_module.SharedTokenClient.raw_post
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", _dying(real, SUBMIT, after_sending=True))
    with pytest.raises(WorkerKilled):
        publishing.run_due(start + timedelta(minutes=1))
    monkeypatch.setattr(client_module.SharedTokenClient, "raw_post", real)
    publishing.run_due(start + timedelta(minutes=10))
    # Someone retries without finding the article that is in fact out: WeChat no longer has the draft.
    publishing.retry_uncertain(people["editor"], push.id)
    publishing.run_due(start + timedelta(minutes=11))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.FAILED and push.error_code == 40007 and "多半已经发表" in push.error_message
    assert published_titles(emulator) == ["每日一案｜案例0"]


def test_a_cover_wechat_no_longer_has_is_uploaded_again_when_rescheduled(emulator, db_session, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    article = push.articles[0]
    article.cover_media_id = "deleted-on-the-platform"  # uploaded once, then removed from WeChat's library
    db.session.commit()
    emulator.hook("fail", {"path": "cgi-bin/draft/add", "errcode": 40007})
    publishing.run_due(start + timedelta(minutes=1))
    assert db.session.get(ArticlePush, push.id, populate_existing=True).status is PushStatus.FAILED
    assert db.session.get(Article, article.id, populate_existing=True).cover_media_id is None
    # 重新排期: the cover goes up again instead of failing with the same 40007 every time.
    publishing.release_failed(people["editor"], push.id)
    again = articles.schedule_push(people["editor"], [article.id], start + timedelta(minutes=2), None)
    publishing.run_due(start + timedelta(minutes=3))
    assert db.session.get(ArticlePush, again.id, populate_existing=True).status is PushStatus.SUBMITTED
    assert len(calls_to(emulator, "cgi-bin/material/add_material")) == 1


def test_a_draft_whose_answer_was_lost_is_used_not_made_again(emulator, db_session, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("garble", {"path": "cgi-bin/draft/add"})  # WeChat made the draft; its answer arrived cut off
    publishing.run_due(start + timedelta(minutes=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.PUBLISHING and push.draft_media_id is None
    (made,) = [d["media_id"] for d in emulator.state()["drafts"]]
    publishing.run_due(push.lease_until + timedelta(seconds=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.SUBMITTED and push.draft_media_id == made
    assert len(calls_to(emulator, "cgi-bin/draft/add")) == 1  # no second draft left in the box
    assert published_titles(emulator) == ["每日一案｜案例0"]


def test_a_lost_draft_of_content_changed_since_is_not_used(emulator, db_session, people):
    start = datetime.now(UTC) + timedelta(minutes=5)
    (push,) = week_of_daily_cases(people, start, 1)
    emulator.hook("garble", {"path": "cgi-bin/draft/add"})
    publishing.run_due(start + timedelta(minutes=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    (stale,) = [d["media_id"] for d in emulator.state()["drafts"]]
    # the article changed after that draft was made: the draft holds the old text
    db.session.execute(
        sa.update(Article).where(Article.push_id == push.id).values(updated_at=datetime.now(UTC) + timedelta(seconds=5))
    )
    db.session.commit()
    publishing.run_due(push.lease_until + timedelta(seconds=1))
    push = db.session.get(ArticlePush, push.id, populate_existing=True)
    assert push.status is PushStatus.SUBMITTED and push.draft_media_id not in (None, stale)
    assert len(calls_to(emulator, "cgi-bin/draft/add")) == 2
