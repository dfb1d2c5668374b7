"""WeChat datacube sync and the figures read from it.

Sync rules (WeChat's): data starts 2014-12-01 and ends yesterday (a Beijing date); each endpoint takes at most
`max_span` days per call. Every day an endpoint answered for is recorded once in `datacube_day`; the data tables
are upserted on WeChat's own keys, so a re-run or two workers at once store each day once. A Redis lock per
endpoint keeps two workers from fetching the same chunks. A run commits chunk by chunk: an interrupted backfill
resumes with the days still missing. Days WeChat marks `is_delay` (and the trailing days whose cumulative article
figures still move) are fetched again on the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from wechatpy.exceptions import WeChatClientException

from models import (
    Article,
    DatacubeDay,
    DatacubeSyncState,
    InboundMessage,
    StatArticle,
    StatArticleDaily,
    StatDaily,
    StatUserSourceDaily,
    utcnow,
)
from server.extensions import db, dialect_insert, get_redis
from server.filters import LOCAL_TZ
from server.services.binding import SCENE_PREFIX as BIND_PREFIX
from server.wechat.client import describe, get_client

log = logging.getLogger(__name__)

EPOCH = date(2014, 12, 1)  # WeChat keeps no statistics before this day
LOCK_TTL = 600  # seconds; extended after every chunk, so only a dead worker's lock runs out
READ_SOURCE_ALL = 99999999  # getuserread's "all channels" row


class DatacubeNotReady(Exception):
    """WeChat has not published some wanted day yet (before ~10:00 Beijing): the task retries later."""


def beijing_today() -> date:
    return datetime.now(LOCAL_TZ).date()


# --- storing -------------------------------------------------------------------------------------------------------


def _upsert(model: Any, rows: list[dict[str, Any]], keys: list[str], **set_: Any) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE: the unique key, not a read-then-write, decides under concurrency."""
    if not rows:
        return
    stmt = dialect_insert(model).values(rows)
    columns = [c for c in rows[0] if c not in keys]
    updates = {c: stmt.excluded[c] for c in columns} | {k: v(stmt) for k, v in set_.items()}
    if updates:
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    db.session.execute(stmt)


def _day(value: str) -> date:
    return date.fromisoformat(value[:10])


def _days(begin: date, end: date) -> Iterator[date]:
    for i in range((end - begin).days + 1):
        yield begin + timedelta(days=i)


def _store_user_summary(rows: list[dict[str, Any]], begin: date, end: date) -> set[date]:
    per_source: dict[tuple[date, int], dict[str, Any]] = {}
    totals = {d: [0, 0] for d in _days(begin, end)}
    for r in rows:
        d, source = _day(r["ref_date"]), int(r["user_source"])
        per_source[(d, source)] = {
            "ref_date": d,
            "user_source": source,
            "new_user": int(r.get("new_user", 0)),
            "cancel_user": int(r.get("cancel_user", 0)),
        }
        if d in totals:
            totals[d][0] += int(r.get("new_user", 0))
            totals[d][1] += int(r.get("cancel_user", 0))
    _upsert(StatUserSourceDaily, list(per_source.values()), ["ref_date", "user_source"])
    daily = [{"ref_date": d, "new_user": n, "cancel_user": c} for d, (n, c) in totals.items()]
    _upsert(StatDaily, daily, ["ref_date"])
    return set(totals)  # no row for a day means nobody came or went


def _store_user_cumulate(rows: list[dict[str, Any]], begin: date, end: date) -> set[date]:
    daily = [{"ref_date": _day(r["ref_date"]), "cumulate_user": int(r["cumulate_user"])} for r in rows]
    _upsert(StatDaily, daily, ["ref_date"])
    return {r["ref_date"] for r in daily}  # a day without its row is not published yet


def _store_biz_summary(rows: list[dict[str, Any]], begin: date, end: date) -> set[date]:
    daily = []
    for r in rows:
        d = r.get("detail") or {}
        daily.append(
            {
                "ref_date": _day(r["ref_date"]),
                "read_user": int(d.get("read_user", 0)),
                "share_user": int(d.get("share_user", 0)),
                "like_user": int(d.get("like_user", 0)),
                "zaikan_user": int(d.get("zaikan_user", 0)),
                "comment_count": int(d.get("comment_count", 0)),
                "collection_user": int(d.get("collection_user", 0)),
            }
        )
    _upsert(StatDaily, daily, ["ref_date"])
    return {r["ref_date"] for r in daily}


def _store_user_read(rows: list[dict[str, Any]], begin: date, end: date) -> set[date]:
    """getuserread (older): only the all-channels row; it has no likes or comments."""
    daily = [
        {
            "ref_date": _day(r["ref_date"]),
            "read_user": int(r.get("int_page_read_user", 0)),
            "share_user": int(r.get("share_user", 0)),
            "collection_user": int(r.get("add_to_fav_user", 0)),
        }
        for r in rows
        if int(r.get("user_source", -1)) == READ_SOURCE_ALL
    ]
    _upsert(StatDaily, daily, ["ref_date"])
    return {r["ref_date"] for r in daily}


def _store_article_read(rows: list[dict[str, Any]], begin: date, end: date) -> set[date]:
    daily = {
        (_day(r["ref_date"]), r["msgid"]): {
            "ref_date": _day(r["ref_date"]),
            "msgid": r["msgid"],
            "read_user": int((r.get("detail") or {}).get("read_user", 0)),
        }
        for r in rows
    }
    _upsert(StatArticleDaily, list(daily.values()), ["ref_date", "msgid"])
    return set(_days(begin, end))


def _store_article_summary(rows: list[dict[str, Any]], begin: date, end: date) -> set[date]:
    """getarticlesummary (older): per article and day, page reads (user_source 0 is the all-channels row)."""
    daily: dict[tuple[date, str], dict[str, Any]] = {}
    for r in rows:
        key = (_day(r["ref_date"]), r["msgid"])
        row = daily.setdefault(key, {"ref_date": key[0], "msgid": key[1], "read_user": 0})
        row["read_user"] = max(row["read_user"], int(r.get("int_page_read_user", 0)))
    _upsert(StatArticleDaily, list(daily.values()), ["ref_date", "msgid"])
    return set(_days(begin, end))


def _store_article_share(rows: list[dict[str, Any]], begin: date, end: date) -> set[date]:
    daily = {
        (_day(r["ref_date"]), r["msgid"]): {
            "ref_date": _day(r["ref_date"]),
            "msgid": r["msgid"],
            "share_user": int((r.get("detail") or {}).get("share_user", 0)),
        }
        for r in rows
    }
    _upsert(StatArticleDaily, list(daily.values()), ["ref_date", "msgid"])
    return set(_days(begin, end))


def _upsert_articles(articles: list[dict[str, Any]]) -> None:
    """Cumulative figures: a newer stat_date replaces an older one, never the other way round."""
    if not articles:
        return
    stmt = dialect_insert(StatArticle).values(articles)
    ex = stmt.excluded
    columns = [c for c in articles[0] if c not in ("msgid", "title")]
    stmt = stmt.on_conflict_do_update(
        index_elements=["msgid"],
        set_={c: ex[c] for c in columns} | {"title": sa.func.coalesce(ex.title, StatArticle.title)},
        where=ex.stat_date >= StatArticle.stat_date,
    )
    db.session.execute(stmt)


def _store_article_total_detail(rows: list[dict[str, Any]], begin: date, end: date) -> set[date]:
    articles = {}
    for r in rows:
        details = r.get("detail_list") or []
        if not details:
            continue
        last = max(details, key=lambda x: x["stat_date"])
        articles[r["msgid"]] = {
            "msgid": r["msgid"],
            "title": r.get("title"),
            "publish_date": _day(r["ref_date"]),
            "stat_date": _day(last["stat_date"]),
            "read_user": int(last.get("read_user", 0)),
            "share_user": int(last.get("share_user", 0)),
            "like_user": int(last.get("like_user", 0)),
            "zaikan_user": int(last.get("zaikan_user", 0)),
            "comment_count": int(last.get("comment_count", 0)),
            "collection_user": int(last.get("collection_user", 0)),
        }
    _upsert_articles(list(articles.values()))
    return set(_days(begin, end))


def _store_article_total(rows: list[dict[str, Any]], begin: date, end: date) -> set[date]:
    """getarticletotal (older): cumulative page reads, shares and favourites; it carries the title."""
    articles = {}
    for r in rows:
        details = r.get("details") or []
        if not details:
            continue
        last = max(details, key=lambda x: x["stat_date"])
        articles[r["msgid"]] = {
            "msgid": r["msgid"],
            "title": r.get("title"),
            "publish_date": _day(r["ref_date"]),
            "stat_date": _day(last["stat_date"]),
            "read_user": int(last.get("int_page_read_user", 0)),
            "share_user": int(last.get("share_user", 0)),
            "like_user": 0,
            "zaikan_user": 0,
            "comment_count": 0,
            "collection_user": int(last.get("add_to_fav_user", 0)),
        }
    _upsert_articles(list(articles.values()))
    return set(_days(begin, end))


@dataclass(frozen=True)
class Endpoint:
    name: str
    max_span: int  # WeChat's limit on days per call
    store: Callable[[list[dict[str, Any]], date, date], set[date]]  # returns the days the answer covers
    fallback: str | None = None  # an older endpoint (停止维护) asked when this one answers nothing
    refresh_days: int = 0  # trailing days fetched again: cumulative figures still grow
    after: str | None = None  # fetch only days this endpoint already has (its presence says "published")


# The older endpoints, used only as fallbacks.
FALLBACKS = {
    "getuserread": Endpoint("getuserread", 3, _store_user_read),
    "getarticlesummary": Endpoint("getarticlesummary", 1, _store_article_summary),
    "getarticletotal": Endpoint("getarticletotal", 1, _store_article_total),
}
# In sync order: the cumulate and biz summary answer one row per published day, so the others wait for them.
ENDPOINTS = {
    e.name: e
    for e in (
        Endpoint("getusercumulate", 7, _store_user_cumulate),
        Endpoint("getusersummary", 7, _store_user_summary, after="getusercumulate"),
        Endpoint("getbizsummary", 30, _store_biz_summary, fallback="getuserread"),
        Endpoint("getarticleread", 1, _store_article_read, fallback="getarticlesummary", after="getbizsummary"),
        Endpoint(
            "getarticletotaldetail",
            1,
            _store_article_total_detail,
            fallback="getarticletotal",
            refresh_days=7,
            after="getbizsummary",
        ),
        Endpoint("getarticleshare", 1, _store_article_share, after="getbizsummary"),
    )
}


# --- fetching ------------------------------------------------------------------------------------------------------


def _call(name: str, begin: date, end: date) -> dict[str, Any]:
    client = get_client()
    body = {"begin_date": begin.isoformat(), "end_date": end.isoformat()}
    return client.post(client.api_base + f"datacube/{name}", data=body)


def _chunks(days: Iterable[date], span: int) -> Iterator[tuple[date, date]]:
    """Contiguous runs of the given days, cut to at most `span` days each."""
    begin = prev = None
    for d in sorted(days):
        if begin is not None and prev is not None and (d - prev).days == 1 and (d - begin).days < span:
            prev = d
            continue
        if begin is not None and prev is not None:
            yield begin, prev
        begin = prev = d
    if begin is not None and prev is not None:
        yield begin, prev


def _fetch(endpoint: Endpoint, begin: date, end: date) -> tuple[dict[date, str], bool]:
    """Ask WeChat for [begin, end] and store the answer: ({day covered: endpoint that answered}, is_delay)."""
    answer = _call(endpoint.name, begin, end)
    rows = answer.get("list") or []
    covered = dict.fromkeys(endpoint.store(rows, begin, end), endpoint.name) if rows else {}
    if endpoint.fallback:  # days the newer endpoint has nothing for (before it existed): ask the older one
        old = FALLBACKS[endpoint.fallback]
        for b, e in _chunks(set(_days(begin, end)) - set(covered), old.max_span):
            covered |= dict.fromkeys(old.store(_call(old.name, b, e).get("list") or [], b, e), old.name)
    elif not rows:
        covered = dict.fromkeys(endpoint.store(rows, begin, end), endpoint.name)
    return covered, bool(answer.get("is_delay"))


def _state(name: str, start: date | None) -> DatacubeSyncState:
    state = db.session.get(DatacubeSyncState, name)
    if state is None:
        default = date(beijing_today().year - 1, 1, 1)  # last year too: the plan's baseline comes from it
        _upsert(DatacubeSyncState, [{"endpoint": name, "start_date": max(start or default, EPOCH)}], ["endpoint"])
        state = db.session.get(DatacubeSyncState, name)
        assert state is not None
    elif start is not None:
        state.start_date = max(start, EPOCH)
    return state


def wanted_days(name: str, *, today: date | None = None) -> list[date]:
    """The days `name` still needs: not fetched, marked is_delay, or inside its refresh window."""
    endpoint = ENDPOINTS[name]
    state = db.session.get(DatacubeSyncState, name)
    if state is None:
        return []
    last = (today or beijing_today()) - timedelta(days=1)  # WeChat answers up to yesterday
    if endpoint.after:
        ready = db.session.scalar(
            sa.select(sa.func.max(DatacubeDay.ref_date)).where(
                DatacubeDay.endpoint == endpoint.after, DatacubeDay.is_delay.is_(False)
            )
        )
        last = min(last, ready) if ready else state.start_date - timedelta(days=1)
    if last < state.start_date:
        return []
    done = set(
        db.session.scalars(
            sa.select(DatacubeDay.ref_date).where(
                DatacubeDay.endpoint == name,
                DatacubeDay.is_delay.is_(False),
                DatacubeDay.ref_date.between(state.start_date, last),
            )
        )
    )
    refresh = {last - timedelta(days=i) for i in range(endpoint.refresh_days)}
    return [d for d in _days(state.start_date, last) if d not in done or d in refresh]


RANGE_REFUSED = {61500, 61501}  # a date range WeChat will not take: skipped, not a stop for the days after it


@dataclass
class SyncResult:
    endpoint: str
    fetched_days: int = 0
    calls: int = 0
    skipped: bool = False  # another worker holds the lock


def sync_endpoint(name: str, *, start: date | None = None, today: date | None = None) -> SyncResult:
    """Fetch what `name` still lacks, chunk by chunk (each committed); `start` moves the backfill origin."""
    endpoint = ENDPOINTS[name]
    result = SyncResult(name)
    lock = get_redis().lock(f"stats:datacube:{name}", timeout=LOCK_TTL, blocking=False)
    if not lock.acquire():
        result.skipped = True
        return result
    try:
        state = _state(name, start)
        state.last_run_at = utcnow()
        db.session.commit()
        missing: set[date] = set()
        refused: list[str] = []
        for begin, end in _chunks(wanted_days(name, today=today), endpoint.max_span):
            try:
                covered, delayed = _fetch(endpoint, begin, end)
            except WeChatClientException as exc:
                db.session.rollback()
                state = _state(name, None)
                if exc.errcode in RANGE_REFUSED:  # this range only: the days after it are still fetched
                    log.warning("datacube %s %s–%s refused: %s %s", name, begin, end, exc.errcode, exc.errmsg)
                    refused.append(f"{begin}–{end}（{describe(exc)}）")
                    continue
                state.last_error = describe(exc, f"{begin}–{end}：")[:256]
                db.session.commit()
                raise
            except Exception as exc:
                db.session.rollback()
                state = _state(name, None)
                state.last_error = describe(exc, f"{begin}–{end}：")[:256]  # no connection, or a bug: told apart
                db.session.commit()
                raise
            _upsert(
                DatacubeDay,
                [
                    {"endpoint": name, "ref_date": d, "is_delay": delayed, "source": source}
                    for d, source in sorted(covered.items())
                ],
                ["endpoint", "ref_date"],
                fetched_at=lambda stmt: utcnow(),
            )
            missing |= set(_days(begin, end)) - set(covered)
            state.cursor = end
            db.session.commit()
            lock.extend(LOCK_TTL, replace_ttl=True)
            result.fetched_days += len(covered)
            result.calls += 1
        state.last_success_at = utcnow()
        problems = [f"未发布：{min(missing)}–{max(missing)}"] if missing else []
        problems += [f"被拒绝：{r}" for r in refused]
        state.last_error = "；".join(problems)[:256] or None
        db.session.commit()
        if missing:
            raise DatacubeNotReady(f"{name}: {len(missing)} day(s) not published yet")
        return result
    finally:
        try:
            lock.release()
        except Exception:  # expired and maybe taken over: nothing of ours to release
            pass


TITLE_PAGES = 50  # freepublish/batchget pages of 20 looked through per run, newest first


def _msgid_of(url: str | None) -> str | None:
    """WeChat's statistics key of a published article ('<mid>_<idx>'), read off its URL."""
    query = parse_qs(urlsplit(url or "").query)
    mid, idx = query.get("mid", [""])[0], query.get("idx", [""])[0]
    return f"{mid}_{idx}" if mid.isdigit() and idx.isdigit() else None


def fill_titles() -> int:
    """getarticletotaldetail carries no titles (the older getarticletotal did): name the statistics' articles from
    ours (their URLs carry WeChat's mid and idx), then from WeChat's list of published ones. Returns how many."""
    rows = db.session.execute(
        sa.select(StatArticle.msgid, StatArticle.publish_date).where(
            sa.or_(StatArticle.title.is_(None), StatArticle.title == "")
        )
    ).all()
    if not rows:
        return 0
    untitled = {msgid for msgid, _ in rows}
    # The list runs newest first: past the oldest untitled article's day, nothing more can be found (an article
    # missing from it, a 群发 one say, would otherwise cost every run every page).
    oldest = min(day for _, day in rows) - timedelta(days=1)
    found = {}
    for url, title in db.session.execute(sa.select(Article.url, Article.title).where(Article.url.is_not(None))):
        if (key := _msgid_of(url)) in untitled:
            found[key] = title
    rest, offset, client = untitled - set(found), 0, get_client()
    try:
        for _ in range(TITLE_PAGES):
            if not rest:
                break
            page = client.post(
                client.api_base + "cgi-bin/freepublish/batchget", data={"offset": offset, "count": 20, "no_content": 1}
            )
            items = page.get("item") or []
            for item in items:
                for news in (item.get("content") or {}).get("news_item") or []:
                    if (key := _msgid_of(news.get("url"))) in rest and news.get("title"):
                        found[key] = news["title"]
                        rest.discard(key)
            offset += len(items)
            if not items or offset >= int(page.get("total_count") or 0):
                break
            last = int((items[-1].get("content") or {}).get("create_time") or items[-1].get("update_time") or 0)
            if datetime.fromtimestamp(last, LOCAL_TZ).date() < oldest:
                break
    except (WeChatClientException, requests.RequestException) as exc:  # the titles wait for the next run
        log.warning("article titles from freepublish/batchget: %s", exc)
    for msgid, title in found.items():
        db.session.execute(sa.update(StatArticle).where(StatArticle.msgid == msgid).values(title=title[:256]))
    db.session.commit()
    return len(found)


def backfill(start: date, *, today: date | None = None) -> list[SyncResult]:
    """Every endpoint from `start` (2014-12-01 at the earliest) to yesterday."""
    return [sync_endpoint(name, start=start, today=today) for name in ENDPOINTS]


def sync_states() -> list[dict[str, Any]]:
    states = {s.endpoint: s for s in db.session.scalars(sa.select(DatacubeSyncState))}
    counts = dict(
        db.session.execute(sa.select(DatacubeDay.endpoint, sa.func.count()).group_by(DatacubeDay.endpoint)).all()
    )
    return [{"endpoint": name, "state": states.get(name), "days": counts.get(name, 0)} for name in ENDPOINTS]


# --- reading -------------------------------------------------------------------------------------------------------

GRAINS = {"day": "按日", "week": "按周", "month": "按月"}
USER_SOURCE_LABELS = {
    0: "其他合计",
    1: "公众号搜索",
    17: "名片分享",
    30: "扫描二维码",
    51: "图文页右上角菜单",
    57: "图文页内公众号名称",
    100: "微信广告",
    149: "小程序关注",
    161: "他人转载",
    200: "视频号",
}


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def _bucket(col: Any, grain: str) -> Any:
    if _dialect() == "postgresql":
        return sa.cast(sa.func.date_trunc(grain, col), sa.Date) if grain != "day" else col
    if grain == "week":
        return sa.func.date(col, "-6 days", "weekday 1")  # the Monday on or before
    if grain == "month":
        return sa.func.date(col, "start of month")
    return col


def series(start: date, end: date, grain: str = "day") -> list[dict[str, Any]]:
    """Followers (at the end of each bucket), new, cancelled, net and reads per day, week or month, in SQL."""
    bucket = _bucket(StatDaily.ref_date, grain).label("bucket")
    if _dialect() == "postgresql":
        last = sa.func.array_agg(aggregate_order_by(StatDaily.cumulate_user, StatDaily.ref_date.desc()))
        followers = sa.type_coerce(last.filter(StatDaily.cumulate_user.is_not(None)), ARRAY(sa.Integer))[1]
    else:
        followers = sa.func.max(StatDaily.cumulate_user)
    rows = db.session.execute(
        sa.select(
            bucket,
            followers.label("followers"),
            sa.func.coalesce(sa.func.sum(StatDaily.new_user), 0),
            sa.func.coalesce(sa.func.sum(StatDaily.cancel_user), 0),
            sa.func.coalesce(sa.func.sum(StatDaily.read_user), 0),
            sa.func.coalesce(sa.func.sum(StatDaily.share_user), 0),
        )
        .where(StatDaily.ref_date.between(start, end))
        .group_by(bucket)
        .order_by(bucket)
    ).all()
    out = []
    for b, f, new, cancel, reads, shares in rows:
        b = b if isinstance(b, date) else date.fromisoformat(str(b))
        out.append(
            {
                "bucket": b,
                "followers": f,
                "new": int(new),
                "cancel": int(cancel),
                "net": int(new) - int(cancel),
                "reads": int(reads),
                "shares": int(shares),
            }
        )
    return out


def followers_on(day: date) -> int | None:
    """Followers at the end of `day`, or of the latest earlier day WeChat reported."""
    return db.session.scalar(
        sa.select(StatDaily.cumulate_user)
        .where(StatDaily.ref_date <= day, StatDaily.cumulate_user.is_not(None))
        .order_by(StatDaily.ref_date.desc())
        .limit(1)
    )


def latest_day(column: Any = StatDaily.cumulate_user) -> date | None:
    """The last day WeChat's figure in `column` (followers by default) is in for."""
    return db.session.scalar(sa.select(sa.func.max(StatDaily.ref_date)).where(column.is_not(None)))


def reads_between(start: date, end: date) -> int:
    return int(
        db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(StatDaily.read_user), 0)).where(
                StatDaily.ref_date.between(start, end)
            )
        )
        or 0
    )


def top_articles(start: date, end: date, limit: int = 10, *, min_reads: int = 0) -> list[StatArticle]:
    return list(
        db.session.scalars(
            sa.select(StatArticle)
            .where(StatArticle.publish_date.between(start, end), StatArticle.read_user >= min_reads)
            .order_by(StatArticle.read_user.desc(), StatArticle.msgid)
            .limit(limit)
        )
    )


def count_articles(start: date, end: date, *, min_reads: int = 0) -> int:
    return int(
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(StatArticle)
            .where(StatArticle.publish_date.between(start, end), StatArticle.read_user >= min_reads)
        )
        or 0
    )


def new_by_source(start: date, end: date) -> list[dict[str, Any]]:
    """WeChat's own split of new followers by user_source."""
    rows = db.session.execute(
        sa.select(
            StatUserSourceDaily.user_source,
            sa.func.sum(StatUserSourceDaily.new_user),
            sa.func.sum(StatUserSourceDaily.cancel_user),
        )
        .where(StatUserSourceDaily.ref_date.between(start, end))
        .group_by(StatUserSourceDaily.user_source)
        .order_by(sa.func.sum(StatUserSourceDaily.new_user).desc())
    ).all()
    return [
        {"source": s, "label": USER_SOURCE_LABELS.get(s, f"来源 {s}"), "new": int(n or 0), "cancel": int(c or 0)}
        for s, n, c in rows
    ]


def _utc_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    lo = datetime(start.year, start.month, start.day, tzinfo=LOCAL_TZ)
    hi = datetime(end.year, end.month, end.day, tzinfo=LOCAL_TZ) + timedelta(days=1)
    return lo, hi


BIND_SCENES = "人员微信绑定二维码"  # each staff binding QR has its own one-off scene: one row for all of them


def _scene_expr() -> Any:
    key = sa.func.coalesce(InboundMessage.event_key, "")
    scene = sa.case((key.like("qrscene\\_%", escape="\\"), sa.func.substr(key, 9)), else_=key)
    return sa.case((scene.startswith(BIND_PREFIX, autoescape=True), BIND_SCENES), else_=scene)


def own_events_by_scene(start: date, end: date, limit: int = 20) -> list[dict[str, Any]]:
    """From our message log: subscribes and scans per source scene (the parametric QR that brought them)."""
    lo, hi = _utc_bounds(start, end)
    scene = _scene_expr().label("scene")
    rows = db.session.execute(
        sa.select(
            scene,
            sa.func.count().filter(InboundMessage.event == "subscribe"),
            sa.func.count().filter(InboundMessage.event == "scan"),
        )
        .where(
            InboundMessage.msg_type == "event",
            InboundMessage.event.in_(("subscribe", "scan")),
            InboundMessage.received_at >= lo,
            InboundMessage.received_at < hi,
        )
        .group_by(scene)
        .order_by(sa.func.count().desc())
        .limit(limit)
    ).all()
    return [{"scene": s or "（无场景：搜索、名片等）", "subscribe": int(a), "scan": int(b)} for s, a, b in rows]


def own_events_by_day(start: date, end: date) -> list[dict[str, Any]]:
    """From our message log: subscribe, unsubscribe and scan events per Beijing day."""
    lo, hi = _utc_bounds(start, end)
    if _dialect() == "postgresql":
        day = sa.cast(sa.func.timezone("Asia/Shanghai", InboundMessage.received_at), sa.Date)
    else:
        day = sa.func.date(InboundMessage.received_at, "+8 hours")
    day = day.label("day")
    rows = db.session.execute(
        sa.select(
            day,
            sa.func.count().filter(InboundMessage.event == "subscribe"),
            sa.func.count().filter(InboundMessage.event == "unsubscribe"),
            sa.func.count().filter(InboundMessage.event == "scan"),
        )
        .where(
            InboundMessage.msg_type == "event",
            InboundMessage.event.in_(("subscribe", "unsubscribe", "scan")),
            InboundMessage.received_at >= lo,
            InboundMessage.received_at < hi,
        )
        .group_by(day)
        .order_by(day)
    ).all()
    return [
        {
            "day": d if isinstance(d, date) else date.fromisoformat(str(d)),
            "subscribe": int(s),
            "unsubscribe": int(u),
            "scan": int(c),
        }
        for d, s, u, c in rows
    ]
