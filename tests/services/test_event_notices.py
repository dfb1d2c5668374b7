"""Event notices as an outbox: an attempt WeChat refuses or never receives is retried with backoff, each notice goes
at most once (several sweeps, a duplicated task, a worker that died), and a late retry of an outdated one is dropped.
WeChat is the emulator over HTTP: its /_emulator/fail hook makes it answer errors, a closed port unreachable."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import EventNotice, EventNoticeKind, EventNoticeState, Registration, RegistrationStatus, utcnow
from server.extensions import db
from server.services import events
from server.tasks.events import deliver_event_notice, send_event_notice
from tests.conftest import SQLITE
from tests.services.test_events import make_event

SEND = "cgi-bin/message/template/send"


def _sent(emulator) -> list[str]:
    return [m["touser"] for m in emulator.state()["templates_sent"]]


def _notice(reg: Registration) -> EventNotice:
    (notice,) = events.notices_of(reg)
    return db.session.get(EventNotice, notice.id, populate_existing=True)


def _offer(emulator, *, hold_minutes: int = 60) -> tuple[Registration, Registration]:
    """A takes the only place, B waits; A cancels, so B is offered it and a notice is queued (and tried) for B."""
    emulator.hook("users", {"users": [{"openid": "oA"}, {"openid": "oB"}]})
    event, (session,) = make_event(quota=1, companions=0, hold_minutes=hold_minutes)
    a, _ = events.register("oA", event.id, session.id)
    b, _ = events.register("oB", event.id, session.id)
    events.cancel("oA", a.id)
    return a, db.session.get(Registration, b.id, populate_existing=True)


def test_an_offer_wechat_refuses_is_retried_with_backoff_until_it_goes_once(db_session, emulator):
    emulator.hook("fail", {"path": SEND, "errcode": -1, "errmsg": "system error", "times": 2})
    _, b = _offer(emulator)
    assert b.status is RegistrationStatus.OFFERED
    notice = _notice(b)
    assert (notice.state, notice.attempts, notice.error) == (EventNoticeState.PENDING, 1, "-1 system error")
    first_retry = notice.next_attempt_at
    assert timedelta(seconds=50) < first_retry - utcnow() <= timedelta(minutes=1)
    assert _sent(emulator) == []

    assert events.deliver_due_notices() == 0  # not before its time
    assert events.deliver_due_notices(first_retry) == 0  # the second attempt meets the second failure
    notice = _notice(b)
    assert (notice.state, notice.attempts) == (EventNoticeState.PENDING, 2)
    assert notice.next_attempt_at == first_retry + timedelta(minutes=2)  # the wait doubles
    assert events.deliver_due_notices(first_retry + timedelta(minutes=1)) == 0

    assert events.deliver_due_notices(notice.next_attempt_at) == 1
    notice = _notice(b)
    assert (notice.state, notice.attempts, notice.sent_at is not None) == (EventNoticeState.SENT, 3, True)
    assert _sent(emulator) == ["oB"]
    # Nothing sends it again: neither the sweep later, nor a duplicated task, nor the old task signature.
    assert events.deliver_due_notices(utcnow() + timedelta(days=1)) == 0
    deliver_event_notice.delay(notice.id)
    send_event_notice.delay(b.id, EventNoticeKind.OFFER.value)
    assert _sent(emulator) == ["oB"]
    calls = [c for c in emulator.state()["calls"] if c["path"] == SEND]
    assert len({c["body"]["client_msg_id"] for c in calls}) == 1 and len(calls) == 3  # one id for every attempt


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed: connections are refused


def test_an_offer_made_while_wechat_is_unreachable_goes_when_it_is_back(app, db_session, emulator, closed_port):
    client = app.extensions["wechat_client"]
    app.extensions["wechat_client"] = None  # the next call builds a client for the unreachable base
    app.config["WECHAT_API_BASE"] = f"http://127.0.0.1:{closed_port}/"
    try:
        _, b = _offer(emulator)
        notice = _notice(b)
        assert notice.state is EventNoticeState.PENDING and notice.error.startswith("网络错误：")
        assert events.deliver_due_notices(notice.next_attempt_at) == 0  # still down
        notice = _notice(b)
        assert (notice.state, notice.attempts) == (EventNoticeState.PENDING, 2)
    finally:
        app.config["WECHAT_API_BASE"] = emulator.url
        app.extensions["wechat_client"] = client
    assert _sent(emulator) == []
    assert events.deliver_due_notices(notice.next_attempt_at) == 1
    assert _sent(emulator) == ["oB"] and _notice(b).state is EventNoticeState.SENT


def test_a_permanent_refusal_is_not_retried(db_session, emulator):
    emulator.hook("fail", {"path": SEND, "errcode": 43004, "errmsg": "require subscribe", "times": 1})
    _, b = _offer(emulator)
    notice = _notice(b)
    assert (notice.state, notice.attempts, notice.error) == (EventNoticeState.FAILED, 1, "43004 require subscribe")
    assert events.deliver_due_notices(utcnow() + timedelta(hours=2)) == 0
    assert _sent(emulator) == []


def test_after_the_last_attempt_the_notice_is_failed(db_session, emulator):
    emulator.hook("fail", {"path": SEND, "errcode": 45009, "errmsg": "reach max api daily quota limit", "times": 99})
    _, b = _offer(emulator, hold_minutes=24 * 60)
    at = utcnow()
    for _ in range(events.NOTICE_MAX_ATTEMPTS + 2):
        at += timedelta(hours=1)
        events.deliver_due_notices(at)
    notice = _notice(b)
    assert (notice.state, notice.attempts) == (EventNoticeState.FAILED, events.NOTICE_MAX_ATTEMPTS)
    assert notice.error.startswith("45009")


def test_a_retry_of_an_offer_no_longer_open_is_dropped(db_session, emulator):
    emulator.hook("fail", {"path": SEND, "errcode": -1, "times": 1})
    _, b = _offer(emulator)
    events.confirm_offer("oB", b.id)  # B saw it in 我的报名 and took the place meanwhile
    assert events.deliver_due_notices(utcnow() + timedelta(minutes=2)) == 0
    notice = _notice(b)
    assert notice.state is EventNoticeState.FAILED and "不再通知" in notice.error
    assert _sent(emulator) == []


def test_a_failed_reminder_is_retried_but_not_once_it_is_outdated(db_session, emulator):
    emulator.hook("users", {"users": [{"openid": "oR0"}, {"openid": "oR1"}]})
    event, (session,) = make_event(quota=10, starts_in=timedelta(hours=3))
    r0, _ = events.register("oR0", event.id, session.id)
    r1, _ = events.register("oR1", event.id, session.id)
    emulator.hook("fail", {"path": SEND, "errcode": -1, "times": 2})
    assert events.send_due_reminders() == 0
    assert [n.state for n in (_notice(r0), _notice(r1))] == [EventNoticeState.PENDING] * 2
    assert events.send_due_reminders() == 0  # the reminder worker does not queue them twice
    assert events.deliver_due_notices(utcnow() + timedelta(minutes=1, seconds=5)) == 2
    assert sorted(_sent(emulator)) == ["oR0", "oR1"]
    # Failing again an hour before the start, the day-before reminder would be late: dropped, not sent.
    emulator.hook("fail", {"path": SEND, "errcode": -1, "times": 1})
    r2, _ = events.register("oR2", event.id, session.id)
    emulator.hook("users", {"users": [{"openid": "oR2"}]})
    assert events.send_due_reminders() == 0
    later = session.starts_at - timedelta(minutes=50)
    assert events.deliver_due_notices(later) == 0
    day_before = next(n for n in events.notices_of(r2) if n.kind is EventNoticeKind.DAY_BEFORE)
    assert db.session.get(EventNotice, day_before.id, populate_existing=True).state is EventNoticeState.FAILED
    assert events.send_due_reminders(later) == 3  # the hour-before one goes to all three
    assert sorted(_sent(emulator)) == ["oR0", "oR0", "oR1", "oR1", "oR2"]


def test_a_notice_orphaned_mid_send_is_taken_up_again(db_session, emulator):
    _, b = _offer(emulator)
    notice = _notice(b)
    # A worker claimed it and died before it could record anything (the message may or may not have gone out).
    db.session.execute(
        sa.update(EventNotice)
        .where(EventNotice.id == notice.id)
        .values(state=EventNoticeState.SENDING, sent_at=None, claimed_at=utcnow() - timedelta(minutes=1))
    )
    db.session.commit()
    assert events.deliver_due_notices() == 0  # it may still be working
    assert events.deliver_due_notices(utcnow() + events.NOTICE_STALE) == 1
    calls = [c["body"]["client_msg_id"] for c in emulator.state()["calls"] if c["path"] == SEND]
    assert calls == [f"event-notice-{notice.id}"] * 2  # the same id: WeChat drops a repeat it already delivered


@pytest.mark.skipif(SQLITE, reason="needs concurrent connections")
def test_retries_go_once_even_with_several_sweeps_at_once(app, committed_db, emulator):
    people = [f"oW{i}" for i in range(8)]
    emulator.hook("users", {"users": [{"openid": o} for o in people]})
    event, (session,) = make_event(quota=20, starts_in=timedelta(hours=20))
    for openid in people:
        events.register(openid, event.id, session.id)
    emulator.hook("fail", {"path": SEND, "errcode": -1, "times": len(people)})
    assert events.send_due_reminders() == 0  # WeChat busy: all eight pending
    later = utcnow() + timedelta(minutes=2)

    def sweep(_: int) -> int:
        with app.app_context():
            try:
                return events.deliver_due_notices(later)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(sweep, range(4))) == len(people)
    assert sorted(_sent(emulator)) == people
    states = db.session.scalars(sa.select(EventNotice.state)).all()
    assert states == [EventNoticeState.SENT] * len(people)
