"""Columns (栏目): cadence and slots, the calendar with its gaps, reminders and unit requests, monthly numbers."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from models import (
    Article,
    ArticlePush,
    ArticleStatus,
    Cadence,
    ColumnRequest,
    NewsColumn,
    PublishMode,
    PushStatus,
    Staff,
    Unit,
)
from server.extensions import db
from server.inputs import to_int
from server.services import ServiceError, audit, targets
from server.services import staff as staff_service

log = logging.getLogger(__name__)

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
ON_TIME = timedelta(minutes=10)  # published within this of the slot counts as on time
REMINDER_DAYS = (3, 1)
# The case-story skeleton: 案情—处理—法条—提示
CASE_TEMPLATE = "".join(f"<h3>【{part}】</h3><p><br></p>" for part in ("案情", "处理", "法条", "提示"))

DEFAULT_COLUMNS = (
    ("每日一案", Cadence.DAILY, None, time(8, 0), "每日一案｜{title}", CASE_TEMPLATE),
    ("强转树", Cadence.WEEKLY, 4, time(18, 0), "强转树｜{title}", ""),
    ("专题人物风采", Cadence.ADHOC, None, time(12, 0), "{title}", ""),
)


def local_day(moment: datetime) -> date:
    return moment.astimezone(LOCAL_TZ).date()


def slot_at(column: NewsColumn, day: date) -> datetime:
    """The UTC moment of a column's slot on a (Beijing) day."""
    return datetime.combine(day, column.publish_time, LOCAL_TZ).astimezone(UTC)


def has_slot(column: NewsColumn, day: date) -> bool:
    if not column.active:
        return False
    if column.cadence is Cadence.DAILY:
        return True
    if column.cadence is Cadence.WEEKLY:
        return day.weekday() == (column.weekday or 0)
    return False


def ensure_default_columns() -> list[NewsColumn]:
    """Create 每日一案, 强转树 and 专题人物风采 if missing (seed and first console visit)."""
    existing = {c.name for c in db.session.scalars(sa.select(NewsColumn))}
    for name, cadence, weekday, at, pattern, body in DEFAULT_COLUMNS:
        if name not in existing:
            db.session.add(
                NewsColumn(
                    name=name,
                    cadence=cadence,
                    weekday=weekday,
                    publish_time=at,
                    title_pattern=pattern,
                    body_template=body,
                    header_html="",
                    footer_html="",
                    feeder_unit_ids=[],
                )
            )
    db.session.commit()
    return list_columns()


def list_columns(*, active_only: bool = False) -> list[NewsColumn]:
    query = sa.select(NewsColumn).order_by(NewsColumn.id)
    if active_only:
        query = query.where(NewsColumn.active.is_(True))
    return list(db.session.scalars(query))


def save_column(column_id: int | None = None, **fields: Any) -> NewsColumn:
    """Create or update a column; validates cadence, weekday, time and the feeding units."""
    name = str(fields.get("name", "")).strip()
    if not 1 <= len(name) <= 32:
        raise ServiceError("栏目名称为 1 到 32 个字")
    try:
        cadence = Cadence(fields.get("cadence") or "daily")
        mode = PublishMode(fields.get("publish_mode") or "publish")
        at = fields.get("publish_time") or time(8, 0)
        at = at if isinstance(at, time) else time.fromisoformat(str(at))
    except ValueError:
        raise ServiceError("请选择有效的周期、发布方式和发布时间（如 08:00）") from None
    raw_weekday = fields.get("weekday")
    weekday = to_int(str(raw_weekday), lo=0, hi=6) if raw_weekday not in (None, "") else None
    if raw_weekday not in (None, "") and weekday is None:
        raise ServiceError("请选择周一到周日中的一天")
    if cadence is Cadence.WEEKLY and weekday is None:
        raise ServiceError("每周栏目需选择星期几发布")
    raw_units = [str(u) for u in fields.get("feeder_unit_ids") or []]
    unit_ids = [u for raw in raw_units if (u := to_int(raw, lo=1)) is not None]
    if len(unit_ids) != len(raw_units):
        raise ServiceError("报送单位不存在")
    if unit_ids and db.session.scalar(sa.select(sa.func.count()).where(Unit.id.in_(unit_ids))) != len(set(unit_ids)):
        raise ServiceError("报送单位不存在")
    column = db.session.get(NewsColumn, column_id) if column_id else NewsColumn()
    if column is None:
        raise ServiceError("栏目不存在")
    before = audit.snapshot(column, ("name", "cadence", "publish_time")) if column_id else None
    column.name, column.cadence, column.weekday, column.publish_time, column.publish_mode = (
        name,
        cadence,
        weekday,
        at.replace(second=0, microsecond=0),
        mode,
    )
    column.title_pattern = str(fields.get("title_pattern") or "")[:64]
    column.header_html = _clean(fields.get("header_html"))
    column.footer_html = _clean(fields.get("footer_html"))
    column.body_template = _clean(fields.get("body_template"))
    column.feeder_unit_ids = unit_ids
    column.active = bool(fields.get("active", True))
    db.session.add(column)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError("已有同名栏目") from None
    audit.record("column.save", target=column, before=before, after=audit.snapshot(column, ("name", "cadence")))
    db.session.commit()
    return column


def _clean(value: Any) -> str:
    from server.services.htmlclean import clean_html

    return clean_html(str(value or ""))


def turn_unit(column: NewsColumn, day: date) -> Unit | None:
    """The feeding unit whose turn it is on `day`: rotation through the column's list, by slot number."""
    if not column.feeder_unit_ids:
        return None
    step = day.toordinal() if column.cadence is Cadence.DAILY else day.toordinal() // 7
    return db.session.get(Unit, column.feeder_unit_ids[step % len(column.feeder_unit_ids)])


@dataclass
class CalendarDay:
    day: date
    pushes: list[ArticlePush] = field(default_factory=list)
    gaps: list[NewsColumn] = field(default_factory=list)


def calendar(start: date, end: date) -> list[CalendarDay]:
    """Each Beijing day from start to end (inclusive): its pushes, and the columns with a slot but nothing planned."""
    columns = list_columns(active_only=True)
    lo = datetime.combine(start, time.min, LOCAL_TZ).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), time.min, LOCAL_TZ).astimezone(UTC)
    pushes = db.session.scalars(
        sa.select(ArticlePush)
        .options(selectinload(ArticlePush.articles))
        .where(ArticlePush.scheduled_at >= lo, ArticlePush.scheduled_at < hi)
        .where(ArticlePush.status != PushStatus.CANCELLED)
        .order_by(ArticlePush.scheduled_at)
    ).all()
    by_day: dict[date, list[ArticlePush]] = defaultdict(list)
    for push in pushes:
        by_day[local_day(push.scheduled_at)].append(push)
    days = []
    day = start
    while day <= end:
        planned = {p.column_id for p in by_day[day] if p.status is not PushStatus.FAILED}
        gaps = [c for c in columns if has_slot(c, day) and c.id not in planned]
        days.append(CalendarDay(day, by_day[day], gaps))
        day += timedelta(days=1)
    return days


def upcoming_gaps(today: date, ahead: tuple[int, ...] = REMINDER_DAYS) -> list[tuple[date, NewsColumn]]:
    """Gaps `ahead` days from today (the editors' banner and the reminder job)."""
    out = []
    for n in sorted(ahead):
        day = today + timedelta(days=n)
        out.extend((day, c) for c in calendar(day, day)[0].gaps)
    return out


def send_gap_reminders(today: date | None = None) -> int:
    """For each gap 3 and 1 days ahead, ask the unit whose turn it is (its A post, or B) once; returns how many."""
    today = today or local_day(datetime.now(UTC))
    sent = 0
    for day, column in upcoming_gaps(today):
        unit = turn_unit(column, day)
        contact = staff_service.publicity_contact(unit) if unit else None
        request = ColumnRequest(
            column_id=column.id, day=day, unit_id=unit.id if unit else None, staff_id=contact.id if contact else None
        )
        try:
            with db.session.begin_nested():  # the unique (column, day) makes a rerun send nothing twice
                db.session.add(request)
        except IntegrityError:
            continue
        sent += 1
        log.info("column %s gap on %s: request to unit %s", column.id, day, unit.id if unit else None)
    db.session.commit()
    return sent


def requests_for(staff: Staff, today: date) -> list[ColumnRequest]:
    """Open requests addressed to a liaison (console banner)."""
    return list(
        db.session.scalars(
            sa.select(ColumnRequest)
            .where(ColumnRequest.staff_id == staff.id, ColumnRequest.day >= today)
            .order_by(ColumnRequest.day)
        )
    )


def _day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """The UTC half-open range of the Beijing days start..end."""
    lo = datetime.combine(start, time.min, LOCAL_TZ).astimezone(UTC)
    return lo, datetime.combine(end + timedelta(days=1), time.min, LOCAL_TZ).astimezone(UTC)


def published_per_unit(start: date, end: date) -> dict[int | None, float]:
    """Articles published on the Beijing days start..end, per submitting unit (None: no unit)."""
    lo, hi = _day_bounds(start, end)
    rows = db.session.execute(
        sa.select(Article.unit_id, sa.func.count())
        .where(Article.status == ArticleStatus.PUBLISHED, Article.published_at >= lo, Article.published_at < hi)
        .group_by(Article.unit_id)
    ).all()
    return {unit_id: float(n) for unit_id, n in rows}


def submitted_per_unit(start: date, end: date) -> dict[int | None, float]:
    """Articles first submitted for review (投稿) on the Beijing days start..end, per unit."""
    lo, hi = _day_bounds(start, end)
    rows = db.session.execute(
        sa.select(Article.unit_id, sa.func.count())
        .where(Article.submitted_at >= lo, Article.submitted_at < hi)
        .group_by(Article.unit_id)
    ).all()
    return {unit_id: float(n) for unit_id, n in rows}


# The scoreboard's 投稿 and 稿件采用; every published article also counts towards the year's 正面宣传报道 target.
targets.register_counter("articles_submitted", submitted_per_unit)
targets.register_counter("articles_published", published_per_unit)
targets.register_counter("positive_reports", published_per_unit)


def column_stats(year: int, month: int, *, now: datetime | None = None) -> dict[str, Any]:
    """Articles published per column and per unit in a month, and each column's on-time rate.

    On time: a slot (daily/weekly) whose push was published within ON_TIME of its scheduled minute; slots not yet
    due are not counted. Ad-hoc columns are rated over their own pushes. For the statistics feature.
    """
    now = now or datetime.now(UTC)
    first = date(year, month, 1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    lo, hi = _day_bounds(first, last)
    published = db.session.execute(
        sa.select(Article.column_id, Article.unit_id, sa.func.count())
        .where(Article.status == ArticleStatus.PUBLISHED, Article.published_at >= lo, Article.published_at < hi)
        .group_by(Article.column_id, Article.unit_id)
    ).all()
    per_column: dict[int | None, int] = defaultdict(int)
    per_unit: dict[int | None, int] = defaultdict(int)
    for column_id, unit_id, count in published:
        per_column[column_id] += count
        per_unit[unit_id] += count
    pushes = db.session.scalars(
        sa.select(ArticlePush).where(ArticlePush.scheduled_at >= lo, ArticlePush.scheduled_at < hi)
    ).all()
    rates: dict[int, dict[str, Any]] = {}

    def punctual(push: ArticlePush) -> bool:
        return (
            push.status is PushStatus.PUBLISHED
            and push.published_at is not None
            and push.published_at - push.scheduled_at <= ON_TIME
        )

    for column in list_columns():
        mine = [p for p in pushes if p.column_id == column.id]
        if column.cadence is Cadence.ADHOC:
            due = [p for p in mine if p.scheduled_at <= now and p.status is not PushStatus.CANCELLED]
            slots, on_time = len(due), sum(1 for p in due if punctual(p))  # per push: two on one day are two
        else:
            days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
            due_days = {d for d in days if has_slot(column, d) and slot_at(column, d) <= now}
            slots = len(due_days)
            on_time = len({local_day(p.scheduled_at) for p in mine if punctual(p)} & due_days)  # one per slot
        rates[column.id] = {
            "name": column.name,
            "slots": slots,
            "on_time": on_time,
            "rate": round(on_time / slots, 4) if slots else None,
        }
    return {
        "per_column": dict(per_column),
        "per_unit": dict(per_unit),
        "submitted_per_unit": submitted_per_unit(first, last),
        "on_time": rates,
    }
