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
from server.filters import local_dt
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
    assert (notice.state, notice.attempts, notice.error) == (EventNoticeState.PENDING, 1, "-1 微信系统繁忙")
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
        assert notice.state is EventNoticeState.PENDING and notice.error == "无法连接微信服务器，请稍后再试"
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
    assert (notice.state, notice.attempts, notice.error) == (EventNoticeState.FAILED, 1, "43004 用户未关注公众号")
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


def test_a_notice_claimed_late_in_a_long_run_is_not_taken_for_an_orphan(db_session, emulator, monkeypatch):
    emulator.hook("users", {"users": [{"openid": "oL0"}, {"openid": "oL1"}]})
    event, (session,) = make_event(quota=10, starts_in=timedelta(hours=3))
    for openid in ("oL0", "oL1"):
        events.register(openid, event.id, session.id)
    from server.wechat import client as client_module

    real, swept = client_module.send_template, []

    def send_while_the_sweep_runs(body):
        if not swept:  # the minute sweep runs while this run's first message is on its way to WeChat
            swept.append(None)
            swept[0] = events.deliver_due_notices()
        return real(body)

    monkeypatch.setattr(client_module, "send_template", send_while_the_sweep_runs)
    # A reminder run over a big session began six minutes ago (thousands of messages): it claims each row as it
    # reaches it, and a row claimed just now is not one a dead worker left behind.
    events.send_due_reminders(utcnow() - timedelta(minutes=6))
    assert sorted(_sent(emulator)) == ["oL0", "oL1"]  # each once, though the sweep ran in between
    assert swept == [1]  # the sweep sent the row the run had not reached yet, and left the one in flight alone


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


def _reschedule(session, **changes):
    values = {k: getattr(session, k) for k in ("starts_at", "ends_at", "quota", "venue", "stream_url")}
    return events.save_session(session.event, session=session, **(values | changes))


def test_a_new_time_is_notified_to_everyone_holding_or_waiting_and_the_reminders_follow_it(db_session, emulator):
    emulator.hook("users", {"users": [{"openid": o} for o in ("oA", "oB", "oC")]})
    event, (session,) = make_event(quota=1, companions=0)
    a, _ = events.register("oA", event.id, session.id)  # the place
    b, _ = events.register("oB", event.id, session.id)  # waiting
    c, _ = events.register("oC", event.id, session.id)
    events.cancel("oC", c.id)
    old_start = session.starts_at
    assert events.send_due_reminders(old_start - timedelta(hours=20)) == 1  # A: the day before, old time

    session = _reschedule(session, ends_at=session.ends_at + timedelta(minutes=30), quota=1)
    assert session.revision == 0 and _sent(emulator) == ["oA"]  # the end time alone is no news

    new_start = old_start + timedelta(days=2)
    session = _reschedule(session, starts_at=new_start, ends_at=new_start + timedelta(hours=2), venue="城管执法局")
    assert session.revision == 1 and events.change_notices(session) == 2
    changed = emulator.state()["templates_sent"][1:]
    assert sorted(m["touser"] for m in changed) == ["oA", "oB"]  # not C, who cancelled
    assert {m["data"]["time2"]["value"] for m in changed} == {local_dt(new_start)}
    assert {m["data"]["thing3"]["value"] for m in changed} == {"城管执法局"}
    assert {m["data"]["thing4"]["value"] for m in changed} == {"活动时间或地点有变更，请留意"}

    # The reminder that went for the old day goes again for the new one, once.
    assert events.send_due_reminders(new_start - timedelta(hours=20)) == 1
    assert events.send_due_reminders(new_start - timedelta(hours=19)) == 0
    assert _sent(emulator) == ["oA", *[m["touser"] for m in changed], "oA"]
    kinds = [(n.kind, n.revision, n.state) for n in events.notices_of(a)]
    assert kinds == [
        (EventNoticeKind.DAY_BEFORE, 0, EventNoticeState.SENT),
        (EventNoticeKind.CHANGED, 1, EventNoticeState.SENT),
        (EventNoticeKind.DAY_BEFORE, 1, EventNoticeState.SENT),
    ]


def test_a_notice_of_an_earlier_change_still_waiting_for_a_retry_is_dropped(db_session, emulator):
    emulator.hook("users", {"users": [{"openid": "oA"}]})
    emulator.hook("fail", {"path": SEND, "errcode": -1, "errmsg": "system error", "times": 1})
    event, (session,) = make_event(quota=5, companions=0)
    a, _ = events.register("oA", event.id, session.id)
    session = _reschedule(session, venue="一号门")
    first = _notice(a)
    assert (first.revision, first.state) == (1, EventNoticeState.PENDING)  # WeChat refused the first attempt
    session = _reschedule(session, venue="二号门")  # changed again before the retry
    assert events.deliver_due_notices(first.next_attempt_at) == 0
    db.session.expire_all()
    notices = {n.revision: n for n in events.notices_of(a)}
    assert notices[1].state is EventNoticeState.FAILED and "又有变更" in notices[1].error
    assert notices[2].state is EventNoticeState.SENT
    assert [m["data"]["thing3"]["value"] for m in emulator.state()["templates_sent"]] == ["二号门"]


# -- a session called off --------------------------------------------------------------------------------------------


def _called_off(emulator):
    """A takes the only place and B waits; then A2 (another session) registers; then the first session is called off."""
    emulator.hook("users", {"users": [{"openid": o} for o in ("oA", "oB", "oC")]})
    event, (session, other) = make_event(quota=1, companions=0, sessions=2)
    a, _ = events.register("oA", event.id, session.id)
    b, _ = events.register("oB", event.id, session.id)
    c, _ = events.register("oC", event.id, other.id)
    told = events.cancel_session(session, "  受台风影响，\n本场活动取消 ")
    return event, session, other, (a, b, c), told


def test_calling_a_session_off_cancels_and_tells_everyone_once_and_frees_nothing(db_session, emulator):
    event, session, other, (a, b, c), told = _called_off(emulator)
    assert told == 2
    db.session.expire_all()
    assert [db.session.get(Registration, r.id).status for r in (a, b, c)] == [
        RegistrationStatus.CANCELLED,
        RegistrationStatus.CANCELLED,  # the waiting list too: no place will come free for B
        RegistrationStatus.CONFIRMED,  # the other session is untouched
    ]
    session = db.session.get(type(session), session.id)
    assert (session.taken, session.cancel_reason) == (0, "受台风影响， 本场活动取消")
    sent = emulator.state()["templates_sent"]
    assert sorted(m["touser"] for m in sent) == ["oA", "oB"]
    assert {m["data"]["thing4"]["value"] for m in sent} == {"已取消：受台风影响， 本场活动取消"}
    assert events.deliver_due_notices(utcnow() + timedelta(hours=1)) == 0  # each went once
    assert events.places_left(db.session.get(type(event), event.id)) == {other.id: 0}  # a called-off one: not listed
    with pytest.raises(events.ServiceError, match="该场次已取消：受台风影响"):
        events.register("oD", event.id, session.id)
    with pytest.raises(events.ServiceError, match="已经取消"):
        events.cancel_session(session, "再取消一次")
    with pytest.raises(events.ServiceError, match="不能修改"):
        events.save_session(
            event, starts_at=session.starts_at, ends_at=session.ends_at, quota=5, venue="新地点", session=session
        )
    with pytest.raises(events.ServiceError, match="已取消，不能登记"):
        events.walk_in(event, session.id, events.Applicant(name="来访者"))
    assert events.expire_holds() == 0  # the slack (taken 0 of 1) is not offered to anyone
    assert db.session.get(Registration, b.id).status is RegistrationStatus.CANCELLED
    for before in (timedelta(hours=2), timedelta(minutes=30)):  # no day-before or hour-before reminder for it
        assert session.id not in [sid for sid, _ in events.due_reminders(session.starts_at - before)]


def test_calling_off_needs_a_reason_and_a_session_not_over_nor_attended(db_session, emulator):
    event, (session,) = make_event(quota=3)
    for reason in ("", " 雨", "很长" * 30):
        with pytest.raises(events.ServiceError, match="取消原因"):
            events.cancel_session(session, reason)
    with pytest.raises(events.ServiceError, match="已结束"):
        events.cancel_session(session, "临时有事", now=session.ends_at)
    events.walk_in(event, session.id, events.Applicant(name="来访者"))  # checked in at the gate
    with pytest.raises(events.ServiceError, match="已有 1 人签到"):
        events.cancel_session(session, "临时有事", now=session.starts_at + timedelta(minutes=1))
    assert session.cancelled_at is None


def test_a_session_under_way_that_nobody_has_reached_can_be_called_off(db_session, emulator):
    # A livestream whose broadcast failed: its reservations are told, though the start has passed.
    event, (session,) = make_event(quota=3)
    reg, _ = events.register("oViewer", event.id, session.id, events.Applicant(name="观众"))
    assert events.cancel_session(session, "直播信号故障，本场取消", now=session.starts_at + timedelta(minutes=5)) == 1
    assert db.session.get(Registration, reg.id, populate_existing=True).status is RegistrationStatus.CANCELLED


def test_a_registration_racing_the_cancellation_is_refused_or_swept(db_session, emulator, monkeypatch):
    emulator.hook("users", {"users": [{"openid": "oLate"}, {"openid": "oStraggler"}]})
    event, (session,) = make_event(quota=5)
    take = events._redis_take

    def cancelled_meanwhile(session_id, n):  # the session was read open; it is called off before the write
        events.cancel_session(db.session.get(type(session), session_id), "场地临时征用")
        return take(session_id, n)

    monkeypatch.setattr(events, "_redis_take", cancelled_meanwhile)
    with pytest.raises(events.ServiceError, match="该场次已取消"):
        events.register("oLate", event.id, session.id)
    monkeypatch.setattr(events, "_redis_take", take)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Registration)) == 0
    assert db.session.get(type(session), session.id, populate_existing=True).taken == 0
    # A waiting-list row whose statement still saw the session open commits after the cancellation: the minute job
    # cancels it and tells that citizen too.
    db.session.add(
        Registration(
            event_id=event.id, session_id=session.id, openid="oStraggler", status=RegistrationStatus.WAITING, ticket="t"
        )
    )
    db.session.commit()
    events.expire_holds()
    (late,) = db.session.scalars(sa.select(Registration).filter_by(openid="oStraggler"))
    assert late.status is RegistrationStatus.CANCELLED
    assert [m["touser"] for m in emulator.state()["templates_sent"]] == ["oStraggler"]
