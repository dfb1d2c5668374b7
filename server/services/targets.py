"""The annual publicity plan, the manual records, progress against the plan and the unit scoreboard.

Other features feed counts in without this module importing them: they call `register_counter(name, fn)` at import
time, where `fn(start, end)` returns {unit_id or None: value} for the Beijing days start..end, or
`register_counters(names, fn)` for one query that feeds several names ({name: {unit_id or None: value}}).
Names used here: media_reports, activities, livestreams, products (added to the manual records), articles_submitted,
articles_published, photos_contributed, photos_used (counts) and tip_handling_hours (an average, lower is better);
positive_reports counts towards the 正面报道 target together with media_reports (the account's own articles).
"""

from __future__ import annotations

import calendar
import logging
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from models import AnnualPlan, PlanProject, PublicityRecord, RecordKind, ScoreWeight, StatDaily, Unit
from server.extensions import db, dialect_insert
from server.inputs import DB_INT_MAX, to_int
from server.paging import Page, paginate
from server.services import ServiceError, audit, datacube

log = logging.getLogger(__name__)

Counter = Callable[[date, date], dict[int | None, float]]
Counters = Callable[[date, date], dict[str, dict[int | None, float]]]
_counters: dict[str, list[Counter]] = defaultdict(list)
_joint: dict[str, list[Counters]] = defaultdict(list)  # name → providers that feed it along with other names

RECORD_COUNTERS = {
    "media_reports": RecordKind.MEDIA_REPORT,
    "activities": RecordKind.ACTIVITY,
    "livestreams": RecordKind.LIVESTREAM,
    "products": RecordKind.PRODUCT,
}
TEN_W = 100_000  # "10W+": an article read by at least 100,000 users


def register_counter(name: str, fn: Counter) -> Counter:
    """Let another feature add to a count (e.g. events adds livestreams); registering twice counts once."""
    if fn not in _counters[name]:
        _counters[name].append(fn)
    return fn


def unregister_counter(name: str, fn: Counter) -> None:
    if fn in _counters.get(name, []):
        _counters[name].remove(fn)


def register_counters(names: tuple[str, ...], fn: Counters) -> Counters:
    """One provider for names that one query answers together (an average and how many it is of): asked once by
    counts_by_unit however many of them it wants."""
    for name in names:
        if fn not in _joint[name]:
            _joint[name].append(fn)
    return fn


def unregister_counters(names: tuple[str, ...], fn: Counters) -> None:
    for name in names:
        if fn in _joint.get(name, []):
            _joint[name].remove(fn)


def counts_by_unit(names: list[str], start: date, end: date) -> dict[str, dict[int | None, float]]:
    """Per name: manual records (grouped in SQL) plus every registered provider, per unit."""
    out: dict[str, dict[int | None, float]] = {name: defaultdict(float) for name in names}
    for name in names:
        if kind := RECORD_COUNTERS.get(name):
            rows = db.session.execute(
                sa.select(PublicityRecord.unit_id, sa.func.count())
                .where(PublicityRecord.kind == kind, PublicityRecord.happened_on.between(start, end))
                .group_by(PublicityRecord.unit_id)
            ).all()
            for unit_id, n in rows:
                out[name][unit_id] += n
        for fn in list(_counters.get(name, [])):
            try:
                for unit_id, value in (fn(start, end) or {}).items():
                    out[name][unit_id] += value
            except Exception:  # a broken provider must not take the dashboard down with it
                log.exception("stats counter %s failed", name)
    for joint in dict.fromkeys(fn for name in names for fn in list(_joint.get(name, []))):  # each once, in order
        try:
            for name, values in (joint(start, end) or {}).items():
                if name in out and joint in _joint.get(name, ()):
                    for unit_id, value in values.items():
                        out[name][unit_id] += value
        except Exception:
            log.exception("stats counter %s failed", getattr(joint, "__name__", joint))
    return {name: dict(values) for name, values in out.items()}


def count_by_unit(name: str, start: date, end: date) -> dict[int | None, float]:
    return counts_by_unit([name], start, end)[name]


def count(name: str, start: date, end: date) -> float:
    return sum(count_by_unit(name, start, end).values())


# --- the plan ----------------------------------------------------------------------------------------------------

PLAN_FIELDS = {
    "follower_growth_pct": ("公众号粉丝量增长（%）", float),
    "read_growth_pct": ("阅读量增长（%）", float),
    "articles_100k": ("10W+ 文章（篇）", int),
    "positive_reports": ("正面报道（篇）", int),
    "activities": ("活动（场）", int),
    "livestreams": ("直播（场）", int),
    "products": ("新媒体产品（个）", int),
    "baseline_followers": ("1 月 1 日粉丝量（基线）", int),
    "baseline_reads": ("上年阅读量（基线）", int),
}


def get_plan(year: int) -> AnnualPlan | None:
    return db.session.scalar(sa.select(AnnualPlan).filter_by(year=year))


def _number(label: str, value: Any, kind: type, *, optional: bool) -> Any:
    text = str(value if value is not None else "").strip().replace(",", "")
    if text == "":
        if optional:
            return None
        raise ServiceError(f"请填写{label}")
    try:
        number = float(text)
    except ValueError:
        raise ServiceError(f"{label}须为数字") from None
    if not math.isfinite(number):  # "inf", "nan", "1e309"
        raise ServiceError(f"{label}须为数字")
    if number < 0:
        raise ServiceError(f"{label}不能为负数")
    if number > (DB_INT_MAX if kind is int else 1e6):  # integers fit their columns; percentages stay sensible
        raise ServiceError(f"{label}过大")
    return int(number) if kind is int else number


def save_plan(year: int, values: dict[str, Any]) -> AnnualPlan:
    """Create or update the year's targets; blank baselines are taken from the datacube."""
    if not 2015 <= year <= 2100:
        raise ServiceError("年份不正确")
    parsed = {
        name: _number(label, values.get(name), kind, optional=True)
        for name, (label, kind) in PLAN_FIELDS.items()
        # A blank target keeps its current value; a blank baseline means "take it from the datacube".
        if name in values and (name.startswith("baseline_") or str(values[name] or "").strip())
    }
    plan = get_plan(year)
    before = audit.snapshot(plan, tuple(PLAN_FIELDS)) if plan else None
    if plan is None:
        plan = AnnualPlan(year=year)
        db.session.add(plan)
    for name, value in parsed.items():
        setattr(plan, name, value)
    try:
        db.session.flush()
    except IntegrityError:  # two editors created the same year at once: edit the one that won
        db.session.rollback()
        plan = get_plan(year)
        assert plan is not None
        for name, value in parsed.items():
            setattr(plan, name, value)
    audit.record("stats.plan_save", target=plan, before=before, after=audit.snapshot(plan, tuple(PLAN_FIELDS)))
    db.session.commit()
    return plan


def _months(value: Any) -> list[int]:
    items = value if isinstance(value, list | tuple) else str(value or "").replace("，", ",").split(",")
    months = set()
    for item in items:
        item = str(item).strip().removesuffix("月")
        if not item:
            continue
        if "-" in item:
            lo, _, hi = item.partition("-")
            first, last = to_int(lo, lo=1, hi=12), to_int(hi, lo=1, hi=12)
            if first is not None and last is not None:
                months.update(range(first, last + 1))
                continue
        month = to_int(item, lo=0, hi=99)
        if month is None:
            raise ServiceError("月份请写成 3,4,5 或 3-5")
        months.add(month)
    if not months or not all(1 <= m <= 12 for m in months):
        raise ServiceError("请填写 1–12 之间的月份")
    return sorted(months)


def save_project(
    plan: AnnualPlan, *, name: str, months: Any, unit_id: int | None, note: str = "", project: PlanProject | None = None
) -> PlanProject:
    name = (name or "").strip()
    if not 1 <= len(name) <= 128:
        raise ServiceError("请填写项目名称（不超过 128 字）")
    if unit_id is not None and db.session.get(Unit, unit_id) is None:
        raise ServiceError("责任单位不存在")
    project = project or PlanProject(plan=plan)
    project.name, project.months, project.unit_id, project.note = name, _months(months), unit_id, (note or "")[:256]
    db.session.add(project)
    db.session.flush()
    audit.record("stats.project_save", target=project, after={"name": name, "months": project.months})
    db.session.commit()
    return project


def set_project_done(project: PlanProject, done: bool) -> None:
    project.done = done
    audit.record("stats.project_done" if done else "stats.project_reopen", target=project)
    db.session.commit()


def delete_project(project: PlanProject) -> None:
    audit.record("stats.project_delete", target=project, before={"name": project.name})
    db.session.delete(project)
    db.session.commit()


# --- manual records ----------------------------------------------------------------------------------------------


def add_record(
    *,
    kind: str,
    title: str,
    happened_on: str | date,
    submit_key: str,
    outlet: str = "",
    link: str = "",
    unit_id: int | None = None,
    note: str = "",
    created_by_id: int | None = None,
) -> PublicityRecord:
    """Record once per submit_key: a double submit gets the first record back."""
    try:
        kind_enum = RecordKind(kind)
    except ValueError:
        raise ServiceError("请选择类别") from None
    title = (title or "").strip()
    if not 1 <= len(title) <= 200:
        raise ServiceError("请填写标题（不超过 200 字）")
    try:
        day = happened_on if isinstance(happened_on, date) else date.fromisoformat(str(happened_on).strip())
    except ValueError:
        raise ServiceError("日期格式应为 2026-03-15") from None
    if day > datacube.beijing_today():  # a record is work done; a future date would credit the unit early
        raise ServiceError("日期不能晚于今天：请在工作完成后登记")
    link = (link or "").strip()
    if link and not link.startswith(("http://", "https://")):
        raise ServiceError("链接须以 http:// 或 https:// 开头")
    outlet = (outlet or "").strip()
    if kind_enum is RecordKind.MEDIA_REPORT and not outlet:
        raise ServiceError("请填写报道媒体")
    if unit_id is not None and db.session.get(Unit, unit_id) is None:
        raise ServiceError("单位不存在")
    if not submit_key or len(submit_key) > 64:
        raise ServiceError("表单已过期，请刷新后重试")
    record = PublicityRecord(
        kind=kind_enum,
        title=title,
        outlet=outlet[:100],
        happened_on=day,
        link=link[:500],
        unit_id=unit_id,
        note=(note or "")[:500],
        submit_key=submit_key,
        created_by_id=created_by_id,
    )
    db.session.add(record)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        if (first := db.session.scalar(sa.select(PublicityRecord).filter_by(submit_key=submit_key))) is None:
            raise
        if first.created_by_id != created_by_id:  # someone else's form key: theirs is not ours to show
            raise ServiceError("表单已失效，请刷新页面后重新填写") from None
        return first
    audit.record("stats.record_add", target=record, after={"kind": kind_enum.value, "title": title})
    db.session.commit()
    return record


def delete_record(record: PublicityRecord) -> None:
    audit.record("stats.record_delete", target=record, before={"kind": record.kind.value, "title": record.title})
    db.session.delete(record)
    db.session.commit()


RECORDS_PER_PAGE = 100


def list_records(year: int, kind: str | None = None, unit_ids: list[int] | None = None, *, page: int = 1) -> Page:
    """One page of the year's records, newest first (a year holds 500 reports and more)."""
    stmt = sa.select(PublicityRecord).where(PublicityRecord.happened_on.between(date(year, 1, 1), date(year, 12, 31)))
    if kind:
        stmt = stmt.where(PublicityRecord.kind == RecordKind(kind))
    if unit_ids is not None:
        stmt = stmt.where(PublicityRecord.unit_id.in_(unit_ids))
    stmt = stmt.options(selectinload(PublicityRecord.unit))
    return paginate(
        stmt.order_by(PublicityRecord.happened_on.desc(), PublicityRecord.id.desc()), page, RECORDS_PER_PAGE
    )


# --- progress ------------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    key: str
    label: str
    unit: str  # "%" for growth targets, else a counting word
    target: float
    actual: float | None  # None: no data or no baseline
    expected: float  # where the straight line from 1 January stands on as_of
    projected: float | None  # the actual value extended linearly to 31 December
    baseline: float | None = None
    note: str = ""
    growth_target: float | None = None  # set when the target is "+N % on the baseline" of an absolute figure

    @property
    def percent_of_target(self) -> float | None:
        if self.actual is None or not self.target:
            return None
        return self.actual / self.target * 100

    @property
    def expected_percent(self) -> float:
        return self.expected / self.target * 100 if self.target else 0.0

    @property
    def on_track(self) -> bool | None:
        if self.projected is None:
            return None
        return self.projected >= self.target

    @property
    def status(self) -> str:
        if self.projected is None:
            return "暂无数据"
        if self.projected >= self.target * 1.1:
            return "领先"
        return "正常" if self.projected >= self.target else "落后"

    def fmt(self, value: float | None) -> str:
        if value is None:
            return "—"
        if self.unit == "%":
            return f"{value:+.1f} %"
        return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"

    @property
    def summary(self) -> str:
        """What the dashboard prints: 按当前进度：年底 +17.0 % — 落后."""
        if self.projected is None:
            return self.note or "暂无数据"
        if self.growth_target is not None and self.baseline:
            growth = self.projected / self.baseline * 100 - 100
            return f"按当前进度：年底 {growth:+.1f} %（目标 {self.growth_target:+.0f} %）— {self.status}"
        if self.unit == "%":
            return f"按当前进度：年底 {self.fmt(self.projected)} — {self.status}"
        # A count: whole ones, with its word (年底 1.1 read as a figure with no unit).
        return f"按当前进度：年底约 {round(self.projected):,} {self.unit} — {self.status}"


def year_fraction(year: int, as_of: date) -> tuple[float, date]:
    """Share of the year elapsed through `as_of` (inclusive), clamped to the year, and the clamped day."""
    first, last = date(year, 1, 1), date(year, 12, 31)
    day = min(max(as_of, first - timedelta(days=1)), last)
    days = 366 if calendar.isleap(year) else 365
    return ((day - first).days + 1) / days, day


def baselines(year: int, plan: AnnualPlan | None) -> tuple[int | None, int | None]:
    """Followers on 1 January (the end of 31 December) and last year's reads, unless the plan fixes them."""
    followers = plan.baseline_followers if plan and plan.baseline_followers is not None else None
    if followers is None:
        followers = datacube.followers_on(date(year - 1, 12, 31))
    reads = plan.baseline_reads if plan and plan.baseline_reads is not None else None
    if reads is None:
        reads = datacube.reads_between(date(year - 1, 1, 1), date(year - 1, 12, 31)) or None
    return followers, reads


def progress(year: int, as_of: date | None = None, plan: AnnualPlan | None = None) -> list[Progress]:
    """Each target against the straight line from 1 January to 31 December, with a linear projection. The office's
    own records count through `as_of` (today by default); WeChat's figures stop at the day before today."""
    plan = plan or get_plan(year) or AnnualPlan(year=year)  # unsaved: the defaults show until a plan is entered
    for name, column in AnnualPlan.__table__.columns.items():  # an unsaved plan has no defaults applied yet
        if getattr(plan, name) is None and column.default is not None and not callable(column.default.arg):
            setattr(plan, name, column.default.arg)
    today = datacube.beijing_today()
    as_of = as_of or today
    frac, day = year_fraction(year, as_of)
    # WeChat's figures reach yesterday at best, and less before it publishes (~10:00) or while the sync is down:
    # each is measured, and projected, over the share of the year it covers.
    last = min(as_of, today - timedelta(days=1))
    follower_frac, follower_day = year_fraction(year, min(last, datacube.latest_day() or date.min))
    data_frac, data_day = year_fraction(year, min(last, datacube.latest_day(StatDaily.read_user) or date.min))
    start = date(year, 1, 1)
    base_followers, base_reads = baselines(year, plan)
    items: list[Progress] = []

    def linear(actual: float | None, frac: float = frac) -> float | None:
        return None if actual is None or frac <= 0 else actual / frac

    # Followers: growth in % of the 1 January figure.
    now = datacube.followers_on(follower_day) if follower_frac > 0 else None
    growth = (now - base_followers) / base_followers * 100 if now is not None and base_followers else None
    why = ""
    if growth is None:
        why = "缺少 1 月 1 日粉丝量基线" if not base_followers else "本年尚无粉丝数据（同步微信统计后显示）"
    items.append(
        Progress(
            "followers",
            "公众号粉丝量",
            "%",
            plan.follower_growth_pct,
            growth,
            plan.follower_growth_pct * follower_frac,
            linear(growth, follower_frac),
            base_followers,
            why,
        )
    )
    # Reads: this year's total against last year's raised by the target; the summary speaks in growth %.
    reads = datacube.reads_between(start, data_day) if data_frac > 0 else 0
    target_reads = base_reads * (1 + plan.read_growth_pct / 100) if base_reads else 0.0
    known = bool(base_reads and reads)  # no figure yet this year (WeChat's not synced): no forecast of -100 %
    items.append(
        Progress(
            "reads",
            "阅读量",
            "次",
            target_reads,
            float(reads) if known else None,
            target_reads * data_frac,
            linear(float(reads), data_frac) if known else None,
            base_reads,
            "" if known else "缺少上年阅读量基线" if not base_reads else "本年尚无阅读数据（同步微信统计后显示）",
            growth_target=plan.read_growth_pct,
        )
    )
    ten_w = datacube.count_articles(start, data_day, min_reads=TEN_W)
    counts = [
        ("articles_100k", "10W+ 文章", "篇", plan.articles_100k, ten_w, data_frac),
        (
            "positive_reports",
            "正面报道",
            "篇",
            plan.positive_reports,
            count("media_reports", start, day) + count("positive_reports", start, day),
            frac,
        ),
        ("activities", "活动", "场", plan.activities, count("activities", start, day), frac),
        ("livestreams", "直播", "场", plan.livestreams, count("livestreams", start, day), frac),
        ("products", "新媒体产品", "个", plan.products, count("products", start, day), frac),
    ]
    for key, label, word, target, actual, share in counts:
        items.append(
            Progress(key, label, word, float(target), float(actual), target * share, linear(float(actual), share))
        )
    return items


# --- unit scoreboard ---------------------------------------------------------------------------------------------

# metric → (label, default points per unit of the metric); tip_handling_hours is an average: its weight is negative.
METRICS: dict[str, tuple[str, float]] = {
    "articles_submitted": ("投稿", 1.0),
    "articles_published": ("稿件采用", 3.0),
    "photos_contributed": ("供图", 0.2),
    "photos_used": ("图片采用", 0.5),
    "media_reports": ("外媒报道", 5.0),
    "activities": ("活动", 3.0),
    "tip_handling_hours": ("线索平均办理时长（小时）", -0.1),
}


AVERAGED = "tip_handling_hours"
AVERAGED_WEIGHT = "tips_resolved"  # how many tips each unit's average is of: a district's average over its squads


def get_weights() -> dict[str, float]:
    stored = dict(db.session.execute(sa.select(ScoreWeight.metric, ScoreWeight.weight)).all())
    return {metric: float(stored.get(metric, default)) for metric, (_, default) in METRICS.items()}


def save_weights(values: dict[str, Any]) -> dict[str, float]:
    before = get_weights()
    parsed = {}
    for metric, (label, _) in METRICS.items():
        if metric in values:
            text = str(values[metric]).strip()
            try:
                weight = float(text)
            except ValueError:
                raise ServiceError(f"「{label}」的分值须为数字") from None
            if not -1000 <= weight <= 1000:
                raise ServiceError(f"「{label}」的分值须在 -1000 到 1000 之间")
            parsed[metric] = weight
    stmt = dialect_insert(ScoreWeight).values([{"metric": m, "weight": w} for m, w in parsed.items()])
    if parsed:
        db.session.execute(stmt.on_conflict_do_update(index_elements=["metric"], set_={"weight": stmt.excluded.weight}))
    audit.record("stats.weights_save", target_type="stat_score_weight", before=before, after=parsed)
    db.session.commit()
    return get_weights()


def period_bounds(year: int, month: int | None) -> tuple[date, date]:
    if month is None:
        return date(year, 1, 1), date(year, 12, 31)
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


@dataclass
class ScoreRow:
    unit_id: int
    unit_name: str
    values: dict[str, float | None]  # None: an average with nothing to average (no tip closed)
    score: float
    rank: int = 0  # among the units under the same parent
    depth: int = 0  # 0: a top-level unit (a district, a department); 1: one of its squads …


def scoreboard(year: int, month: int | None = None) -> list[ScoreRow]:
    """Every unit's metrics for the month (or the year) with those of the units under it (officers' photos land on
    their squad, which is the district's work too), weighted; ranked among the units under the same parent (ties
    share a rank) and listed as the tree, the best first at each level."""
    start, end = period_bounds(year, month)
    weights = get_weights()
    metrics = counts_by_unit([*METRICS, AVERAGED_WEIGHT], start, end)  # the average and its weight: one query
    resolved = metrics.pop(AVERAGED_WEIGHT)
    units = db.session.execute(sa.select(Unit.id, Unit.name, Unit.parent_id).order_by(Unit.sort, Unit.id)).all()
    known = {u.id for u in units}
    children: dict[int | None, list[Any]] = defaultdict(list)
    for u in units:
        children[u.parent_id if u.parent_id in known else None].append(u)

    def average(unit_ids: list[int]) -> float | None:
        # Each unit's average weighs by the tips it is of (one each when that count is not there)
        pairs = [(metrics[AVERAGED][u], resolved.get(u, 1.0)) for u in unit_ids if u in metrics[AVERAGED]]
        total = sum(n for _, n in pairs)
        return sum(h * n for h, n in pairs) / total if total else None

    # A unit with no closed tip has no handling time: it is scored at the overall mean, neither rewarded as fastest
    # (0 hours) nor punished.
    mean_hours = average([u for u in metrics[AVERAGED] if u is not None]) or 0.0

    def subtree(unit_id: int) -> list[int]:  # save_unit refuses cycles
        return [unit_id, *(i for child in children[unit_id] for i in subtree(child.id))]

    def row(unit_id: int, name: str, depth: int) -> ScoreRow:
        ids = subtree(unit_id)
        values: dict[str, float | None] = {m: float(sum(metrics[m].get(u, 0) for u in ids)) for m in METRICS}
        hours = average(ids)
        values[AVERAGED] = None if hours is None else round(hours, 1)
        score = sum(weights[m] * (mean_hours if v is None else v) for m, v in values.items())
        return ScoreRow(unit_id, name, values, round(score, 2), depth=depth)

    out: list[ScoreRow] = []

    def level(parent_id: int | None, depth: int) -> None:
        rows = [row(u.id, u.name, depth) for u in children[parent_id]]
        rows.sort(key=lambda r: (-r.score, r.unit_name))
        for i, r in enumerate(rows):
            r.rank = rows[i - 1].rank if i and rows[i - 1].score == r.score else i + 1
            out.append(r)
            level(r.unit_id, depth + 1)

    level(None, 0)
    return out
