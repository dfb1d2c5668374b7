"""Urgent-opinion alerts (舆情): sensitive terms matched with one Aho–Corasick automaton, alerts, duty notices, SLA.

`scan_text` runs on every text message, in the request thread. A miss costs one pass of the automaton over the text
(no database, and at most one Redis GET per second per process to see whether the term list changed). Only a hit
reaching the threshold writes: one idempotent INSERT keyed by (source, ref), then a task notifies the duty roster.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import ahocorasick
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import selectinload

from models import Alert, AlertDuty, AlertNotice, AlertStatus, NoticeRound, Role, SensitiveTerm, SiteSetting, Staff
from models.base import utcnow
from server.extensions import db, dialect_insert, get_redis
from server.services import ServiceError, audit
from server.urls import public_url

log = logging.getLogger(__name__)

VERSION_KEY = "alerts:terms:version"
CACHE_SECONDS = 1.0  # how stale another process's term edit may look: one Redis GET per second, not per message
MAX_SCAN = 4000  # characters scanned; WeChat texts are at most 2048 bytes, tips 1000 characters
SOURCES = ("message", "tip")
THRESHOLD_KEY, SLA_KEY, TEMPLATE_KEY = "alert_threshold", "alert_sla_minutes", "alert_template_id"
DEFAULT_THRESHOLD, DEFAULT_SLA_MINUTES = 5, 30
TERM_FIELDS = ("term", "weight", "enabled")
# The seed of migration 0004, repeated for `seed_default_terms` (demo data, tests that start from empty tables).
DEFAULT_TERMS = (
    ("暴力执法", 5), ("打人", 5), ("殴打", 5), ("打伤", 5), ("流血", 4), ("抢东西", 4), ("砸摊", 4),
    ("投诉城管", 4), ("12345投诉", 3), ("记者", 3), ("曝光", 3), ("媒体", 2), ("上热搜", 4), ("发微博", 2),
    ("发抖音", 2), ("维权", 2), ("上访", 3), ("报警", 2), ("拍视频", 1), ("城管", 1),
)  # fmt: skip

# Registered here rather than edited into audit.py: each feature labels its own actions.
audit.ACTION_LABELS.update(
    {
        "alert.create": "产生舆情预警",
        "alert.acknowledge": "确认舆情",
        "alert.close": "办结舆情",
        "alert.escalate": "舆情超时升级",
        "alert_term.create": "新增敏感词",
        "alert_term.update": "修改敏感词",
        "alert_term.delete": "删除敏感词",
        "alert_setting.update": "修改舆情设置",
        "alert_duty.update": "修改舆情值班",
    }
)


def normalize(text: str) -> str:
    """Full-width to half-width, lower case, no whitespace: "１２３４５ 投诉" and "12345投诉" are the same term."""
    return "".join(unicodedata.normalize("NFKC", text).lower().split())


@dataclass(frozen=True)
class Match:
    terms: tuple[str, ...]  # distinct terms, in the order they end in the text
    score: int  # sum of their weights (a term repeated counts once)
    threshold: int

    @property
    def alerting(self) -> bool:
        return bool(self.terms) and self.score >= self.threshold


@dataclass(frozen=True)
class _Compiled:
    automaton: Any  # ahocorasick.Automaton, or None when no term is enabled
    threshold: int


class _TermCache:
    """Per-process automaton of the enabled terms, rebuilt when the shared version key moves."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._checked = 0.0
        self._version: bytes | None = None
        self._compiled: _Compiled | None = None

    def clear(self) -> None:
        with self._lock:
            self._compiled = None

    def get(self) -> _Compiled:
        compiled = self._compiled
        if compiled is not None and time.monotonic() - self._checked < CACHE_SECONDS:
            return compiled
        with self._lock:
            version = _read_version()
            if self._compiled is None or version != self._version:
                self._compiled = _build()
                self._version = version
            self._checked = time.monotonic()
            return self._compiled


def _build() -> _Compiled:
    rows = db.session.execute(sa.select(SensitiveTerm.term, SensitiveTerm.weight).where(SensitiveTerm.enabled)).all()
    settings = _settings()
    automaton = None
    if rows:
        automaton = ahocorasick.Automaton()
        for term, weight in rows:
            automaton.add_word(term, (term, weight))
        automaton.make_automaton()
    return _Compiled(automaton, settings["threshold"])


_cache = _TermCache()


def _read_version() -> bytes | None:
    try:
        return get_redis().get(VERSION_KEY)
    except Exception:  # Redis down: keep the automaton we have (edits made in this process still clear it)
        return None


def terms_changed() -> None:
    """Call after any change to terms or the threshold: every process rebuilds within CACHE_SECONDS."""
    _cache.clear()
    try:
        get_redis().set(VERSION_KEY, uuid.uuid4().hex)  # not INCR: a flushed counter could repeat an old value
    except Exception:
        log.warning("redis unavailable; other processes pick up the term change when it is back")


def match(text: str) -> Match:
    """The terms found in the text (overlapping ones too: 「12345投诉城管」 holds 12345投诉, 投诉城管 and 城管)."""
    compiled = _cache.get()
    if compiled.automaton is None or not text:
        return Match((), 0, compiled.threshold)
    found: dict[str, int] = {}
    for _end, (term, weight) in compiled.automaton.iter(normalize(text[:MAX_SCAN])):
        found.setdefault(term, weight)
    return Match(tuple(found), sum(found.values()), compiled.threshold)


def scan_text(openid: str, text: str, *, source: str, ref: str | None = None) -> Alert | None:
    """Match text against the sensitive terms; a hit creates an alert for the duty editors. Cheap on a miss.

    Idempotent per (source, ref): a retried delivery or a resubmitted tip returns None the second time. Never raises
    on the hit path (a chat reply must not fail because an alert could not be stored); callers commit their own
    work first, since the alert is committed here.
    """
    result = match(text)
    if not result.alerting:
        return None
    if source not in SOURCES:
        raise ValueError(f"unknown alert source {source!r}")
    ref = ref or "h:" + hashlib.sha256(f"{openid}\n{text}".encode()).hexdigest()[:40]  # same text, same alert
    try:
        return _create(openid, text, source, ref[:64], result)
    except SQLAlchemyError:
        log.exception("alert for %s %s could not be stored", source, ref)
        db.session.rollback()
        return None


def _create(openid: str, text: str, source: str, ref: str, result: Match) -> Alert | None:
    values = {
        "source": source,
        "ref": ref,
        "openid": openid[:64],
        "excerpt": text.strip()[:500],
        "terms": list(result.terms),
        "score": result.score,
        "status": AlertStatus.NEW.name,  # the VARCHAR holds the enum's name
        "created_at": utcnow(),
    }
    stmt = dialect_insert(Alert.__table__).values(values).on_conflict_do_nothing().returning(Alert.__table__.c.id)
    with db.session.begin_nested():  # a caller's pending work is untouched whatever happens here
        alert_id = db.session.scalar(stmt)
    if alert_id is None:
        return None  # this (source, ref) already raised its alert: a retry
    alert = db.session.get(Alert, alert_id)
    assert alert is not None
    audit.record(
        "alert.create",
        target=alert,
        after={"source": source, "ref": ref, "terms": list(result.terms), "score": result.score},
        actor=audit.Actor(None, "系统", None),
    )
    db.session.commit()
    log.info("alert %s raised from %s (score %s)", alert.id, source, result.score)
    _enqueue_notify(alert.id, NoticeRound.DUTY)
    return alert


def _enqueue_notify(alert_id: int, round_: NoticeRound) -> None:
    from server.tasks.alerts import notify_alert  # services may enqueue tasks; imported late (tasks import services)

    try:
        notify_alert.delay(alert_id, round_.value)
    except Exception:  # the broker is down: the sweep sends what is still unsent
        log.exception("could not enqueue notices for alert %s", alert_id)


# --- settings, duty roster ---------------------------------------------------------------------------------------


def _settings() -> dict[str, Any]:
    stored = {
        s.key: s.value
        for s in db.session.scalars(
            sa.select(SiteSetting).where(SiteSetting.key.in_((THRESHOLD_KEY, SLA_KEY, TEMPLATE_KEY)))
        )
    }

    def positive(key: str, default: int) -> int:
        value = stored.get(key)
        return value if isinstance(value, int) and value > 0 else default

    template = stored.get(TEMPLATE_KEY)
    return {
        "threshold": positive(THRESHOLD_KEY, DEFAULT_THRESHOLD),
        "sla_minutes": positive(SLA_KEY, DEFAULT_SLA_MINUTES),
        "template_id": template if isinstance(template, str) else "",
    }


def settings() -> dict[str, Any]:
    """threshold (sum of weights that raises an alert), sla_minutes (time to acknowledge), template_id."""
    return _settings()


def save_settings(*, threshold: int, sla_minutes: int, template_id: str) -> None:
    if not 1 <= threshold <= 1000:
        raise ServiceError("预警阈值须为 1 到 1000 之间的整数")
    if not 1 <= sla_minutes <= 24 * 60:
        raise ServiceError("确认时限须为 1 到 1440 分钟")
    template_id = template_id.strip()
    if len(template_id) > 64 or any(c.isspace() for c in template_id):
        raise ServiceError("模板消息 ID 不超过 64 个字符，且不能含空格")
    values = {THRESHOLD_KEY: threshold, SLA_KEY: sla_minutes, TEMPLATE_KEY: template_id}
    before = _settings()
    changed = False
    for key, value in values.items():
        setting = db.session.get(SiteSetting, key) or SiteSetting(key=key)
        if setting.value != value:
            setting.value = value
            db.session.add(setting)
            changed = True
    if not changed:
        return
    audit.record(
        "alert_setting.update",
        target_type="site_setting",
        target_id="alerts",
        before=before,
        after={"threshold": threshold, "sla_minutes": sla_minutes, "template_id": template_id},
    )
    db.session.commit()
    terms_changed()  # the threshold travels with the automaton


def duty_staff() -> list[Staff]:
    return list(
        db.session.scalars(sa.select(Staff).join(AlertDuty, AlertDuty.staff_id == Staff.id).order_by(Staff.name))
    )


def duty_candidates() -> list[Staff]:
    """Who may be put on duty: active console users who see alerts."""
    return list(
        db.session.scalars(
            sa.select(Staff)
            .options(selectinload(Staff.unit))
            .where(Staff.active, Staff.role.in_((Role.ADMIN, Role.EDITOR, Role.REVIEWER)))
            .order_by(Staff.role, Staff.name)
        )
    )


def set_duty(staff_ids: list[int]) -> None:
    """Replace the roster (the state wanted, so a repeated submit changes nothing)."""
    allowed = {s.id: s for s in duty_candidates()}
    wanted = set(staff_ids)
    if unknown := wanted - allowed.keys():
        raise ServiceError(f"只能安排启用的管理员、编辑或审核值班（无效：{len(unknown)} 人）")
    current = set(db.session.scalars(sa.select(AlertDuty.staff_id)))
    if current == wanted:
        return
    for staff_id in current - wanted:
        db.session.execute(sa.delete(AlertDuty).where(AlertDuty.staff_id == staff_id))
    for staff_id in wanted - current:
        db.session.add(AlertDuty(staff_id=staff_id))
    audit.record("alert_duty.update", target_type="alert_duty", before=sorted(current), after=sorted(wanted))
    db.session.commit()


# --- terms -------------------------------------------------------------------------------------------------------


def list_terms() -> list[SensitiveTerm]:
    return list(
        db.session.scalars(
            sa.select(SensitiveTerm).order_by(
                SensitiveTerm.enabled.desc(), SensitiveTerm.weight.desc(), SensitiveTerm.term
            )
        )
    )


def save_term(*, term: str, weight: int, enabled: bool = True, existing: SensitiveTerm | None = None) -> SensitiveTerm:
    """Create or update a term, audited; every process matches with it within CACHE_SECONDS."""
    value = normalize(term or "")
    if not 1 <= len(value) <= 32:
        raise ServiceError("敏感词不能为空，且不超过 32 个字")
    if not 1 <= weight <= 100:
        raise ServiceError("权重须为 1 到 100 之间的整数")
    creating = existing is None
    item = existing or SensitiveTerm()
    before = None if creating else audit.snapshot(item, TERM_FIELDS)
    item.term, item.weight, item.enabled = value, weight, enabled
    try:
        with db.session.begin_nested():  # a duplicate undoes only this (and a new term leaves the session)
            db.session.add(item)
            db.session.flush()
    except IntegrityError:
        raise ServiceError(f"敏感词「{value}」已存在") from None
    audit.record(
        "alert_term.create" if creating else "alert_term.update",
        target=item,
        before=before,
        after=audit.snapshot(item, TERM_FIELDS),
    )
    db.session.commit()
    terms_changed()
    return item


def delete_term(item: SensitiveTerm) -> None:
    audit.record("alert_term.delete", target=item, before=audit.snapshot(item, TERM_FIELDS))
    db.session.delete(item)
    db.session.commit()
    terms_changed()


def seed_default_terms() -> int:
    """Add the default terms that are missing (demo data and tests); returns how many were added."""
    existing = set(db.session.scalars(sa.select(SensitiveTerm.term)))
    added = [SensitiveTerm(term=t, weight=w) for t, w in DEFAULT_TERMS if t not in existing]
    db.session.add_all(added)
    db.session.commit()
    if added:
        terms_changed()
    return len(added)


# --- alerts: list, acknowledge, close ------------------------------------------------------------------------------


def deadline(alert: Alert, sla_minutes: int | None = None) -> datetime:
    return alert.created_at + timedelta(minutes=sla_minutes or _settings()["sla_minutes"])


def is_overdue(alert: Alert, sla_minutes: int | None = None, now: datetime | None = None) -> bool:
    return alert.status is AlertStatus.NEW and (now or utcnow()) > deadline(alert, sla_minutes)


def list_alerts(status: str | None = None, *, before_id: int | None = None, limit: int = 200) -> list[Alert]:
    """The newest `limit` alerts (older than `before_id`: the next page)."""
    query = sa.select(Alert).order_by(Alert.id.desc()).limit(limit)
    if before_id:
        query = query.where(Alert.id < before_id)
    if status:
        try:
            query = query.where(Alert.status == AlertStatus(status))
        except ValueError:
            raise ServiceError("状态不正确") from None
    return list(db.session.scalars(query))


def feed(after_id: int) -> dict[str, Any]:
    """What the console's poll needs: alerts newer than after_id, and the open/overdue counts."""
    sla = _settings()["sla_minutes"]
    newer = db.session.scalars(sa.select(Alert).where(Alert.id > after_id).order_by(Alert.id).limit(50)).all()
    open_count = (
        db.session.scalar(sa.select(sa.func.count()).select_from(Alert).where(Alert.status == AlertStatus.NEW)) or 0
    )
    overdue_count = (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(Alert)
            .where(Alert.status == AlertStatus.NEW, Alert.created_at < utcnow() - timedelta(minutes=sla))
        )
        or 0
    )
    latest = db.session.scalar(sa.select(sa.func.max(Alert.id))) or 0
    return {
        "latest_id": latest,
        "open": open_count,
        "overdue": overdue_count,
        "alerts": [
            {"id": a.id, "excerpt": a.excerpt[:80], "terms": a.terms, "score": a.score, "source": a.source_label}
            for a in newer
        ],
    }


def acknowledge(alert_id: int, note: str = "") -> Alert:
    """Record who acknowledged it and when; a second acknowledgement (double click, a colleague) changes nothing."""
    alert = db.session.scalar(sa.select(Alert).where(Alert.id == alert_id).with_for_update())
    if alert is None:
        raise ServiceError("舆情不存在")
    if alert.status is not AlertStatus.NEW:
        db.session.rollback()
        return alert
    note = (note or "").strip()
    if len(note) > 500:
        raise ServiceError("备注不超过 500 字")
    actor = audit.current_actor()
    alert.status, alert.acknowledged_at = AlertStatus.ACKNOWLEDGED, utcnow()
    alert.acknowledged_by_id = actor.staff_id if actor else None
    alert.acknowledged_by_name = actor.name if actor else None
    alert.note = note or None
    audit.record(
        "alert.acknowledge",
        target=alert,
        before={"status": AlertStatus.NEW.value},
        after={"status": alert.status.value, "note": alert.note},
    )
    db.session.commit()
    return alert


def close(alert_id: int, note: str = "") -> Alert:
    """Mark it handled (acknowledging it too if nobody had); closing twice changes nothing."""
    alert = db.session.scalar(sa.select(Alert).where(Alert.id == alert_id).with_for_update())
    if alert is None:
        raise ServiceError("舆情不存在")
    if alert.status is AlertStatus.CLOSED:
        db.session.rollback()
        return alert
    note = (note or "").strip()
    if len(note) > 500:
        raise ServiceError("备注不超过 500 字")
    actor = audit.current_actor()
    before = {"status": alert.status.value, "note": alert.note}
    now = utcnow()
    if alert.acknowledged_at is None:
        alert.acknowledged_at = now
        alert.acknowledged_by_id = actor.staff_id if actor else None
        alert.acknowledged_by_name = actor.name if actor else None
    alert.status, alert.closed_at = AlertStatus.CLOSED, now
    if note:
        alert.note = note
    audit.record("alert.close", target=alert, before=before, after={"status": alert.status.value, "note": alert.note})
    db.session.commit()
    return alert


# --- notices and the SLA sweep --------------------------------------------------------------------------------------


# Who reads alerts, and so who may be told of one: an alert quotes a citizen's words.
ALERT_ROLES = (Role.ADMIN, Role.EDITOR, Role.REVIEWER)


def _recipients(alert: Alert, round_: NoticeRound) -> list[Staff]:
    if round_ is NoticeRound.DUTY:
        people = duty_staff()
        if not people:  # nobody on the roster: the admins, rather than nobody
            people = list(db.session.scalars(sa.select(Staff).where(Staff.role == Role.ADMIN)))
    else:  # escalation: the B posts of the duty editors' units (AB岗), and every admin
        people = []
        for person in duty_staff():
            if person.unit is not None and person.unit.post_b is not None:
                people.append(person.unit.post_b)
        people += list(db.session.scalars(sa.select(Staff).where(Staff.role == Role.ADMIN)))
    seen: dict[int, Staff] = {}
    for person in people:
        # Checked at send time: a B post, or someone on the roster since demoted, may not read alerts.
        if person.active and person.openid and person.role in ALERT_ROLES and person.id not in seen:
            seen[person.id] = person
    return list(seen.values())


def _template_data(alert: Alert, round_: NoticeRound, sla_minutes: int) -> dict[str, dict[str, str]]:
    from server.filters import local_dt

    title = "舆情超时未确认" if round_ is NoticeRound.ESCALATION else "新舆情预警"
    return {
        "thing1": {"value": title},
        "thing2": {"value": ("、".join(alert.terms) or "敏感词")[:20]},
        "thing3": {"value": (alert.excerpt.replace("\n", " ") or "（无内容）")[:20]},
        "character_string4": {"value": f"A{alert.id}"},
        "time5": {"value": local_dt(alert.created_at)},
        "thing6": {"value": f"请在{sla_minutes}分钟内到后台确认"[:20]},
    }


MAX_NOTICE_ATTEMPTS = 6  # 1, 2, 4, 8, 16 minutes apart: about half an hour of trying, then the console alone
NOTICE_LEASE = timedelta(minutes=5)  # a run that died mid-send leaves its claim for this long


def _notice_for(alert: Alert, round_: NoticeRound, person: Staff) -> AlertNotice:
    """The recipient's notice row for this round, created once even when two runs get here together."""
    where = {"alert_id": alert.id, "round": round_, "staff_id": person.id}
    notice = db.session.scalar(sa.select(AlertNotice).filter_by(**where))
    if notice is None:
        try:
            with db.session.begin_nested():
                notice = AlertNotice(**where, staff_name=person.name)
                db.session.add(notice)
        except IntegrityError:
            notice = db.session.scalar(sa.select(AlertNotice).filter_by(**where))
    db.session.commit()
    return notice


def _claim_notice(notice_id: int, now: datetime) -> bool:
    """Take the next attempt of an unsent, due notice; False when it is sent, given up, or another run holds it."""
    claimed = db.session.execute(
        sa.update(AlertNotice)
        .where(
            AlertNotice.id == notice_id,
            AlertNotice.sent_at.is_(None),
            AlertNotice.attempts < MAX_NOTICE_ATTEMPTS,
            sa.or_(AlertNotice.next_attempt_at.is_(None), AlertNotice.next_attempt_at <= now),
        )
        .values(attempts=AlertNotice.attempts + 1, next_attempt_at=now + NOTICE_LEASE)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return claimed == 1


def notify(alert_id: int, round_name: str, now: datetime | None = None) -> int:
    """Send this round's template messages not yet sent and due; returns how many went out. A failure waits for its
    backoff and the sweep's next look; a permanent one (the person unfollowed, say) is given up at once."""
    from server.wechat.client import send_template

    now = now or utcnow()
    round_ = NoticeRound(round_name)
    alert = db.session.get(Alert, alert_id)
    if alert is None:
        return 0
    conf = _settings()
    if round_ is NoticeRound.DUTY and alert.notified_at is None:
        alert.notified_at = now  # tried: from here on the notice rows carry the retries
        db.session.commit()
    if not conf["template_id"]:
        log.warning("alert %s: no template id configured (舆情设置); console only", alert_id)
        return 0
    if alert.status is not AlertStatus.NEW and round_ is NoticeRound.ESCALATION:
        return 0  # acknowledged meanwhile: nobody needs chasing
    sent = 0
    for person in _recipients(alert, round_):
        notice = _notice_for(alert, round_, person)
        if not _claim_notice(notice.id, now):
            continue
        body = {
            "touser": person.openid,
            "template_id": conf["template_id"],
            "url": public_url("console.alert_detail", alert_id=alert.id),
            "data": _template_data(alert, round_, conf["sla_minutes"]),
            # The same on every attempt: WeChat sends one message per openid and client_msg_id, so the resend of a
            # call whose answer was lost is dropped there.
            "client_msg_id": f"alert-{alert.id}-{round_.value}-{person.id}",
        }
        error, permanent = send_template(body)
        notice = db.session.get(AlertNotice, notice.id, populate_existing=True)
        if error is None:
            notice.sent_at, notice.error, notice.next_attempt_at = utcnow(), None, None
            sent += 1
        else:
            notice.error = error[:200]
            if permanent:
                notice.attempts = MAX_NOTICE_ATTEMPTS
            notice.next_attempt_at = now + timedelta(minutes=2 ** (notice.attempts - 1))
            log.warning(
                "alert %s notice to staff %s failed (attempt %s): %s", alert.id, person.id, notice.attempts, error
            )
        db.session.commit()
    return sent


def sweep(now: datetime | None = None) -> dict[str, int]:
    """The beat job: escalate each alert unacknowledged past the SLA exactly once; send notices never enqueued."""
    now = now or utcnow()
    sla = _settings()["sla_minutes"]
    claimed = list(
        db.session.scalars(
            sa.update(Alert)
            .where(
                Alert.status == AlertStatus.NEW,
                Alert.escalated_at.is_(None),
                Alert.created_at < now - timedelta(minutes=sla),
            )
            .values(escalated_at=now)
            .returning(Alert.id)
        )
    )  # the conditional UPDATE is the claim: two sweeps never escalate the same alert
    for alert_id in claimed:
        audit.record(
            "alert.escalate",
            target_type="alert",
            target_id=alert_id,
            note=f"超过 {sla} 分钟未确认，已通知 B 岗和管理员",
            actor=audit.Actor(None, "系统", None),
        )
    stale = list(
        db.session.scalars(
            sa.select(Alert.id).where(Alert.notified_at.is_(None), Alert.created_at < now - timedelta(minutes=2))
        )
    )
    retry = db.session.execute(  # notices that failed and whose backoff is over, while nobody has acknowledged
        sa.select(AlertNotice.alert_id, AlertNotice.round)
        .join(Alert, Alert.id == AlertNotice.alert_id)
        .where(
            Alert.status == AlertStatus.NEW,
            AlertNotice.sent_at.is_(None),
            AlertNotice.attempts.between(1, MAX_NOTICE_ATTEMPTS - 1),
            AlertNotice.next_attempt_at <= now,
        )
        .distinct()
    ).all()
    db.session.commit()
    for alert_id in claimed:
        _enqueue_notify(alert_id, NoticeRound.ESCALATION)
    for alert_id in stale:
        _enqueue_notify(alert_id, NoticeRound.DUTY)
    for alert_id, round_ in retry:
        _enqueue_notify(alert_id, round_)
    return {"escalated": len(claimed), "renotified": len(stale), "retried": len(retry)}


def explain(text: str) -> Match:
    """What scan_text would decide for a text (the console's test box uses the same matcher)."""
    return match(text)
