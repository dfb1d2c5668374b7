"""Events: sessions with quotas, registration under a surge, the waiting list, check-in, reminders, personal data.

How a place is taken (and why it never oversells):

1. Redis pre-filter. `events:left:<session>` holds the places left. One Lua call checks and decrements it; "full"
   sends the request straight to the waiting list without touching the session row, so the thousands who come after
   the 300 places are gone never queue on its row lock. A missing key (first use, expiry, a Redis restart or
   FLUSHDB) is rebuilt from PostgreSQL with SET NX; Redis being down skips the pre-filter altogether.
2. PostgreSQL decides. `UPDATE event_session SET taken = taken + n WHERE id = ? AND taken + n <= quota` runs in the
   same transaction as the INSERT of the registration: a registration is CONFIRMED only when that UPDATE matched a
   row; otherwise it is WAITING. The row lock serialises the takers, a CHECK constraint backs the rule, and a
   unique partial index (event, openid) makes a double tap one registration (its rollback undoes the UPDATE).
3. Redis may only be wrong upwards. A rebuild while takers are in flight counts places they are about to take, and
   a place given back to a key rebuilt meanwhile is a phantom: both only let extra requests reach step 2, which
   refuses them. A key is never created by a give-back (Lua checks it exists), so it cannot be rebuilt too low; a
   place leaked by a process killed between the two steps is repaired by the key's TTL and the minute job, which
   also offers any free place to the waiting list.

Cancellation, an expired hold and the minute job call `_redistribute`: under the session's row lock, freed places go
to the waiting list first (an offer held for `hold_minutes`), the rest back to the quota; then the Redis key is
dropped so that the next request rebuilds it from the database.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis
import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import load_only, make_transient_to_detached, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from models import (
    AuditKind,
    Event,
    EventKind,
    EventNotice,
    EventNoticeKind,
    EventNoticeState,
    EventSession,
    Registration,
    RegistrationStatus,
    utcnow,
)
from models.event import FIELD_LABELS
from server.extensions import autocommit_session, db, dialect_insert, get_redis
from server.filters import LOCAL_TZ, local_dt
from server.paging import Page, paginate
from server.services import ServiceError, audit, pii, sheets, targets
from server.urls import public_url

log = logging.getLogger(__name__)

audit.ACTION_LABELS.update(
    {
        "event.create": "新增活动",
        "event.update": "修改活动",
        "event.session_save": "修改活动场次",
        "event.walk_in": "现场登记",
        "event.checkin": "活动签到",
        "event.export": "导出报名名单",
        "event.pii_view": "查看报名人信息",
        "event.anonymise": "清除活动个人信息",
    }
)

COUNTER_TTL = 60  # seconds: a counter is rebuilt from PostgreSQL at least this often
REMINDER_LIVE_GRACE = timedelta(minutes=30)  # a livestream reminder still makes sense this long after the start
MAX_QUESTIONS = 5
ANSWER_MAX = 200

# Check then decrement in one step. -1: no counter (rebuild it); 0: not enough places; 1: taken.
_TAKE_LUA = """
local left = redis.call('GET', KEYS[1])
if not left then return -1 end
if tonumber(left) >= tonumber(ARGV[1]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return 1
end
return 0
"""
# Adjust only a counter that still exists: INCRBY on a missing key would create one from nothing.
_ADJUST_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBY', KEYS[1], ARGV[1]) end
return false
"""


# -- validation ------------------------------------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def valid_id_number(value: str) -> bool:
    """GB 11643-1999: 17 digits (region, birth date, sequence) and a mod-11 check character."""
    value = value.strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", value):
        return False
    try:
        born = datetime.strptime(value[6:14], "%Y%m%d")
    except ValueError:
        return False
    if born.year < 1900 or born > datetime.now():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == value[17]


def mask_id_number(value: str | None) -> str:
    if not value:
        return ""
    return value[:3] + "*" * (len(value) - 7) + value[-4:] if len(value) > 8 else "****"


def mask_name(value: str | None) -> str:
    if not value:
        return ""
    return value[0] + "*" * max(len(value) - 1, 1)


# -- events and sessions (console) -----------------------------------------------------------------------------------

EVENT_FIELDS = (
    "title",
    "kind",
    "description",
    "registration_opens_at",
    "registration_closes_at",
    "max_companions",
    "required_fields",
    "questions",
    "hold_minutes",
    "retention_days",
    "published",
)


def _audit_view(obj: Any, fields: Sequence[str]) -> dict[str, Any]:
    out = audit.snapshot(obj, tuple(fields))
    for key, value in out.items():
        if isinstance(value, str) and key.endswith("_at"):
            out[key] = value
    return out


def save_event(
    *,
    title: str,
    kind: str,
    description: str = "",
    registration_opens_at: datetime | None,
    registration_closes_at: datetime | None,
    max_companions: int = 0,
    required_fields: Iterable[str] = (),
    questions: Iterable[str] = (),
    hold_minutes: int = 120,
    retention_days: int = 30,
    published: bool = False,
    event: Event | None = None,
) -> Event:
    title = (title or "").strip()
    if not 1 <= len(title) <= 64:
        raise ServiceError("请填写活动名称（不超过 64 字）")
    try:
        kind_enum = EventKind(kind)
    except ValueError:
        raise ServiceError("请选择活动类型") from None
    if registration_opens_at is None or registration_closes_at is None:
        raise ServiceError("请填写报名开始和截止时间")
    if registration_closes_at <= registration_opens_at:
        raise ServiceError("报名截止时间须晚于开始时间")
    if not 0 <= max_companions <= 10:
        raise ServiceError("同行人数上限须在 0 到 10 之间")
    fields = [f for f in FIELD_LABELS if f in set(required_fields)]
    qs = [q.strip()[:100] for q in questions if q and q.strip()]
    if len(qs) > MAX_QUESTIONS:
        raise ServiceError(f"自定义问题最多 {MAX_QUESTIONS} 个")
    if not 1 <= hold_minutes <= 7 * 24 * 60:
        raise ServiceError("候补保留时间须在 1 分钟到 7 天之间")
    if not 1 <= retention_days <= 3650:
        raise ServiceError("个人信息保留天数须在 1 到 3650 之间")
    creating = event is None
    event = event or Event()
    before = None if creating else _audit_view(event, EVENT_FIELDS)
    event.title, event.kind, event.description = title, kind_enum, (description or "").strip()
    event.registration_opens_at, event.registration_closes_at = registration_opens_at, registration_closes_at
    event.max_companions, event.required_fields, event.questions = max_companions, fields, qs
    event.hold_minutes, event.retention_days, event.published = hold_minutes, retention_days, published
    db.session.add(event)
    db.session.flush()
    audit.record(
        "event.create" if creating else "event.update",
        target=event,
        before=before,
        after=_audit_view(event, EVENT_FIELDS),
    )
    db.session.commit()
    return event


def _to_minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def save_session(
    event: Event,
    *,
    starts_at: datetime | None,
    ends_at: datetime | None,
    quota: int,
    venue: str = "",
    stream_url: str = "",
    session: EventSession | None = None,
) -> EventSession:
    if starts_at is None or ends_at is None or ends_at <= starts_at:
        raise ServiceError("请填写场次的开始和结束时间，结束须晚于开始")
    if not 1 <= quota <= 1_000_000:
        raise ServiceError("名额须在 1 到 1000000 之间")
    venue, stream_url = (venue or "").strip()[:128], (stream_url or "").strip()[:512]
    if event.kind is EventKind.OFFLINE and not venue:
        raise ServiceError("线下活动请填写地点")
    # Checked whatever the kind: the event may be switched to a livestream later, and the link goes to citizens.
    if (stream_url or event.kind is EventKind.LIVESTREAM) and not stream_url.startswith(("https://", "http://")):
        raise ServiceError("直播请填写以 http(s):// 开头的直播地址")
    fields = ("starts_at", "ends_at", "quota", "venue", "stream_url")
    if session is not None and session.cancelled_at is not None:
        raise ServiceError("该场次已取消，不能修改；如需另行安排，请新增场次")
    if session is None:
        session = EventSession(event=event, taken=0)
        before = None
    else:
        before = _audit_view(session, fields)
        # The form sends minutes: a time stored with seconds (seeded, set in code) is the one the form showed.
        if _to_minute(starts_at) == _to_minute(session.starts_at):
            starts_at = session.starts_at
        if _to_minute(ends_at) == _to_minute(session.ends_at):
            ends_at = session.ends_at
        # Under the row lock: a quota below the places already held would break the CHECK and the promise made.
        locked = db.session.scalar(_lock(sa.select(EventSession).where(EventSession.id == session.id)))
        if locked is not None and quota < locked.taken:
            raise ServiceError(f"已有 {locked.taken} 个名额被占用，名额不能少于此数")
        if locked is not None and locked.taken and starts_at != locked.starts_at and starts_at <= utcnow():
            # Change notices are not sent for a session under way: its registrants would never be told.
            raise ServiceError(f"本场已有 {locked.taken} 人报名，开始时间不能改到已经过去的时间")
    moved = session.id is not None and (
        (session.starts_at, session.venue, session.stream_url) != (starts_at, venue, stream_url)
    )
    session.starts_at, session.ends_at, session.quota = starts_at, ends_at, quota
    session.venue, session.stream_url = venue, stream_url
    if moved:
        session.revision += 1
    db.session.add(session)
    db.session.flush()
    audit.record("event.session_save", target=session, before=before, after=_audit_view(session, fields))
    db.session.commit()
    _forget_counter(session.id)
    if before is not None:
        _redistribute_and_notify(session.id, 0)  # a raised quota goes to the waiting list first
    if moved:
        _notify_change(session)
    return session


def change_notices(session: EventSession) -> int:
    """Change notices queued for the session's current revision."""
    return db.session.scalar(
        sa.select(sa.func.count())
        .select_from(EventNotice)
        .join(Registration)
        .where(
            Registration.session_id == session.id,
            EventNotice.kind == EventNoticeKind.CHANGED,
            EventNotice.revision == session.revision,
        )
    )


# Holding or waiting for a place: cancelled with the session, told of its changes.
ACTIVE = (RegistrationStatus.CONFIRMED, RegistrationStatus.WAITING, RegistrationStatus.OFFERED)


def _notify_change(session: EventSession) -> int:
    """Tell everyone holding or waiting for a place of the session's new time and place; how many were queued."""
    rids = list(
        db.session.scalars(
            sa.select(Registration.id).where(
                Registration.session_id == session.id,
                Registration.status.in_(ACTIVE),
                Registration.openid.is_not(None),
            )
        )
    )
    return len(_notify(rids, EventNoticeKind.CHANGED, utcnow(), revision=session.revision))


def _lock(stmt: Any) -> Any:
    return stmt.with_for_update() if db.engine.dialect.name == "postgresql" else stmt


# -- citizen-facing reads --------------------------------------------------------------------------------------------


def published_events(now: datetime | None = None) -> list[Event]:
    """Events citizens can see: published, with a session not yet over."""
    now = now or utcnow()
    upcoming = sa.select(EventSession.event_id).where(EventSession.ends_at > now)
    return list(
        db.session.scalars(
            sa.select(Event)
            .where(Event.published, Event.id.in_(upcoming))
            .order_by(Event.registration_opens_at, Event.id)
        )
    )


@dataclass(frozen=True)
class Listing:
    """One event as the chat menu lists it."""

    event: Event
    open: bool  # registration is open now; else it opens later
    left: int  # places left in the sessions still ahead
    quota: int  # places in those sessions


def open_for_signup(now: datetime | None = None, limit: int = 8) -> list[Listing]:
    """Published events whose registration is open or still to open, with a session still ahead: open ones first,
    then by opening time. Places come from the Redis counters when present (one MGET), else from PostgreSQL."""
    now = now or utcnow()
    ahead = sa.select(EventSession.event_id).where(EventSession.starts_at > now, EventSession.cancelled_at.is_(None))
    found = list(
        db.session.scalars(
            sa.select(Event)
            .where(Event.published, Event.registration_closes_at > now, Event.id.in_(ahead))
            .order_by(sa.case((Event.registration_opens_at <= now, 0), else_=1), Event.registration_opens_at, Event.id)
            .limit(limit)
            .options(selectinload(Event.sessions))
        )
    )
    sessions = [s for e in found for s in e.sessions if s.starts_at > now and s.cancelled_at is None]
    try:
        cached = get_redis().mget([_counter_key(s.id) for s in sessions]) if sessions else []
    except redis.RedisError:
        cached = [None] * len(sessions)
    left = {s.id: max(int(v) if v is not None else s.quota - s.taken, 0) for s, v in zip(sessions, cached, strict=True)}
    return [
        Listing(
            event=e,
            open=e.registration_opens_at <= now,
            left=sum(left[s.id] for s in e.sessions if s.id in left),
            quota=sum(s.quota for s in e.sessions if s.id in left),
        )
        for e in found
    ]


def visible_event(event_id: int) -> Event | None:
    event = db.session.get(Event, event_id)
    return event if event is not None and event.published else None


def places_left(event: Event) -> dict[int, int]:
    """Places left per session (not those called off), from the Redis counters when present (fast for polling),
    else from PostgreSQL."""
    out: dict[int, int] = {}
    sessions = [s for s in event.sessions if s.cancelled_at is None]
    try:
        values = get_redis().mget([_counter_key(s.id) for s in sessions]) if sessions else []
    except redis.RedisError:
        values = [None] * len(sessions)
    missing = [s.id for s, v in zip(sessions, values, strict=True) if v is None]
    for s, v in zip(sessions, values, strict=True):
        if v is not None:
            out[s.id] = max(int(v), 0)
    if missing:
        rows = db.session.execute(
            sa.select(EventSession.id, EventSession.quota - EventSession.taken).where(EventSession.id.in_(missing))
        )
        out.update({sid: max(left, 0) for sid, left in rows})
    return out


def own_registrations(openid: str) -> list[Registration]:
    return list(
        db.session.scalars(
            sa.select(Registration)
            .where(Registration.openid == openid)
            .order_by(Registration.created_at.desc(), Registration.id.desc())
        )
    )


def own_registration(openid: str, registration_id: int) -> Registration | None:
    reg = db.session.get(Registration, registration_id)
    return reg if reg is not None and reg.openid == openid else None


def active_registration(openid: str, event_id: int) -> Registration | None:
    return db.session.scalar(
        sa.select(Registration).where(
            Registration.event_id == event_id,
            Registration.openid == openid,
            Registration.status.in_(ACTIVE),
        )
    )


def waiting_position(reg: Registration) -> int | None:
    if reg.status is not RegistrationStatus.WAITING:
        return None
    return (
        db.session.scalar(
            sa.select(sa.func.count()).where(
                Registration.session_id == reg.session_id,
                Registration.status == RegistrationStatus.WAITING,
                Registration.id < reg.id,
            )
        )
        or 0
    ) + 1


# -- the Redis counter -----------------------------------------------------------------------------------------------


def _counter_key(session_id: int) -> str:
    return f"events:left:{session_id}"


def _redis_take(session_id: int, n: int) -> bool | None:
    """True: the pre-filter let it through; False: full; None: Redis unavailable (PostgreSQL alone decides)."""
    try:
        client = get_redis()
        key = _counter_key(session_id)
        result = client.eval(_TAKE_LUA, 1, key, n)
        if result == -1:
            left = db.session.scalar(
                sa.select(EventSession.quota - EventSession.taken).where(EventSession.id == session_id)
            )
            client.set(key, max(left or 0, 0), nx=True, ex=COUNTER_TTL)  # NX: a concurrent rebuild wins once
            result = client.eval(_TAKE_LUA, 1, key, n)
        if result == -1:
            return None
        return result == 1
    except redis.RedisError as exc:
        log.warning("events counter unavailable, PostgreSQL decides alone: %s", type(exc).__name__)
        return None


def _redis_adjust(session_id: int, delta: int) -> None:
    """Give back (+) places taken from the counter, or charge it (-) for places PostgreSQL took without it."""
    try:
        get_redis().eval(_ADJUST_LUA, 1, _counter_key(session_id), delta)
    except redis.RedisError:
        pass  # the key's TTL repairs it


def _forget_counter(session_id: int) -> None:
    try:
        get_redis().delete(_counter_key(session_id))
    except redis.RedisError:
        pass


def rebuild_counters(session_ids: Iterable[int] | None = None) -> int:
    """Drop the Redis counters so that they are rebuilt from PostgreSQL on next use; returns how many sessions."""
    ids = (
        list(session_ids)
        if session_ids is not None
        else list(db.session.scalars(sa.select(EventSession.id).where(EventSession.ends_at > utcnow())))
    )
    for sid in ids:
        _forget_counter(sid)
    return len(ids)


# -- registration ----------------------------------------------------------------------------------------------------


def _naive_quota() -> bool:
    """Test-only: the unsafe read-check-write path, to prove the race test can see an oversell. Never in production:
    it needs TESTING, which the factory never sets from the environment."""
    app = current_app
    return bool(app.testing and app.config.get("EVENTS_NAIVE_QUOTA"))


@dataclass
class Applicant:
    companions: int = 0
    name: str = ""
    phone: str = ""
    id_number: str = ""
    answers: list[str] = field(default_factory=list)


def _check_applicant(event: Event, applicant: Applicant) -> Applicant:
    required = set(event.required_fields or [])
    name, phone = applicant.name.strip(), applicant.phone.strip()
    id_number = applicant.id_number.strip().upper()
    if not 0 <= applicant.companions <= event.max_companions:
        raise ServiceError(
            f"同行人数最多 {event.max_companions} 人" if event.max_companions else "本活动不可携带同行人员"
        )
    if "name" in required and not 2 <= len(name) <= 20:
        raise ServiceError("请填写真实姓名（2–20 字）")
    if "phone" in required and not pii.valid_phone(phone):
        raise ServiceError("请填写 11 位手机号")
    if "id_number" in required and not valid_id_number(id_number):
        raise ServiceError("身份证号不正确，请核对后重新填写")
    answers = [(a or "").strip()[:ANSWER_MAX] for a in applicant.answers][: len(event.questions or [])]
    answers += [""] * (len(event.questions or []) - len(answers))
    return Applicant(
        applicant.companions,
        name if "name" in required else "",
        phone if "phone" in required else "",
        id_number if "id_number" in required else "",
        answers,
    )


# The surge's hot path reads both rows in one round trip, only the columns it uses (each column of a result costs
# the driver and the ORM), with a statement built once (building one costs as much as running it).
_REGISTER_LOOKUP = (
    sa.select(EventSession, Event)
    .join(Event, Event.id == EventSession.event_id)
    .where(EventSession.id == sa.bindparam("session_id"), Event.id == sa.bindparam("event_id"))
    .options(
        load_only(
            EventSession.quota,
            EventSession.taken,
            EventSession.starts_at,
            EventSession.cancelled_at,
            EventSession.cancel_reason,
        ),
        load_only(
            Event.kind,
            Event.published,
            Event.registration_opens_at,
            Event.registration_closes_at,
            Event.max_companions,
            Event.required_fields,
            Event.questions,
        ),
    )
)


def register(
    openid: str,
    event_id: int,
    session_id: int,
    applicant: Applicant | None = None,
    *,
    waitlist: bool = True,
    snapshot: bool = False,
    now: datetime | None = None,
) -> tuple[Registration, bool]:
    """Register once per event: (registration, created). CONFIRMED only if a place was atomically taken, else WAITING
    (or a refusal when the citizen does not want the waiting list). A repeat gets the existing registration back."""
    now = now or utcnow()
    if snapshot:
        raise ServiceError("您正在朋友圈预览页面中，请关注公众号后从菜单进入再报名")
    naive = _naive_quota()
    if not naive:
        autocommit_session()  # the write below is one statement: no BEGIN/COMMIT around it
    found = db.session.execute(_REGISTER_LOOKUP, {"session_id": session_id, "event_id": event_id}).first()
    if found is None or not found[1].published:
        raise ServiceError("活动或场次不存在")
    session, event = found
    if now < event.registration_opens_at:
        raise ServiceError(f"报名尚未开始，{local_dt(event.registration_opens_at)} 开放报名")
    if session.cancelled_at is not None:
        raise ServiceError(f"该场次已取消：{session.cancel_reason}")
    if now >= event.registration_closes_at:
        raise ServiceError("报名已截止")
    if now >= session.starts_at:
        later = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(EventSession)
            .where(EventSession.event_id == event.id, EventSession.cancelled_at.is_(None), EventSession.starts_at > now)
        )
        raise ServiceError("该场次已开始，请选择其他场次" if later else "该场次已开始，报名已截止")
    applicant = _check_applicant(event, applicant or Applicant())
    n = 1 + applicant.companions
    if n > session.quota:  # no cancellation could ever make room: a waiting-list entry would be a false promise
        raise ServiceError(f"本场共 {session.quota} 个名额，{n} 人无法一同报名，请减少同行人数")

    row: dict[str, Any] = {  # every column, so that the instance built after the insert needs no reload
        "event_id": event.id,
        "session_id": session.id,
        "openid": openid,
        "companions": applicant.companions,
        "name_enc": pii.encrypt(applicant.name),
        "phone_enc": pii.encrypt(applicant.phone),
        "id_number_enc": pii.encrypt(applicant.id_number),
        "answers": applicant.answers or None,
        "ticket": secrets.token_urlsafe(9),
        "walk_in": False,
        "hold_expires_at": None,
        "checked_in_at": None,
        "checkin_nonce": None,
        "checked_in_by_id": None,
        "created_at": now,
        "cancelled_at": None,
    }
    took_redis = None if naive else _redis_take(session.id, n)
    if took_redis is False and session.quota - session.taken >= n:
        # Redis says full but the row just read has room: the counter drifted, or a double tap was counted twice.
        # The database decides; a waiting-list entry here would undersell.
        took_redis = None
    try:
        took = _take_and_insert(row, n, try_take=took_redis is not False, waitlist=waitlist, naive=naive)
        if took is not None:
            db.session.commit()  # the taken place and the registration commit together, or neither does
    except IntegrityError:
        db.session.rollback()  # a double tap: the place taken with it is undone too
        if took_redis:
            _redis_adjust(session.id, n)
        existing = active_registration(openid, event.id)
        if existing is None:
            raise
        return existing, False
    except Exception:
        db.session.rollback()
        if took_redis:
            _redis_adjust(session.id, n)
        raise
    if took is None:  # full, and the citizen did not want the waiting list: nothing was written
        db.session.rollback()
        if took_redis:
            _redis_adjust(session.id, n)
        raise ServiceError("本场名额已满")
    if took_redis and not took:
        _forget_counter(session.id)  # it had a place PostgreSQL had not: drifted, rebuilt from the database
    elif took and not took_redis:
        # PostgreSQL took a place past a counter at zero (a double tap's other taps held it there until they gave
        # theirs back): charged to it, or it would end a place high.
        _redis_adjust(session.id, -n)
    return _persistent(Registration(**row), event=event, session=session), True


# PostgreSQL: take the place (if asked) and insert the registration in one statement, so one round trip and, with the
# session in autocommit, no BEGIN/COMMIT; the session row's lock lasts only as long as the statement. A statement is
# atomic: when the insert meets the one-live-registration index (a double tap), the place taken with it is undone.
_TAKE_AND_INSERT_PG = """
WITH took AS (
  UPDATE event_session SET taken = taken + %(n)s
  WHERE id = %(session_id)s AND %(try_take)s AND taken + %(n)s <= quota AND cancelled_at IS NULL
  RETURNING id
), off AS (
  SELECT 1 FROM event_session WHERE id = %(session_id)s AND cancelled_at IS NOT NULL
), reg AS (
  INSERT INTO registration (event_id, session_id, openid, status, companions, name_enc, phone_enc, id_number_enc,
                            answers, ticket, walk_in, created_at)
  SELECT %(event_id)s, %(session_id)s, %(openid)s,
         CASE WHEN EXISTS (SELECT 1 FROM took) THEN 'CONFIRMED' ELSE 'WAITING' END, %(companions)s, %(name_enc)s,
         %(phone_enc)s, %(id_number_enc)s, %(answers)s::json, %(ticket)s, false, %(created_at)s
  WHERE (%(waitlist)s OR EXISTS (SELECT 1 FROM took)) AND NOT EXISTS (SELECT 1 FROM off)
  RETURNING id
)
SELECT EXISTS (SELECT 1 FROM took) AS took, (SELECT id FROM reg) AS id, EXISTS (SELECT 1 FROM off) AS called_off
"""


def _take_and_insert(row: dict[str, Any], n: int, *, try_take: bool, waitlist: bool, naive: bool) -> bool | None:
    """Take n places (if try_take) and insert the registration: CONFIRMED with the places, else WAITING. Returns
    whether places were taken, or None (nothing written) when there were none and `waitlist` is off. Sets row's id
    and status."""
    if db.engine.dialect.name == "postgresql" and not naive:
        params = {**row, "n": n, "try_take": try_take, "waitlist": waitlist}
        params["answers"] = json.dumps(row["answers"], ensure_ascii=False) if row["answers"] is not None else None
        took, row["id"], called_off = db.session.connection().exec_driver_sql(_TAKE_AND_INSERT_PG, params).one()
        if called_off:  # in the moment since the session was read
            raise ServiceError("该场次已取消")
        if row["id"] is None:
            return None
    else:
        took = _take_naively(row["session_id"], n) if naive else try_take and _take_place(row["session_id"], n)
        if not took and not waitlist:
            return None
        status = RegistrationStatus.CONFIRMED if took else RegistrationStatus.WAITING
        # A Core insert: the ORM's unit of work was a third of a registration's CPU.
        row["id"] = db.session.execute(_INSERT_REGISTRATION, {**row, "status": status}).scalar_one()
    row["status"] = RegistrationStatus.CONFIRMED if took else RegistrationStatus.WAITING
    return took


_INSERT_REGISTRATION = sa.insert(Registration.__table__).returning(Registration.__table__.c.id)  # built once


def _persistent(reg: Registration, **loaded: Any) -> Registration:
    """Adopt a row inserted with Core as a persistent instance (no SELECT), with its relationships already loaded."""
    make_transient_to_detached(reg)
    db.session.add(reg)
    for name, value in loaded.items():
        set_committed_value(reg, name, value)
    return reg


def _take_place(session_id: int, n: int) -> bool:
    """The authority: one conditional UPDATE; the row lock it takes is held until the registration commits."""
    result = db.session.execute(
        sa.update(EventSession)
        .where(
            EventSession.id == session_id,
            EventSession.taken + n <= EventSession.quota,
            EventSession.cancelled_at.is_(None),
        )
        .values(taken=EventSession.taken + n)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _take_naively(session_id: int, n: int) -> bool:
    """Read, check, write back: two requests read the same count and both pass (a lost update). Tests only."""
    quota, taken = db.session.execute(
        sa.select(EventSession.quota, EventSession.taken).where(EventSession.id == session_id)
    ).one()
    if taken + n > quota:
        return False
    db.session.execute(
        sa.update(EventSession)
        .where(EventSession.id == session_id)
        .values(taken=taken + n)
        .execution_options(synchronize_session=False)
    )
    return True


def walk_in(
    event: Event, session_id: int, applicant: Applicant, *, over_quota: bool = False, staff_id: int | None = None
) -> Registration:
    """A visitor registered on site by staff: takes a place (or raises the quota if asked) and is checked in."""
    session = db.session.get(EventSession, session_id)
    if session is None or session.event_id != event.id:
        raise ServiceError("场次不存在")
    if session.cancelled_at is not None:
        raise ServiceError("该场次已取消，不能登记")
    applicant = Applicant(applicant.companions, applicant.name.strip(), applicant.phone.strip(), "", [])
    if not 0 <= applicant.companions <= 20:
        raise ServiceError("同行人数须在 0 到 20 之间")
    if applicant.phone and not pii.valid_phone(applicant.phone):
        raise ServiceError("手机号应为 11 位数字")
    n = 1 + applicant.companions
    took = _take_place(session.id, n)
    if not took:
        if not over_quota:
            db.session.rollback()
            raise ServiceError("本场名额已满；如确需登记，请勾选「增加名额」")
        db.session.execute(
            sa.update(EventSession)
            .where(EventSession.id == session.id)
            .values(quota=EventSession.taken + n, taken=EventSession.taken + n)
            .execution_options(synchronize_session=False)
        )
    now = utcnow()
    reg = Registration(
        event_id=event.id,
        session_id=session.id,
        openid=None,
        status=RegistrationStatus.CONFIRMED,
        companions=applicant.companions,
        name_enc=pii.encrypt(applicant.name),
        phone_enc=pii.encrypt(applicant.phone),
        ticket=secrets.token_urlsafe(9),
        walk_in=True,
        checked_in_at=now,
        checked_in_by_id=staff_id,
        created_at=now,
    )
    db.session.add(reg)
    db.session.flush()
    audit.record(
        "event.walk_in",
        target=reg,
        after={"session_id": session.id, "companions": applicant.companions, "over_quota": not took},
    )
    db.session.commit()
    _forget_counter(session.id)
    return reg


# -- cancellation, the waiting list and holds ------------------------------------------------------------------------


def cancel(openid: str, registration_id: int) -> Registration:
    reg = own_registration(openid, registration_id)
    if reg is None:
        raise ServiceError("报名记录不存在")
    return _end(reg, RegistrationStatus.CANCELLED, from_statuses=ACTIVE)


def _end(
    reg: Registration,
    status: RegistrationStatus,
    *,
    from_statuses: Sequence[RegistrationStatus],
    now: datetime | None = None,
    only_if_hold_expired: bool = False,
) -> Registration:
    """Move a registration out of the active states; a place it held goes to the waiting list, then the quota."""
    now = now or utcnow()
    session_id = reg.session_id
    # The session row first, as every path that moves places does: one lock order, no deadlock.
    db.session.execute(_lock(sa.select(EventSession.id).where(EventSession.id == session_id)))
    fresh = db.session.scalar(
        _lock(sa.select(Registration).where(Registration.id == reg.id)).execution_options(populate_existing=True)
    )
    if fresh is None or fresh.status not in from_statuses:
        db.session.rollback()
        if status is RegistrationStatus.CANCELLED:
            raise ServiceError("该报名已取消或已失效")
        return reg
    if only_if_hold_expired and (fresh.hold_expires_at is None or fresh.hold_expires_at > now):
        db.session.rollback()
        return fresh
    if status is RegistrationStatus.CANCELLED and fresh.checked_in_at is not None:
        db.session.rollback()
        raise ServiceError("已签到的报名不能取消")
    held = fresh.status in (RegistrationStatus.CONFIRMED, RegistrationStatus.OFFERED)
    fresh.status, fresh.hold_expires_at = status, None
    if status is RegistrationStatus.CANCELLED:
        fresh.cancelled_at = now
    notices = _redistribute(session_id, fresh.party_size if held else 0, now) if held else []
    db.session.commit()
    if held:
        _forget_counter(session_id)
    _enqueue(notices)
    return fresh


def _redistribute(session_id: int, freed: int, now: datetime) -> list[int]:
    """Under the session's row lock: offer `freed` places (still counted in `taken`) plus any slack to the waiting
    list in order, each offer held for the event's hold time; what no one can use goes back to the quota. The offers'
    notices are queued in the same transaction (their ids are returned, to enqueue after the commit)."""
    session = db.session.scalar(
        _lock(sa.select(EventSession).where(EventSession.id == session_id)).execution_options(populate_existing=True)
    )
    if session is None or session.cancelled_at is not None:
        return []  # called off: its places go to nobody
    available = freed + max(session.quota - session.taken, 0)
    offered: list[int] = []
    if available > 0 and session.starts_at > now:
        hold = timedelta(minutes=session.event.hold_minutes)
        waiting = db.session.scalars(
            sa.select(Registration)
            .where(Registration.session_id == session_id, Registration.status == RegistrationStatus.WAITING)
            .order_by(Registration.id)
        )
        for cand in waiting:
            if cand.party_size > available:
                continue  # a bigger party waits; a smaller one behind it may fit
            cand.status = RegistrationStatus.OFFERED
            cand.hold_expires_at = min(now + hold, session.starts_at)
            available -= cand.party_size
            offered.append(cand.id)
            if available == 0:
                break
    session.taken = session.quota - available  # every place not available is held by someone
    return _queue(offered, EventNoticeKind.OFFER, now)


def _redistribute_and_notify(session_id: int, freed: int) -> None:
    notices = _redistribute(session_id, freed, utcnow())
    db.session.commit()
    _forget_counter(session_id)
    _enqueue(notices)


CANCEL_REASON_MAX = 40


def cancel_session(session: EventSession, reason: str, now: datetime | None = None) -> int:
    """Call a session off (weather, an emergency): nobody can register any more, every live registration is
    cancelled, and each citizen gets a template message with the reason. Returns how many will be told."""
    now = now or utcnow()
    reason = " ".join((reason or "").split())
    if not 2 <= len(reason) <= CANCEL_REASON_MAX:
        raise ServiceError(f"请填写取消原因（2–{CANCEL_REASON_MAX} 字），市民会在通知中看到")
    # The session row first, as every path that moves places does; FOR UPDATE also waits out a registration's
    # statement that is taking a place this moment.
    locked = db.session.scalar(
        _lock(sa.select(EventSession).where(EventSession.id == session.id)).execution_options(populate_existing=True)
    )
    if locked is None:
        raise ServiceError("场次不存在")
    if locked.cancelled_at is not None:
        db.session.rollback()
        raise ServiceError("该场次已经取消")
    if locked.ends_at <= now:
        db.session.rollback()
        raise ServiceError("场次已结束，不能取消")
    if locked.starts_at <= now:  # under way: a livestream that cannot go on, a venue closed before anyone came
        arrived = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Registration)
            .where(Registration.session_id == locked.id, Registration.checked_in_at.is_not(None))
        )
        if arrived:
            db.session.rollback()
            raise ServiceError(f"场次已开始，已有 {arrived} 人签到，不能取消")
    before = _audit_view(locked, ("taken",))
    locked.cancelled_at, locked.cancel_reason, locked.taken = now, reason, 0
    ids = _cancel_live(locked.id, now)
    audit.record(
        "event.session_cancel",
        target=locked,
        before=before,
        after={"reason": reason, "registrations": len(ids)},
    )
    db.session.commit()
    _forget_counter(locked.id)  # places_left and the take both read a called-off session as full
    _notify(ids, EventNoticeKind.CALLED_OFF, now, revision=locked.revision)
    return len(ids)


def _cancel_live(session_id: int, now: datetime) -> list[int]:
    """Cancel the session's live registrations in the caller's transaction; the ids of those with an openid."""
    rows = db.session.execute(
        sa.update(Registration)
        .where(Registration.session_id == session_id, Registration.status.in_(ACTIVE))
        .values(status=RegistrationStatus.CANCELLED, cancelled_at=now, hold_expires_at=None)
        .returning(Registration.id, Registration.openid)
        .execution_options(synchronize_session=False)
    ).all()
    return [rid for rid, openid in rows if openid]


def _sweep_called_off(now: datetime) -> None:
    """A waiting-list registration whose statement read the session just before it was called off can commit just
    after the cancellation's sweep: cancel and tell it here (the minute job)."""
    stragglers = db.session.execute(
        sa.select(EventSession.id, EventSession.revision).where(
            EventSession.cancelled_at.is_not(None),
            sa.exists().where(Registration.session_id == EventSession.id, Registration.status.in_(ACTIVE)),
        )
    ).all()
    for session_id, revision in stragglers:
        db.session.execute(_lock(sa.select(EventSession.id).where(EventSession.id == session_id)))
        ids = _cancel_live(session_id, now)
        db.session.execute(
            sa.update(EventSession)
            .where(EventSession.id == session_id)
            .values(taken=0)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        log.warning("session %s: %s registration(s) made as it was called off, cancelled now", session_id, len(ids))
        _notify(ids, EventNoticeKind.CALLED_OFF, now, revision=revision)


def confirm_offer(openid: str, registration_id: int, now: datetime | None = None) -> Registration:
    """Take an offered place: single use, and only before the hold expires (one conditional UPDATE decides)."""
    now = now or utcnow()
    result = db.session.execute(
        sa.update(Registration)
        .where(
            Registration.id == registration_id,
            Registration.openid == openid,
            Registration.status == RegistrationStatus.OFFERED,
            Registration.hold_expires_at > now,
        )
        .values(status=RegistrationStatus.CONFIRMED, hold_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    reg = own_registration(openid, registration_id)
    if reg is not None:
        db.session.refresh(reg)
    if result.rowcount != 1:
        if reg is not None and reg.status is RegistrationStatus.CONFIRMED:
            return reg  # already confirmed: a double tap
        raise ServiceError("候补名额已过期或不存在")
    return reg  # type: ignore[return-value]


def expire_holds(now: datetime | None = None) -> int:
    """Offers not confirmed in time expire and the place moves on; free places reach the waiting list; a registration
    that slipped into a called-off session is cancelled. Safe to run in several workers at once: every move re-checks
    its row under the session lock."""
    now = now or utcnow()
    due = list(
        db.session.scalars(
            sa.select(Registration).where(
                Registration.status == RegistrationStatus.OFFERED, Registration.hold_expires_at <= now
            )
        )
    )
    expired = 0
    for reg in due:
        after = _end(
            reg,
            RegistrationStatus.EXPIRED,
            from_statuses=(RegistrationStatus.OFFERED,),
            now=now,
            only_if_hold_expired=True,
        )
        expired += after.status is RegistrationStatus.EXPIRED
    _sweep_called_off(now)
    # Repair: a place freed without reaching the waiting list (e.g. a crashed request) is offered now.
    slack = db.session.scalars(
        sa.select(EventSession.id).where(
            EventSession.starts_at > now,
            EventSession.cancelled_at.is_(None),
            EventSession.taken < EventSession.quota,
            sa.exists().where(
                Registration.session_id == EventSession.id, Registration.status == RegistrationStatus.WAITING
            ),
        )
    ).all()
    for sid in slack:
        _redistribute_and_notify(sid, 0)
    db.session.commit()
    return expired


# -- check-in --------------------------------------------------------------------------------------------------------

TOKEN_PREFIX = "E1"


def _signing_key() -> Ed25519PrivateKey:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    key = app.extensions.get("checkin_signing_key")
    if key is None:
        raw = app.config.get("CHECKIN_SIGNING_KEY") or ""
        if not raw:
            raise RuntimeError("CHECKIN_SIGNING_KEY is not set")
        key = app.extensions["checkin_signing_key"] = Ed25519PrivateKey.from_private_bytes(
            base64.urlsafe_b64decode(raw)
        )
    return key


def public_key_pem() -> str:
    """What a scanner needs to verify tokens offline."""
    return (
        _signing_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def checkin_token(reg: Registration) -> str:
    """E1.<registration:session:ticket>.<Ed25519 signature>: bound to both, unforgeable, verifiable offline."""
    payload = f"{reg.id}:{reg.session_id}:{reg.ticket}".encode()
    return f"{TOKEN_PREFIX}.{_b64(payload)}.{_b64(_signing_key().sign(b'checkin:' + payload))}"


@dataclass
class TokenClaims:
    registration_id: int
    session_id: int
    ticket: str


def verify_token(token: str, public_key: Ed25519PublicKey | None = None) -> TokenClaims | None:
    """The claims of a genuine token, else None; with a public key it needs nothing but that key."""
    try:
        prefix, body, sig = (token or "").strip().split(".")
        if prefix != TOKEN_PREFIX:
            return None
        payload = _unb64(body)
        (public_key or _signing_key().public_key()).verify(_unb64(sig), b"checkin:" + payload)
        rid, sid, ticket = payload.decode().split(":")
        return TokenClaims(int(rid), int(sid), ticket)
    except (ValueError, InvalidSignature, UnicodeDecodeError):
        return None


def qr_png(data: str) -> bytes:
    import qrcode

    out = io.BytesIO()
    qrcode.make(data, box_size=8, border=2).save(out)
    return out.getvalue()


@dataclass
class CheckinResult:
    status: str  # valid | used | invalid
    message: str
    at: datetime | None = None
    registration: Registration | None = None

    def as_json(self) -> dict[str, Any]:
        reg = self.registration
        return {
            "status": self.status,
            "message": self.message,
            "at": local_dt(self.at, "%m月%d日 %H:%M:%S") if self.at else None,  # with the day: a ticket may be days old
            "name": mask_name(pii.decrypt(reg.name_enc)) if reg else None,
            "party": reg.party_size if reg else None,
            "session": local_dt(reg.session.starts_at, "%m-%d %H:%M") if reg else None,
        }


def check_in(
    event_id: int,
    token: str,
    nonce: str,
    *,
    staff_id: int | None,
    session_id: int | None = None,
    now: datetime | None = None,
) -> CheckinResult:
    """Mark a registration as arrived. The nonce identifies the scan: a network retry of the same scan answers
    "valid" again, a second scan (another nonce) says it was already used, and when. With `session_id` (staff at
    one session's door) a ticket for another session of the event is refused."""
    now = now or utcnow()
    nonce = (nonce or "")[:64]
    claims = verify_token(token)
    if claims is None or not nonce:
        return CheckinResult("invalid", "无效二维码")
    reg = db.session.get(Registration, claims.registration_id)
    if reg is None or reg.ticket != claims.ticket or reg.session_id != claims.session_id:
        return CheckinResult("invalid", "无效二维码")
    if reg.event_id != event_id:
        return CheckinResult("invalid", "不是本活动的二维码", registration=reg)
    if session_id and reg.session_id != session_id:
        when = local_dt(reg.session.starts_at, "%m-%d %H:%M")
        return CheckinResult("invalid", f"不是本场次的二维码（该票为 {when} 场）", registration=reg)
    if reg.status is not RegistrationStatus.CONFIRMED:
        return CheckinResult("invalid", f"报名状态：{reg.status.label}", registration=reg)
    result = db.session.execute(
        sa.update(Registration)
        .where(Registration.id == reg.id, Registration.checked_in_at.is_(None))
        .values(checked_in_at=now, checkin_nonce=nonce, checked_in_by_id=staff_id)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        audit.record("event.checkin", target=reg, after={"session_id": reg.session_id})
    db.session.commit()
    db.session.refresh(reg)
    if result.rowcount == 1 or reg.checkin_nonce == nonce:
        message = "有效，签到成功"
        if local_dt(reg.session.starts_at, "%Y-%m-%d") != local_dt(now, "%Y-%m-%d"):  # valid, but is it today's?
            message += f"（注意：该票为 {local_dt(reg.session.starts_at, '%m-%d %H:%M')} 场，不是今天）"
        return CheckinResult("valid", message, at=reg.checked_in_at, registration=reg)
    return CheckinResult("used", "已签到", at=reg.checked_in_at, registration=reg)


# -- notices: an outbox of template messages, each sent at most once, retried with backoff ---------------------------
#
# A notice is a row before it is a message: offers are queued in the transaction that makes the offer, reminders by
# the worker that finds them due (the unique (registration, kind) lets one caller insert each). Every attempt first
# claims its row with one conditional UPDATE (pending → sending), right before the call to WeChat, so two workers, a
# duplicated task and the minute sweep never send the same row twice. An attempt that WeChat refused for a reason a
# retry can change, or that never reached it, leaves the row pending with a later next_attempt_at; the sweep takes
# it from there, and also the rows of a lost task or a worker that died mid-send.

NOTICE_MAX_ATTEMPTS = 6  # the first and five retries, 1, 2, 4, 8 and 16 minutes apart
NOTICE_STALE = timedelta(minutes=5)  # "sending" this long: the worker died (the call itself times out in seconds)
# Refusals a retry cannot change: invalid openid, template or data, unsubscribed, the user refuses messages.


def _short(text: str | None, n: int = 20) -> str:
    text = (text or "").strip() or "-"
    return text if len(text) <= n else text[: n - 1] + "…"


NOTICE_TEXT = {
    EventNoticeKind.OFFER: "候补名额已为您保留，请尽快确认",
    EventNoticeKind.DAY_BEFORE: "活动明天举行，请准时参加",
    EventNoticeKind.LIVE_START: "直播已开始，点击进入观看",
    EventNoticeKind.CHANGED: "活动时间或地点有变更，请留意",
    EventNoticeKind.CALLED_OFF: "本场次已取消",
}


def _notice_text(kind: EventNoticeKind, reg: Registration, session: EventSession, now: datetime) -> str:
    if kind is EventNoticeKind.OFFER and reg.hold_expires_at is not None:
        # The deadline, or the citizen learns it only on 我的报名 (20 characters: WeChat's limit for the field)
        return f"候补名额请于{local_dt(reg.hold_expires_at, '%m-%d %H:%M')}前确认"
    if kind is EventNoticeKind.CALLED_OFF and session.cancel_reason:
        return f"已取消：{session.cancel_reason}"
    if kind in (EventNoticeKind.DAY_BEFORE, EventNoticeKind.HOUR_BEFORE):
        # As the reminder is sent, not as its kind was named: a session set up at short notice gets its "day
        # before" reminder the same day, and its "hour before" one with less than an hour to go.
        start, today = session.starts_at.astimezone(LOCAL_TZ), now.astimezone(LOCAL_TZ).date()
        if start.date() > today:
            return NOTICE_TEXT[EventNoticeKind.DAY_BEFORE]
        if kind is EventNoticeKind.DAY_BEFORE:
            return f"活动今天 {start:%H:%M} 开始，请准时参加"
        return f"活动将于 {start:%H:%M} 开始，请准时参加"
    return NOTICE_TEXT[kind]


def _notice_url(kind: EventNoticeKind) -> str | None:
    if kind is EventNoticeKind.LIVE_START:
        return None  # the stream itself, read at send time
    return public_url("citizen.event_mine")


def _queue(registration_ids: Sequence[int], kind: EventNoticeKind, now: datetime, *, revision: int = 0) -> list[int]:
    """Insert a pending notice per registration in the caller's transaction; returns the ids of rows it inserted
    (a registration that already has this kind of notice for this revision of its session gets none: the unique key
    decides, under concurrency too)."""
    if not registration_ids:
        return []
    url = _notice_url(kind)
    stmt = (
        dialect_insert(EventNotice)
        .values(
            [
                {
                    "registration_id": rid,
                    "kind": kind,
                    "revision": revision,
                    "state": EventNoticeState.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "url": url,
                    "created_at": now,
                }
                for rid in registration_ids
            ]
        )
        .on_conflict_do_nothing(index_elements=["registration_id", "kind", "revision"])
        .returning(EventNotice.id)
    )
    return list(db.session.scalars(stmt))


def _queue_committed(
    registration_ids: Sequence[int], kind: EventNoticeKind, now: datetime, *, revision: int, batch: int = 500
) -> Iterator[list[int]]:
    """_queue in committed batches (a session may have thousands of registrations); yields each batch's new ids."""
    for start in range(0, len(registration_ids), batch):
        ids = _queue(registration_ids[start : start + batch], kind, now, revision=revision)
        db.session.commit()
        yield ids


def _notify(registration_ids: Sequence[int], kind: EventNoticeKind, now: datetime, *, revision: int) -> list[int]:
    """Queue a notice per registration (committed batches) and ask a worker to send them; the new notices' ids."""
    queued: list[int] = []
    for batch in _queue_committed(registration_ids, kind, now, revision=revision):
        queued += batch
    _enqueue(queued)
    return queued


def _enqueue(notice_ids: Sequence[int]) -> None:
    """Ask a worker to send these now; a task that is lost or fails leaves its row to the minute sweep."""
    if not notice_ids:
        return
    from server.tasks.events import deliver_event_notice  # tasks import services; the call goes the other way lazily

    for notice_id in notice_ids:
        try:
            deliver_event_notice.delay(notice_id)
        except Exception:  # noqa: BLE001  (the broker is down: the row is pending, the sweep sends it)
            log.warning("event notice %s not enqueued; the sweep will send it", notice_id)


def _due(now: datetime) -> sa.ColumnElement[bool]:
    """Rows an attempt may claim: never tried (due at once), a retry whose time has come, or orphaned mid-send."""
    return sa.or_(
        sa.and_(
            EventNotice.state == EventNoticeState.PENDING,
            sa.or_(EventNotice.attempts == 0, EventNotice.next_attempt_at <= now),
        ),
        sa.and_(EventNotice.state == EventNoticeState.SENDING, EventNotice.claimed_at < now - NOTICE_STALE),
    )


def _claim(notice_id: int, now: datetime) -> int | None:
    """Take one row for one attempt; the attempt number, or None when it is not due or someone else has it."""
    attempt = db.session.scalar(
        sa.update(EventNotice)
        .where(EventNotice.id == notice_id, _due(now))
        # Stamped with the clock, not the run's `now`: a long run (thousands of reminders) claims a row minutes after
        # it began, and a stamp that old would hand the row in flight to the sweep as a dead worker's.
        .values(state=EventNoticeState.SENDING, attempts=EventNotice.attempts + 1, claimed_at=utcnow())
        .returning(EventNotice.attempts)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return attempt


def _finish(notice_id: int, attempt: int, state: EventNoticeState, **values: Any) -> None:
    # Only the attempt that holds the claim writes its outcome.
    db.session.execute(
        sa.update(EventNotice)
        .where(
            EventNotice.id == notice_id,
            EventNotice.state == EventNoticeState.SENDING,
            EventNotice.attempts == attempt,
        )
        .values(state=state, **values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _outdated(notice: EventNotice, reg: Registration, now: datetime) -> str | None:
    """Why a notice is no longer worth sending (a retry may come late), else None."""
    kind = notice.kind
    if kind is EventNoticeKind.OFFER:
        if reg.status is not RegistrationStatus.OFFERED or (reg.hold_expires_at or now) <= now:
            return "候补名额已确认、取消或过期，不再通知"
        return None
    if kind is EventNoticeKind.CALLED_OFF:
        return None if reg.status is RegistrationStatus.CANCELLED else "报名状态已变，不再通知"
    if notice.revision != reg.session.revision:
        return "时间或地点又有变更，旧通知不再发送"
    if kind is EventNoticeKind.CHANGED:
        if reg.status not in ACTIVE:
            return "报名已不在有效状态，不再通知"
        return None if reg.session.starts_at > now else "活动已开始，变更通知已过时"
    if reg.status is not RegistrationStatus.CONFIRMED:
        return "报名已不在有效状态，不再提醒"
    until = reg.session.starts_at - now
    if kind is EventNoticeKind.LIVE_START:
        return None if until > -REMINDER_LIVE_GRACE else "直播已开始较久，提醒已过时"
    if until <= (timedelta(hours=1) if kind is EventNoticeKind.DAY_BEFORE else timedelta(0)):
        return "活动即将开始或已开始，提醒已过时"
    return None


def _send(notice_id: int, attempt: int, now: datetime) -> bool:
    """One claimed attempt: send, then record the outcome (sent, a retry later, or failed for good)."""
    notice = db.session.get(EventNotice, notice_id, populate_existing=True)
    if notice is None:
        return False
    reg = db.session.get(Registration, notice.registration_id, populate_existing=True)
    if reg is None or not reg.openid:
        _finish(notice_id, attempt, EventNoticeState.FAILED, error="无接收人")
        return False
    # The time, place and any cancellation as they are now, not as a long-lived session last loaded them.
    db.session.get(EventSession, reg.session_id, populate_existing=True)
    if reason := _outdated(notice, reg, now):
        _finish(notice_id, attempt, EventNoticeState.FAILED, error=reason)
        return False
    session, event = reg.session, reg.event
    place = session.venue if event.kind is EventKind.OFFLINE else "线上直播"
    body: dict[str, Any] = {
        "touser": reg.openid,
        "template_id": current_app.config.get("WECHAT_TEMPLATE_EVENT_NOTICE") or "demo-event-notice-template",
        # The same on every attempt: WeChat sends one message per openid + client_msg_id (for 10 minutes), so the
        # resend of a call that reached it but whose answer was lost is dropped there.
        "client_msg_id": f"event-notice-{notice.id}",
        "data": {
            "thing1": {"value": _short(event.title)},
            "time2": {"value": local_dt(session.starts_at)},
            "thing3": {"value": _short(place)},
            "thing4": {"value": _short(_notice_text(notice.kind, reg, session, now))},
        },
    }
    url = session.stream_url if notice.kind is EventNoticeKind.LIVE_START and session.stream_url else notice.url
    if url:
        body["url"] = url
    from server.wechat.client import send_template

    error, permanent = send_template(body)
    if error is None:
        _finish(notice_id, attempt, EventNoticeState.SENT, error=None, sent_at=utcnow())
        return True
    if permanent or attempt >= NOTICE_MAX_ATTEMPTS:
        _finish(notice_id, attempt, EventNoticeState.FAILED, error=error[:300])
    else:
        backoff = timedelta(minutes=2 ** (attempt - 1))  # 1, 2, 4, 8, 16 minutes
        _finish(notice_id, attempt, EventNoticeState.PENDING, error=error[:300], next_attempt_at=now + backoff)
    log.info("event notice %s not sent (attempt %s): %s", notice_id, attempt, error)
    return False


def deliver_notice(notice_id: int, now: datetime | None = None) -> bool:
    """One attempt at a notice, if it is due and no one else has it; True when WeChat accepted it."""
    now = now or utcnow()
    attempt = _claim(notice_id, now)
    return attempt is not None and _send(notice_id, attempt, now)


def deliver_due_notices(now: datetime | None = None) -> int:
    """The sweep: every notice due (retries, lost tasks, orphans), one claimed attempt each; returns how many went.
    Safe to run in several workers at once, and beside the tasks: each attempt claims its row first."""
    now = now or utcnow()
    ids = list(db.session.scalars(sa.select(EventNotice.id).where(_due(now)).order_by(EventNotice.id)))
    db.session.commit()
    return sum(deliver_notice(notice_id, now) for notice_id in ids)


def send_notice(registration_id: int, kind: str) -> bool:
    """Queue a notice for a registration (once) and try it now; a repeat finds the row and leaves it to its claim."""
    notice_kind = EventNoticeKind(kind)
    revision = 0
    if notice_kind is not EventNoticeKind.OFFER:  # offers are once per registration; the rest per revision
        revision = db.session.scalar(
            sa.select(EventSession.revision).join(Registration).where(Registration.id == registration_id)
        )
    _queue([registration_id], notice_kind, utcnow(), revision=revision or 0)
    db.session.commit()
    notice_id = db.session.scalar(
        sa.select(EventNotice.id).filter_by(registration_id=registration_id, kind=notice_kind, revision=revision or 0)
    )
    return notice_id is not None and deliver_notice(notice_id)


def due_reminders(now: datetime) -> list[tuple[int, EventNoticeKind]]:
    """(session id, kind) pairs due now: offline the day before and an hour before, livestreams at the start."""
    sessions = db.session.scalars(
        sa.select(EventSession)
        .join(Event)
        .where(
            Event.published,
            EventSession.cancelled_at.is_(None),
            EventSession.starts_at > now - REMINDER_LIVE_GRACE,
            EventSession.starts_at <= now + timedelta(hours=24),
        )
    )
    due: list[tuple[int, EventNoticeKind]] = []
    for s in sessions:
        until = s.starts_at - now
        if s.event.kind is EventKind.LIVESTREAM:
            if until <= timedelta(0):
                due.append((s.id, EventNoticeKind.LIVE_START))
        elif timedelta(hours=1) < until <= timedelta(hours=24):
            due.append((s.id, EventNoticeKind.DAY_BEFORE))
        elif timedelta(0) < until <= timedelta(hours=1):
            due.append((s.id, EventNoticeKind.HOUR_BEFORE))
    return due


def send_due_reminders(now: datetime | None = None) -> int:
    """Queue and send the reminders due now; any number of workers may run this at once (each row is inserted by
    one of them, and each attempt claims its row). Returns messages sent."""
    now = now or utcnow()
    sent = 0
    for session_id, kind in due_reminders(now):
        revision = db.session.scalar(sa.select(EventSession.revision).where(EventSession.id == session_id))
        already = sa.select(EventNotice.registration_id).where(
            EventNotice.kind == kind, EventNotice.revision == revision
        )
        rids = list(
            db.session.scalars(
                sa.select(Registration.id).where(
                    Registration.session_id == session_id,
                    Registration.status == RegistrationStatus.CONFIRMED,
                    Registration.openid.is_not(None),
                    Registration.id.not_in(already),
                )
            )
        )
        for notice_ids in _queue_committed(rids, kind, now, revision=revision or 0):
            sent += sum(deliver_notice(notice_id, now) for notice_id in notice_ids)
    return sent


@dataclass
class NoticeTally:
    """One kind of a session's notices: how many went, wait for an attempt, or were not sent, and why not."""

    kind: EventNoticeKind
    sent: int = 0
    waiting: int = 0
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why not sent (WeChat's refusal, outdated) → how many


def notice_tally(session_id: int) -> list[NoticeTally]:
    """The session's notices per kind, for its console page: a reminder WeChat refused (the citizen declines such
    messages, unfollowed, a wrong template id) is counted there, not only in a log line."""
    rows = db.session.execute(
        sa.select(EventNotice.kind, EventNotice.state, EventNotice.error, sa.func.count())
        .join(Registration, Registration.id == EventNotice.registration_id)
        .where(Registration.session_id == session_id)
        .group_by(EventNotice.kind, EventNotice.state, EventNotice.error)
    ).all()
    tally = {kind: NoticeTally(kind) for kind in EventNoticeKind}
    for kind, state, error, n in rows:
        line = tally[kind]
        if state is EventNoticeState.SENT:
            line.sent += n
        elif state is EventNoticeState.FAILED:
            line.failed += n
            reason = error or "未知原因"
            line.reasons[reason] = line.reasons.get(reason, 0) + n
        else:
            line.waiting += n
    for line in tally.values():
        line.reasons = dict(sorted(line.reasons.items()))
    return [line for line in tally.values() if line.sent or line.waiting or line.failed]


def notices_of(reg: Registration) -> list[EventNotice]:
    return list(db.session.scalars(sa.select(EventNotice).filter_by(registration_id=reg.id).order_by(EventNotice.id)))


# -- personal data: lists, export, retention -------------------------------------------------------------------------


@dataclass
class Row:
    registration: Registration
    name: str
    phone: str
    id_number: str


ROWS_PER_PAGE = 100


def session_rows(session_id: int, *, page: int = 1) -> Page:
    """One page of a session's registrations (as Rows) in sign-up order, personal data masked: a livestream may have
    tens of thousands, and each page decrypts only its own."""
    stmt = sa.select(Registration).where(Registration.session_id == session_id).order_by(Registration.id)
    listing = paginate(stmt, page, ROWS_PER_PAGE)
    listing.items = [
        Row(
            reg,
            mask_name(pii.decrypt(reg.name_enc)),
            pii.mask_phone(pii.decrypt(reg.phone_enc)),
            mask_id_number(pii.decrypt(reg.id_number_enc)),
        )
        for reg in listing.items
    ]
    return listing


def export_session(session_id: int) -> tuple[str, bytes]:
    """The session's registrations as an Excel file with check-in status; an audited export of personal data."""
    from openpyxl import Workbook

    session = db.session.get(EventSession, session_id)
    if session is None:
        raise ServiceError("场次不存在")
    event = session.event
    wb = Workbook(write_only=True)  # rows go to disk as they are appended: memory stays flat at any size
    ws = wb.create_sheet("报名名单")
    for column, width in zip("ABCDEFGHI", (6, 10, 14, 22, 9, 14, 20, 9, 20), strict=True):
        ws.column_dimensions[column].width = width  # before the first row, as write-only sheets need
    questions = list(event.questions or [])
    header = ["序号", "姓名", "手机号", "身份证号", "同行人数", "状态", "签到时间", "现场登记", "报名时间"]
    ws.append(header + [sheets.text(q) for q in questions])
    regs = db.session.scalars(
        sa.select(Registration)
        .where(Registration.session_id == session_id)
        .order_by(Registration.id)
        .execution_options(yield_per=1000)
    )
    count = 0
    for count, reg in enumerate(regs, 1):
        answers = reg.answers or []
        ws.append(
            [
                count,
                sheets.text(pii.decrypt(reg.name_enc)),
                pii.decrypt(reg.phone_enc) or "",
                pii.decrypt(reg.id_number_enc) or "",
                reg.companions,
                reg.status.label,
                local_dt(reg.checked_in_at, "%Y-%m-%d %H:%M:%S") if reg.checked_in_at else "未签到",
                "是" if reg.walk_in else "否",
                local_dt(reg.created_at, "%Y-%m-%d %H:%M:%S"),
                *[sheets.text(answers[j] if j < len(answers) else "") for j in range(len(questions))],
            ]
        )
    out = io.BytesIO()
    wb.save(out)
    audit.record(
        "event.export",
        kind=AuditKind.EXPORT,
        target=session,
        note=f"{event.title} {local_dt(session.starts_at)}：{count} 条",
    )
    db.session.commit()
    name = f"event-{event.id}-session-{session.id}-{local_dt(session.starts_at, '%Y%m%d%H%M')}.xlsx"
    return name, out.getvalue()


def anonymise_due(now: datetime | None = None) -> int:
    """Erase personal data of events whose last session ended more than `retention_days` ago; counts stay."""
    now = now or utcnow()
    last_end = sa.select(sa.func.max(EventSession.ends_at)).where(EventSession.event_id == Event.id).scalar_subquery()
    candidates = list(db.session.scalars(sa.select(Event).where(Event.anonymised_at.is_(None), last_end.is_not(None))))
    done = 0
    for event in candidates:
        end = max(s.ends_at for s in event.sessions)
        if end + timedelta(days=event.retention_days) > now:
            continue
        result = db.session.execute(
            sa.update(Registration)
            .where(Registration.event_id == event.id)
            .values(name_enc=None, phone_enc=None, id_number_enc=None, answers=None, openid=None)
            .execution_options(synchronize_session=False)
        )
        event.anonymised_at = now
        audit.record("event.anonymise", target=event, note=f"{result.rowcount} 条报名记录")
        db.session.commit()
        done += 1
    return done


# -- numbers for the dashboard ---------------------------------------------------------------------------------------


def _year_bounds(year: int) -> tuple[datetime, datetime]:
    from server.filters import LOCAL_TZ

    start = datetime(year, 1, 1, tzinfo=LOCAL_TZ).astimezone(UTC)
    end = datetime(year + 1, 1, 1, tzinfo=LOCAL_TZ).astimezone(UTC)
    return start, end


def year_numbers(year: int, now: datetime | None = None) -> dict[str, Any]:
    """Per event held in `year` (Beijing time): registrations, people, check-ins, no-shows, livestream reservations;
    and the year's counts of events and livestreams (the "活动 ≥ 80 次" and "直播活动 ≥ 5 场" targets)."""
    now = now or utcnow()
    start, end = _year_bounds(year)
    in_year = sa.select(EventSession.event_id).where(
        EventSession.starts_at >= start, EventSession.starts_at < end, EventSession.cancelled_at.is_(None)
    )
    events = list(db.session.scalars(sa.select(Event).where(Event.published, Event.id.in_(in_year)).order_by(Event.id)))
    confirmed = Registration.status == RegistrationStatus.CONFIRMED
    ended = EventSession.ends_at <= now
    stats = {
        row.event_id: row
        for row in db.session.execute(
            sa.select(
                Registration.event_id,
                sa.func.count().filter(confirmed).label("registrations"),
                sa.func.coalesce(sa.func.sum(1 + Registration.companions).filter(confirmed), 0).label("people"),
                sa.func.count().filter(Registration.checked_in_at.is_not(None)).label("checkins"),
                sa.func.count().filter(confirmed, Registration.checked_in_at.is_(None), ended).label("no_shows"),
                sa.func.count().filter(Registration.status == RegistrationStatus.WAITING).label("waiting"),
            )
            .join(EventSession, EventSession.id == Registration.session_id)
            .where(Registration.event_id.in_([e.id for e in events] or [0]))
            .group_by(Registration.event_id)
        )
    }
    per_event = []
    for e in events:
        row = stats.get(e.id)
        regs = row.registrations if row else 0
        live = e.kind is EventKind.LIVESTREAM
        per_event.append(
            {
                "id": e.id,
                "title": e.title,
                "kind": e.kind.value,
                "registrations": 0 if live else regs,
                "people": row.people if row else 0,
                "checkins": row.checkins if row else 0,
                "no_shows": 0 if live else (row.no_shows if row else 0),
                "reservations": regs if live else 0,
                "waiting": row.waiting if row else 0,
            }
        )
    livestreams = sum(1 for e in events if e.kind is EventKind.LIVESTREAM)
    return {
        "year": year,
        "events": len(events),
        "livestreams": livestreams,
        "offline_events": len(events) - livestreams,
        "registrations": sum(p["registrations"] for p in per_event),
        "checkins": sum(p["checkins"] for p in per_event),
        "no_shows": sum(p["no_shows"] for p in per_event),
        "reservations": sum(p["reservations"] for p in per_event),
        "per_event": per_event,
    }


def _held_counter(kind: EventKind) -> targets.Counter:
    """Published events of one kind with a session starting in the Beijing days start..end (the plan's targets)."""

    def counter(start: date, end: date) -> dict[int | None, float]:
        lo = datetime(start.year, start.month, start.day, tzinfo=LOCAL_TZ)
        hi = datetime(end.year, end.month, end.day, tzinfo=LOCAL_TZ) + timedelta(days=1)
        held = sa.select(EventSession.event_id).where(
            EventSession.starts_at >= lo, EventSession.starts_at < hi, EventSession.cancelled_at.is_(None)
        )
        n = db.session.scalar(
            sa.select(sa.func.count()).select_from(Event).where(Event.published, Event.kind == kind, Event.id.in_(held))
        )
        return {None: float(n or 0)}  # events are the bureau's, not a unit's

    return counter


targets.register_counter("activities", _held_counter(EventKind.OFFLINE))
targets.register_counter("livestreams", _held_counter(EventKind.LIVESTREAM))
