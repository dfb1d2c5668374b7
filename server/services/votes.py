"""Network votes (最美城管人): campaigns, candidates, casting a vote exactly once, the live ranking, the brushing
analysis and voids.

Counting: a vote bumps two counter rows (the citizen's day in the campaign, and the citizen's day for the candidate)
with `INSERT … ON CONFLICT DO UPDATE … WHERE used < limit RETURNING used`. The upsert takes the row lock, so
concurrent votes of one citizen queue on it and the limit is checked on the locked, current value; no RETURNING row
means the limit is reached and the transaction rolls back. The vote row stores the counter values it took, under
unique keys, so even a bug elsewhere could not let two votes share one slot. PostgreSQL decides; the Redis sorted set
only mirrors the rows (exact deltas after each commit and each void; rebuilt from the rows when it is missing).
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from models import AuditKind, Follower, ResultsPolicy, Vote, VoteCampaign, VoteCandidate, utcnow
from models.vote import VoteCandidateQuota, VoteQuota
from server.extensions import db, get_redis
from server.services import ServiceError, audit, images, sheets

log = logging.getLogger(__name__)
LOCAL_TZ = ZoneInfo("Asia/Shanghai")

# Attempts per minute. Generous per IP and subnet: carrier NAT puts many honest phones behind one address; the
# analysis below, not these limits, is what catches a farm.
RATE_LIMITS: dict[str, int] = {"openid": 20, "ip": 120, "subnet": 600}
RATE_WINDOW = 60
NEW_FOLLOWER_MINUTES = 30  # subscribed this shortly before voting: "followed to vote"
MIN_CLUSTER_VOTERS = 10
FLAG_SCORE = 50
PHOTO_MAX_BYTES = 8 * 1024 * 1024
PHOTO_EDGE = 1200

CAMPAIGN_FIELDS = (
    "title",
    "starts_at",
    "ends_at",
    "votes_per_day",
    "per_candidate_per_day",
    "followers_only",
    "results_policy",
)
CANDIDATE_FIELDS = ("name", "unit_name", "photo_path", "photo_url", "sort")


class RateLimited(ServiceError):
    """Too many attempts from one citizen, address or subnet in the current minute."""


class Refused(ServiceError):
    """A vote refused for the rest of the day or for good. `closes`: the page's buttons to close, with the words
    they say then ("all" or "candidate", label), or None."""

    def __init__(self, message: str, closes: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.closes = closes


def local_day(at: datetime) -> date:
    return at.astimezone(LOCAL_TZ).date()


def parse_local_minute(value: str | None) -> datetime | None:
    """A `datetime-local` form value (Shanghai time, to the minute) as UTC; None if empty or malformed."""
    try:
        return datetime.strptime((value or "").strip()[:16], "%Y-%m-%dT%H:%M").replace(tzinfo=LOCAL_TZ).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 at 00:00 in Shanghai is before year 1 in UTC
        return None


# --- campaigns and candidates ---------------------------------------------------------------------------------------


def save_campaign(
    *,
    title: str,
    description: str,
    starts_at: datetime | None,
    ends_at: datetime | None,
    votes_per_day: int | None,
    per_candidate_per_day: int | None,
    followers_only: bool,
    results_policy: str,
    campaign: VoteCampaign | None = None,
) -> VoteCampaign:
    title, description = (title or "").strip(), (description or "").strip()
    if not 2 <= len(title) <= 64:
        raise ServiceError("标题需 2 到 64 个字")
    if len(description) > 5000:
        raise ServiceError("说明最多 5000 字")
    if starts_at is None or ends_at is None:
        raise ServiceError("请填写开始和结束时间（精确到分钟）")
    if ends_at <= starts_at:
        raise ServiceError("结束时间必须晚于开始时间")
    if not votes_per_day or not 1 <= votes_per_day <= 100:
        raise ServiceError("每人每天票数应在 1 到 100 之间")
    if not per_candidate_per_day or not 1 <= per_candidate_per_day <= votes_per_day:
        raise ServiceError("每人每天给同一候选人的票数应在 1 到每人每天票数之间")
    try:
        policy = ResultsPolicy(results_policy)
    except ValueError:
        raise ServiceError("请选择结果显示方式") from None
    before = audit.snapshot(campaign, CAMPAIGN_FIELDS) if campaign else None
    campaign = campaign or VoteCampaign()
    campaign.title, campaign.description = title, description
    campaign.starts_at, campaign.ends_at = starts_at, ends_at
    campaign.votes_per_day, campaign.per_candidate_per_day = votes_per_day, per_candidate_per_day
    campaign.followers_only, campaign.results_policy = followers_only, policy
    db.session.add(campaign)
    db.session.flush()
    audit.record(
        "vote.campaign_update" if before else "vote.campaign_create",
        target=campaign,
        before=before,
        after=audit.snapshot(campaign, CAMPAIGN_FIELDS),
    )
    db.session.commit()
    return campaign


def store_photo(data: bytes) -> str:
    """Verify an uploaded image, re-encode it as an upright JPEG (EXIF and GPS dropped) under MEDIA_ROOT; its path."""
    if not data:
        raise ServiceError("请选择照片")
    if len(data) > PHOTO_MAX_BYTES:
        raise ServiceError("照片不能超过 8 MB")
    name = f"votes/{secrets.token_hex(12)}.jpg"
    images.write_media(name, images.upright_jpeg(data, PHOTO_EDGE))  # ImageRejected says what is wrong
    return name


def save_candidate(
    campaign: VoteCampaign,
    *,
    name: str,
    unit_name: str,
    story: str,
    photo: bytes | None = None,
    photo_url: str | None = None,
    sort: int = 0,
    candidate: VoteCandidate | None = None,
) -> VoteCandidate:
    name, unit_name, story = (name or "").strip(), (unit_name or "").strip(), (story or "").strip()
    photo_url = (photo_url or "").strip() or None
    if not 1 <= len(name) <= 32:
        raise ServiceError("姓名需 1 到 32 个字")
    if len(unit_name) > 64 or len(story) > 5000:
        raise ServiceError("单位最多 64 字，事迹最多 5000 字")
    if photo_url and (not photo_url.startswith(("https://", "http://")) or len(photo_url) > 512):
        raise ServiceError("照片地址须以 https:// 开头")
    path = store_photo(photo) if photo else None
    before = audit.snapshot(candidate, CANDIDATE_FIELDS) if candidate else None
    candidate = candidate or VoteCandidate(campaign=campaign)
    candidate.name, candidate.unit_name, candidate.story, candidate.sort = name, unit_name, story, sort
    if path:
        candidate.photo_path, candidate.photo_url = path, None
    elif photo_url:
        candidate.photo_path, candidate.photo_url = None, photo_url
    db.session.add(candidate)
    db.session.flush()
    audit.record(
        "vote.candidate_update" if before else "vote.candidate_create",
        target=candidate,
        before=before,
        after=audit.snapshot(candidate, CANDIDATE_FIELDS),
    )
    db.session.commit()
    _drop_ranking(campaign.id)  # a new candidate must appear with 0
    return candidate


def delete_candidate(candidate: VoteCandidate) -> None:
    if db.session.scalar(sa.select(sa.func.count()).select_from(Vote).filter_by(candidate_id=candidate.id)):
        raise ServiceError("该候选人已有投票，不能删除")
    audit.record("vote.candidate_delete", target=candidate, before=audit.snapshot(candidate, CANDIDATE_FIELDS))
    campaign_id = candidate.campaign_id
    db.session.delete(candidate)
    db.session.commit()
    _drop_ranking(campaign_id)


# --- casting --------------------------------------------------------------------------------------------------------


@dataclass
class CastResult:
    vote_id: int
    candidate_id: int
    count: int | None  # the candidate's valid votes, None when the results policy hides them
    counts: dict[int, int] | None  # every candidate's, likewise: the voter's page redraws its ranking
    remaining_today: int
    candidate_done: bool = False  # this candidate has had all the votes this citizen may give it today


def subnet_of(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:49]
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


# INCR (+ EXPIRE on the first hit) of the three windows in one round trip.
_RATE_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('INCR', key)
  if out[i] == 1 then redis.call('EXPIRE', key, ARGV[1]) end
end
return out
"""


def _check_rate(openid: str, ip: str, subnet: str) -> None:
    window = int(time.time() // RATE_WINDOW)
    keys = {
        "openid": f"vote:rl:o:{openid}:{window}",
        "ip": f"vote:rl:ip:{ip}:{window}",
        "subnet": f"vote:rl:net:{subnet}:{window}",
    }
    try:
        counts = get_redis().eval(_RATE_SCRIPT, len(keys), *keys.values(), RATE_WINDOW * 2)
    except Exception:  # Redis down: the database rules still hold; only the throttle pauses
        log.warning("vote rate limit skipped: Redis unavailable")
        return
    for (scope, _), count in zip(keys.items(), counts, strict=True):
        if count > RATE_LIMITS[scope]:
            raise RateLimited("投票太频繁，请稍后再试")


@dataclass
class _Outcome:
    """What the counting step saw and did: the campaign's rules (None: no such candidate) and the slots taken."""

    starts_at: datetime | None = None
    ends_at: datetime | None = None
    votes_per_day: int = 0
    per_candidate_per_day: int = 0
    results_policy: ResultsPolicy = ResultsPolicy.LIVE
    may_vote: bool = True  # False: followers only and this openid is not one
    seq: int | None = None
    candidate_seq: int | None = None
    vote_id: int | None = None
    xid: str | None = None


# PostgreSQL: the whole count in one statement (one round trip, then COMMIT or ROLLBACK). The counter upserts are the
# same row-locking `ON CONFLICT DO UPDATE … WHERE used < limit` as the portable path below, chained so that each runs
# only if the step before it returned a slot; the campaign row supplies the rules and the period.
_CAST_PG = """
WITH camp AS (
  SELECT c.starts_at, c.ends_at, c.votes_per_day, c.per_candidate_per_day, c.results_policy,
         (NOT c.followers_only OR EXISTS (
            SELECT 1 FROM follower f WHERE f.openid = %(openid)s AND f.subscribed)) AS may_vote
  FROM vote_campaign c JOIN vote_candidate k ON k.campaign_id = c.id
  WHERE c.id = %(campaign_id)s AND k.id = %(candidate_id)s
), q AS (
  INSERT INTO vote_quota AS t (campaign_id, openid, day, used)
  SELECT %(campaign_id)s, %(openid)s, %(day)s, 1 FROM camp
  WHERE camp.may_vote AND camp.starts_at <= %(now)s AND %(now)s < camp.ends_at
  ON CONFLICT (campaign_id, openid, day) DO UPDATE SET used = t.used + 1
  WHERE t.used < (SELECT votes_per_day FROM camp)
  RETURNING t.used
), cq AS (
  INSERT INTO vote_candidate_quota AS t (candidate_id, openid, day, used)
  SELECT %(candidate_id)s, %(openid)s, %(day)s, 1 FROM q
  ON CONFLICT (candidate_id, openid, day) DO UPDATE SET used = t.used + 1
  WHERE t.used < (SELECT per_candidate_per_day FROM camp)
  RETURNING t.used
), v AS (
  INSERT INTO vote (campaign_id, candidate_id, openid, day, seq, candidate_seq, cast_at, ip, subnet, user_agent)
  SELECT %(campaign_id)s, %(candidate_id)s, %(openid)s, %(day)s, q.used, cq.used, %(now)s, %(ip)s, %(subnet)s,
         %(user_agent)s
  FROM q, cq
  RETURNING id, pg_current_xact_id()::text AS xid
)
SELECT camp.starts_at, camp.ends_at, camp.votes_per_day, camp.per_candidate_per_day, camp.results_policy,
       camp.may_vote, (SELECT used FROM q) AS seq, (SELECT used FROM cq) AS candidate_seq, v.id AS vote_id, v.xid
FROM (SELECT 1) AS one LEFT JOIN camp ON true LEFT JOIN v ON true
"""


def _count_pg(params: dict[str, Any]) -> _Outcome:
    row = db.session.connection().exec_driver_sql(_CAST_PG, params).one()
    if row.starts_at is None:
        return _Outcome()
    return _Outcome(
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        votes_per_day=row.votes_per_day,
        per_candidate_per_day=row.per_candidate_per_day,
        results_policy=ResultsPolicy[row.results_policy],  # stored by name
        may_vote=row.may_vote,
        seq=row.seq,
        candidate_seq=row.candidate_seq,
        vote_id=row.vote_id,
        xid=row.xid if USE_TRANSACTION_IDS else None,
    )


def _count_portable(params: dict[str, Any]) -> _Outcome:
    """The same steps as _CAST_PG, one statement each (SQLite)."""
    campaign = db.session.execute(
        sa.select(VoteCampaign)
        .join(VoteCandidate, VoteCandidate.campaign_id == VoteCampaign.id)
        .where(VoteCampaign.id == params["campaign_id"], VoteCandidate.id == params["candidate_id"])
    ).scalar()
    if campaign is None:
        return _Outcome()
    out = _Outcome(
        campaign.starts_at,
        campaign.ends_at,
        campaign.votes_per_day,
        campaign.per_candidate_per_day,
        campaign.results_policy,
        not campaign.followers_only
        or bool(db.session.scalar(sa.select(Follower.subscribed).where(Follower.openid == params["openid"]))),
    )
    if not out.may_vote or not campaign.is_open(params["now"]):
        return out
    who = {"openid": params["openid"], "day": params["day"]}
    out.seq = _upsert(VoteQuota.__table__, {"campaign_id": campaign.id, **who}, campaign.votes_per_day)
    if out.seq is None:
        return out
    out.candidate_seq = _upsert(
        VoteCandidateQuota.__table__, {"candidate_id": params["candidate_id"], **who}, campaign.per_candidate_per_day
    )
    if out.candidate_seq is None:
        return out
    out.vote_id = db.session.execute(
        sa.insert(Vote)
        .values(
            campaign_id=campaign.id,
            candidate_id=params["candidate_id"],
            seq=out.seq,
            candidate_seq=out.candidate_seq,
            cast_at=params["now"],
            **{k: params[k] for k in ("openid", "day", "ip", "subnet", "user_agent")},
        )
        .returning(Vote.id)
    ).scalar_one()
    return out


def _upsert(table: sa.Table, keys: dict[str, Any], limit: int) -> int | None:
    """Take the next slot of a counter row, or None when it is at `limit`. The upsert holds the row lock."""
    from sqlalchemy.dialects.sqlite import insert

    stmt = insert(table).values(**keys, used=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={"used": table.c.used + 1}, where=table.c.used < limit
    ).returning(table.c.used)
    return db.session.execute(stmt).scalar()


def _refusal(out: _Outcome, now: datetime) -> Refused:
    if out.starts_at is None:
        return Refused("候选人不存在")
    assert out.ends_at is not None
    if now < out.starts_at:
        return Refused(f"投票尚未开始，开始时间：{out.starts_at.astimezone(LOCAL_TZ):%m月%d日 %H:%M}")
    if now >= out.ends_at:
        return Refused("投票已结束，感谢关注", ("all", "投票已结束"))
    if not out.may_vote:
        return Refused("本次投票仅限关注本公众号的用户参与")
    # on the vote's last day there is no tomorrow to come back to
    tomorrow = datetime.combine(local_day(now) + timedelta(days=1), datetime.min.time(), LOCAL_TZ)
    then = "明天再来吧" if tomorrow < out.ends_at else "感谢参与"
    if out.seq is None:
        return Refused(f"您今天的 {out.votes_per_day} 票已经投完，{then}", ("all", "今日票已投完"))
    return Refused(f"您今天已为 TA 投过 {out.per_candidate_per_day} 票，{then}", ("candidate", "今天已投过 TA"))


def cast_vote(
    campaign_id: int,
    candidate_id: int,
    openid: str,
    *,
    ip: str,
    user_agent: str = "",
    snapshot: bool = False,
    now: datetime | None = None,
) -> CastResult:
    """Record one vote, or refuse with a reason the citizen can read. Counted once under any concurrency."""
    if snapshot:
        raise ServiceError("朋友圈快照页面不能投票，请点击屏幕下方微信提供的按钮，在完整页面中投票")
    now = now or utcnow()
    ip = (ip or "0.0.0.0")[:45]
    subnet = subnet_of(ip)
    _check_rate(openid, ip, subnet)
    params = {
        "campaign_id": campaign_id,
        "candidate_id": candidate_id,
        "openid": openid,
        "day": local_day(now),
        "now": now,
        "ip": ip,
        "subnet": subnet,
        "user_agent": (user_agent or "")[:256],
    }
    count = _count_pg if db.engine.dialect.name == "postgresql" else _count_portable
    try:
        out = count(params)
        if out.vote_id is None:
            db.session.rollback()  # gives back a daily slot taken before the per-candidate rule refused
            raise _refusal(out, now)
        db.session.commit()
    except IntegrityError:  # a slot already taken: cannot happen while the counters hold; refuse, never double
        db.session.rollback()
        log.error("vote slot collision for campaign %s", campaign_id)
        raise ServiceError("投票未成功，请重试") from None
    assert out.seq is not None and out.ends_at is not None
    ranking = _after_vote(campaign_id, candidate_id, out.xid)
    shown = out.results_policy.shows(out.ends_at, now)
    return CastResult(
        vote_id=out.vote_id,
        candidate_id=candidate_id,
        count=ranking.get(candidate_id, 0) if shown else None,
        counts=ranking if shown else None,
        remaining_today=out.votes_per_day - out.seq,
        candidate_done=out.candidate_seq is not None and out.candidate_seq >= out.per_candidate_per_day,
    )


# --- the ranking (Redis mirror of the rows) --------------------------------------------------------------------------

# The set is rebuilt from one SQL statement, which also returns that statement's snapshot (pg_current_snapshot());
# the snapshot is stored with the set. Each vote or void then applies its delta only if its own transaction is NOT
# visible in that snapshot (the rebuild already counted it). Concurrent votes and rebuilds therefore never count a
# vote twice or drop it; a set is created only if missing, so a slower rebuild cannot overwrite a newer one.
_APPLY_DELTA = """
local snap = redis.call('GET', KEYS[2])
if not snap then return false end
local xid = tonumber(ARGV[3])
if xid then
  local xmin, xmax, xip = string.match(snap, '^(%d+):(%d+):(.*)$')
  local visible = xid < tonumber(xmin)
  if not visible and xid < tonumber(xmax) then
    visible = true
    for x in string.gmatch(xip, '%d+') do
      if tonumber(x) == xid then visible = false break end
    end
  end
  if visible then return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES') end
end
redis.call('ZINCRBY', KEYS[1], ARGV[2], ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')  -- the voter's page redraws the ranking from it
"""

_CREATE_IF_MISSING = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('DEL', KEYS[1])
for i = 2, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i]) end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""


def _keys(campaign_id: int) -> tuple[str, str]:
    return f"vote:rank:{campaign_id}", f"vote:rank:{campaign_id}:snapshot"


# False where every "commit" is a savepoint of one outer transaction (the tests' db_session): one transaction id
# cannot order its own votes against a rebuild inside it, so the id-less delta path is used there.
USE_TRANSACTION_IDS = True


def _xid_column() -> Any:
    """The writing transaction's id, returned with its rows (PostgreSQL); None elsewhere."""
    if USE_TRANSACTION_IDS and db.engine.dialect.name == "postgresql":
        return sa.literal_column("pg_current_xact_id()::text")
    return sa.null()


def _ranking(flat: list[Any]) -> dict[int, int]:
    """ZRANGE … WITHSCORES as the script returns it (member, score, member, score …) as {candidate: votes}."""
    return {int(flat[i]): int(float(flat[i + 1])) for i in range(0, len(flat), 2)}


def _apply(campaign_id: int, candidate_id: int, delta: int, xid: str | None) -> dict[int, int] | None:
    """Apply a vote's (or a void's) delta unless a rebuild already counted it; the ranking after, None if no set."""
    rank, snap = _keys(campaign_id)
    result = get_redis().eval(_APPLY_DELTA, 2, rank, snap, str(candidate_id), str(delta), xid or "")
    return None if result is None else _ranking(result)


def _after_vote(campaign_id: int, candidate_id: int, xid: str | None) -> dict[int, int]:
    """Count a committed vote in the ranking (one round trip); every candidate's votes after it."""
    try:
        ranking = _apply(campaign_id, candidate_id, 1, xid)
        if ranking is None:  # no set: build it from the rows, which include this committed vote
            if _rebuild(campaign_id, replace=False)[1] or xid is None:
                return counts(campaign_id)
            # someone else's rebuild won the race: its snapshot decides whether it counted this vote
            ranking = _apply(campaign_id, candidate_id, 1, xid)
        return ranking if ranking is not None else counts(campaign_id)
    except Exception:  # Redis down: the vote is committed; the counts come from the rows
        log.warning("ranking update skipped for campaign %s: Redis unavailable", campaign_id)
        return db_counts(campaign_id)


def _drop_ranking(campaign_id: int) -> None:
    try:
        get_redis().delete(*_keys(campaign_id))
    except Exception:
        pass


def db_counts(campaign_id: int) -> dict[int, int]:
    """Valid (not voided) votes per candidate, every candidate present: the truth the ranking mirrors."""
    return _counted(campaign_id)[0]


def _counted(campaign_id: int) -> tuple[dict[int, int], str]:
    """Counts and the snapshot they were read in, from one statement."""
    snapshot = (
        sa.literal_column("pg_current_snapshot()::text")
        if db.engine.dialect.name == "postgresql"
        else sa.literal("0:0:")
    )
    rows = db.session.execute(
        sa.select(VoteCandidate.id, sa.func.count(Vote.candidate_id), snapshot)  # in the index: no heap reads
        .outerjoin(
            Vote,
            # campaign_id too, so only this campaign's part of the index is read (not every campaign's votes)
            sa.and_(Vote.campaign_id == campaign_id, Vote.candidate_id == VoteCandidate.id, Vote.voided_at.is_(None)),
        )
        .where(VoteCandidate.campaign_id == campaign_id)
        .group_by(VoteCandidate.id)
    ).all()
    return {cid: n for cid, n, _ in rows}, (rows[0][2] if rows else "0:0:")


def rebuild_ranking(campaign_id: int, *, replace: bool = True) -> dict[int, int]:
    """Recount from the rows. replace=True drops the set first (console, task); deltas landing meanwhile find no
    set and rebuild it themselves, and the snapshot check keeps every vote counted once."""
    return _rebuild(campaign_id, replace=replace)[0]


def _rebuild(campaign_id: int, *, replace: bool) -> tuple[dict[int, int], bool]:
    """The counts, and whether this call created the set (False: a concurrent rebuild had created it first)."""
    if replace:
        _drop_ranking(campaign_id)
    counts, snapshot = _counted(campaign_id)
    rank, snap = _keys(campaign_id)
    args: list[str] = [snapshot]
    for cid, n in counts.items():
        args += [str(cid), str(n)]
    return counts, bool(get_redis().eval(_CREATE_IF_MISSING, 2, rank, snap, *args))


def counts(campaign_id: int) -> dict[int, int]:
    """The live counts from Redis (rebuilt from the rows if missing); the rows when Redis is down."""
    try:
        rank, snap = _keys(campaign_id)
        # One round trip when the ranking is there (every vote's answer reads it): the check and the read together.
        present, raw = (
            get_redis().pipeline(transaction=False).exists(snap).zrange(rank, 0, -1, withscores=True).execute()
        )
        if not present:
            rebuild_ranking(campaign_id, replace=False)
            raw = get_redis().zrange(rank, 0, -1, withscores=True)
        return {int(member): int(score) for member, score in raw}
    except Exception:
        log.warning("ranking read from the database: Redis unavailable")
        return db_counts(campaign_id)


@dataclass
class Standing:
    candidate: VoteCandidate
    votes: int
    rank: int


def ranking(campaign: VoteCampaign, live: dict[int, int] | None = None) -> list[Standing]:
    live = counts(campaign.id) if live is None else live
    ordered = sorted(campaign.candidates, key=lambda c: (-live.get(c.id, 0), c.sort, c.id))
    out: list[Standing] = []
    for i, cand in enumerate(ordered):
        votes = live.get(cand.id, 0)
        rank = out[-1].rank if out and out[-1].votes == votes else i + 1
        out.append(Standing(cand, votes, rank))
    return out


def remaining_today(campaign: VoteCampaign, openid: str, now: datetime | None = None) -> int:
    used = db.session.scalar(
        sa.select(VoteQuota.used).filter_by(campaign_id=campaign.id, openid=openid, day=local_day(now or utcnow()))
    )
    return max(0, campaign.votes_per_day - (used or 0))


def done_today(campaign: VoteCampaign, openid: str, now: datetime | None = None) -> set[int]:
    """The candidates this citizen has given all the votes they may today: their buttons say so before a tap."""
    return set(
        db.session.scalars(
            sa.select(VoteCandidateQuota.candidate_id)
            .join(VoteCandidate, VoteCandidate.id == VoteCandidateQuota.candidate_id)
            .where(
                VoteCandidate.campaign_id == campaign.id,
                VoteCandidateQuota.openid == openid,
                VoteCandidateQuota.day == local_day(now or utcnow()),
                VoteCandidateQuota.used >= campaign.per_candidate_per_day,
            )
        )
    )


# --- brushing analysis ----------------------------------------------------------------------------------------------

CLUSTER_KINDS = {"ip": "同一 IP", "subnet": "同一网段（/24）", "user_agent": "相同设备标识（User-Agent）"}

# One pass over the campaign's valid votes, grouped by one key (ip, subnet or user agent). Per group: voters,
# the share going to its top candidate, the share cast by followers who subscribed minutes before voting, the share
# cast at night (00:00–06:00 Shanghai), the share carrying the group's most common user agent, and the time span.
_CLUSTER_SQL = """
WITH v AS (
    SELECT vote.id, vote.openid, vote.candidate_id, vote.cast_at, vote.user_agent, vote.{key} AS key,
           (f.first_subscribed_at IS NOT NULL AND f.first_subscribed_at <= vote.cast_at
            AND f.first_subscribed_at > vote.cast_at - make_interval(mins => :new_minutes)) AS new_follower,
           (extract(hour FROM vote.cast_at AT TIME ZONE 'Asia/Shanghai') < 6) AS night
    FROM vote LEFT JOIN follower f ON f.openid = vote.openid
    WHERE vote.campaign_id = :campaign AND vote.voided_at IS NULL
),
g AS (
    SELECT key, count(*) AS votes, count(DISTINCT openid) AS voters,
           avg(new_follower::int) AS new_share, avg(night::int) AS night_share,
           min(cast_at) AS first_at, max(cast_at) AS last_at
    FROM v GROUP BY key HAVING count(DISTINCT openid) >= :min_voters
),
top AS (
    SELECT key, candidate_id, count(*) AS n, row_number() OVER (PARTITION BY key ORDER BY count(*) DESC) AS rn
    FROM v WHERE key IN (SELECT key FROM g) GROUP BY key, candidate_id
),
ua AS (
    SELECT key, count(*) AS n, row_number() OVER (PARTITION BY key ORDER BY count(*) DESC) AS rn
    FROM v WHERE key IN (SELECT key FROM g) GROUP BY key, user_agent
)
SELECT g.key, g.votes, g.voters, g.new_share, g.night_share, g.first_at, g.last_at,
       top.candidate_id AS top_candidate, top.n::float / g.votes AS top_share, ua.n::float / g.votes AS ua_share
FROM g JOIN top ON top.key = g.key AND top.rn = 1 JOIN ua ON ua.key = g.key AND ua.rn = 1
"""


@dataclass
class Cluster:
    kind: str
    key: str
    votes: int
    voters: int
    top_candidate: int
    top_share: float
    new_share: float
    night_share: float
    ua_share: float
    first_at: datetime
    last_at: datetime
    score: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return self.score >= FLAG_SCORE

    @property
    def per_minute(self) -> float:
        minutes = max((self.last_at - self.first_at).total_seconds() / 60, 1.0)
        return self.voters / minutes


def _score(c: Cluster) -> None:
    """0–100, additive, each part explained: how much this group looks like one hand behind many accounts."""
    parts: list[tuple[float, str]] = [
        (30 * min(1.0, c.voters / 50), f"{c.voters} 个账号来自{CLUSTER_KINDS[c.kind]}"),
        (25 * c.top_share if c.top_share >= 0.6 else 0, f"{c.top_share:.0%} 的票投给同一候选人"),
        (15 * c.new_share, f"{c.new_share:.0%} 的票来自投票前 {NEW_FOLLOWER_MINUTES} 分钟内新关注的粉丝"),
        (10 * c.night_share, f"{c.night_share:.0%} 的票在凌晨 0–6 点投出"),
        (10 if c.per_minute >= 3 else 0, f"集中爆发：每分钟约 {c.per_minute:.1f} 个账号"),
    ]
    if c.kind != "user_agent":
        parts.append((10 * c.ua_share if c.ua_share >= 0.5 else 0, f"{c.ua_share:.0%} 的票 User-Agent 完全相同"))
    c.score = round(sum(points for points, _ in parts))
    c.reasons = [text for points, text in parts if points >= 2]


def clusters(campaign_id: int, kind: str, *, min_voters: int = MIN_CLUSTER_VOTERS) -> list[Cluster]:
    if kind not in CLUSTER_KINDS:
        raise ServiceError("未知的分组方式")
    if db.engine.dialect.name != "postgresql":
        return []  # the analysis is PostgreSQL SQL; the embedded SQLite demo shows none
    rows = db.session.execute(
        sa.text(_CLUSTER_SQL.format(key=kind)),
        {"campaign": campaign_id, "min_voters": min_voters, "new_minutes": NEW_FOLLOWER_MINUTES},
    ).mappings()
    out = []
    for r in rows:
        c = Cluster(
            kind=kind,
            key=r["key"],
            votes=r["votes"],
            voters=r["voters"],
            top_candidate=r["top_candidate"],
            top_share=float(r["top_share"]),
            new_share=float(r["new_share"] or 0),
            night_share=float(r["night_share"] or 0),
            ua_share=float(r["ua_share"]),
            first_at=r["first_at"],
            last_at=r["last_at"],
        )
        _score(c)
        out.append(c)
    return sorted(out, key=lambda c: (-c.score, -c.voters))


_NIGHT_SQL = """
SELECT candidate_id, date_trunc('hour', cast_at AT TIME ZONE 'Asia/Shanghai') AS hour,
       count(*) AS votes, count(DISTINCT openid) AS voters, count(DISTINCT ip) AS ips
FROM vote
WHERE campaign_id = :campaign AND voided_at IS NULL
  AND extract(hour FROM cast_at AT TIME ZONE 'Asia/Shanghai') < 6
GROUP BY 1, 2 HAVING count(*) >= :min_votes
ORDER BY votes DESC LIMIT 50
"""

_NEW_FOLLOWER_SQL = """
SELECT vote.candidate_id, count(*) AS votes, count(DISTINCT vote.openid) AS voters,
       count(*) FILTER (WHERE f.first_subscribed_at <= vote.cast_at
                        AND f.first_subscribed_at > vote.cast_at - make_interval(mins => :new_minutes)) AS new_votes,
       count(DISTINCT vote.openid) FILTER (WHERE single.openid IS NOT NULL
                        AND f.first_subscribed_at <= vote.cast_at
                        AND f.first_subscribed_at > vote.cast_at - make_interval(mins => :new_minutes))
           AS new_single_voters
FROM vote
LEFT JOIN follower f ON f.openid = vote.openid
LEFT JOIN (SELECT openid FROM vote WHERE campaign_id = :campaign AND voided_at IS NULL
           GROUP BY openid HAVING count(DISTINCT candidate_id) = 1) single ON single.openid = vote.openid
WHERE vote.campaign_id = :campaign AND vote.voided_at IS NULL
GROUP BY vote.candidate_id ORDER BY new_votes DESC
"""


@dataclass
class Review:
    clusters: list[Cluster]
    night: list[dict[str, Any]]
    new_followers: list[dict[str, Any]]
    totals: dict[str, int]
    computed_at: datetime = field(default_factory=utcnow)

    @property
    def flagged(self) -> list[Cluster]:
        return [c for c in self.clusters if c.flagged]

    def to_json(self) -> str:
        as_dict = {**self.__dict__, "clusters": [c.__dict__ for c in self.clusters]}
        return json.dumps(as_dict, default=lambda v: {"$dt": v.isoformat()})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Review:
        data = json.loads(raw, object_hook=lambda d: datetime.fromisoformat(d["$dt"]) if "$dt" in d else d)
        data["clusters"] = [Cluster(**c) for c in data["clusters"]]
        return cls(**data)


# The analysis reads every valid vote of the campaign several times: seconds at a few hundred thousand votes. The
# page shows the stored result, with its time; a void or the page's 重新分析 computes it again.
REVIEW_TTL = 600


def _review_key(campaign_id: int) -> str | None:
    """The stored analysis's key for the campaign's current generation (None: Redis is down). A void starts a new
    generation: an analysis that began before it is stored under the old one, never read. (Candidates with votes
    cannot be removed, and a new one has none: the analysis does not change with them.)"""
    try:
        generation = get_redis().get(f"vote:review-gen:{campaign_id}") or b"0"
    except Exception:
        return None
    return f"vote:review:{campaign_id}:{generation.decode() if isinstance(generation, bytes) else generation}"


def review(campaign_id: int, *, fresh: bool = False) -> Review:
    """The review page's analysis: the stored one if under REVIEW_TTL old (and not `fresh`), else computed now."""
    key = _review_key(campaign_id)
    if key and not fresh:
        try:
            raw = get_redis().get(key)
            if raw:
                return Review.from_json(raw)
        except Exception:  # Redis down, or stored by an older release in another shape: compute it
            log.info("stored vote review not used for campaign %s", campaign_id, exc_info=True)
    out = _analyse(campaign_id)
    if key:
        try:
            get_redis().set(key, out.to_json(), ex=REVIEW_TTL)
        except Exception:
            log.warning("vote review not stored: Redis unavailable")
    return out


def _forget_review(campaign_id: int) -> None:
    try:
        get_redis().incr(f"vote:review-gen:{campaign_id}")
    except Exception:
        log.warning("vote review not renewed: Redis unavailable; the stored one expires in %d s", REVIEW_TTL)


def _analyse(campaign_id: int) -> Review:
    """Everything the review page shows, computed in SQL over the vote rows."""
    if db.engine.dialect.name == "postgresql":  # JIT compiled each of these statements for ~0.5 s and gained nothing
        db.session.execute(sa.text("SET LOCAL jit = off"))
    found = [c for kind in CLUSTER_KINDS for c in clusters(campaign_id, kind)]
    found.sort(key=lambda c: (not c.flagged, -c.score, -c.voters))
    night: list[dict[str, Any]] = []
    new_followers: list[dict[str, Any]] = []
    if db.engine.dialect.name == "postgresql":
        night = [
            dict(r)
            for r in db.session.execute(sa.text(_NIGHT_SQL), {"campaign": campaign_id, "min_votes": 20}).mappings()
        ]
        new_followers = [
            dict(r)
            for r in db.session.execute(
                sa.text(_NEW_FOLLOWER_SQL), {"campaign": campaign_id, "new_minutes": NEW_FOLLOWER_MINUTES}
            ).mappings()
        ]
    total = db.session.execute(
        sa.select(
            sa.func.count(Vote.id).filter(Vote.voided_at.is_(None)),
            sa.func.count(Vote.id).filter(Vote.voided_at.is_not(None)),
            sa.func.count(sa.distinct(Vote.openid)),
        ).where(Vote.campaign_id == campaign_id)
    ).one()
    return Review(found, night, new_followers, {"valid": total[0], "voided": total[1], "voters": total[2]})


def cluster_votes(campaign_id: int, kind: str, key: str, limit: int = 200) -> list[Vote]:
    if kind not in CLUSTER_KINDS:
        raise ServiceError("未知的分组方式")
    return list(
        db.session.scalars(
            sa.select(Vote)
            .where(Vote.campaign_id == campaign_id, getattr(Vote, kind) == key)
            .order_by(Vote.cast_at.desc())
            .limit(limit)
        )
    )


# --- voids ----------------------------------------------------------------------------------------------------------


def void_votes(
    campaign: VoteCampaign,
    reason: str,
    *,
    kind: str | None = None,
    key: str | None = None,
    candidate_id: int | None = None,
    vote_ids: Iterable[int] | None = None,
) -> int:
    """Void the valid votes of a group (kind=key, optionally only for one candidate) or by id; audited with the
    reason; the ranking moves by exactly the votes voided. Returns how many."""
    reason = (reason or "").strip()
    if not 2 <= len(reason) <= 256:
        raise ServiceError("请填写作废原因（2 到 256 字）")
    conditions: list[sa.ColumnElement[bool]] = [Vote.campaign_id == campaign.id, Vote.voided_at.is_(None)]
    if kind is not None:
        if kind not in CLUSTER_KINDS or not key:
            raise ServiceError("未知的分组方式")
        conditions.append(getattr(Vote, kind) == key)
    if candidate_id is not None:
        conditions.append(Vote.candidate_id == candidate_id)
    ids = list(vote_ids or [])
    if ids:
        conditions.append(Vote.id.in_(ids))
    if kind is None and not ids:
        raise ServiceError("请选择要作废的投票")
    actor = audit.current_actor()
    # UPDATE … WHERE voided_at IS NULL RETURNING: a vote voided twice at once is returned (and subtracted) once.
    voided = db.session.execute(
        sa.update(Vote)
        .where(*conditions)
        .values(voided_at=utcnow(), void_reason=reason, voided_by=actor.name if actor else None)
        .returning(Vote.candidate_id, _xid_column())
    ).all()
    per_candidate = Counter(cid for cid, _ in voided)
    xid = voided[0][1] if voided else None
    audit.record(
        "vote.void",
        target=campaign,
        after={
            "votes": len(voided),
            "by_candidate": {str(k): v for k, v in per_candidate.items()},
            "group": {"kind": kind, "key": key} if kind else None,
            "candidate_id": candidate_id,
            "vote_ids": ids[:200] or None,
        },
        note=reason,
    )
    db.session.commit()
    try:
        for cand_id, n in per_candidate.items():
            if _apply(campaign.id, cand_id, -n, xid) is None:
                break  # no set: the next read rebuilds it from the rows, voids included
    except Exception:
        log.warning("ranking not moved after voids: Redis unavailable; it is rebuilt when read")
        _drop_ranking(campaign.id)
    _forget_review(campaign.id)  # the office returns to the review page to see the groups without these votes
    return len(voided)


# --- results export -------------------------------------------------------------------------------------------------


def export_results(campaign: VoteCampaign) -> bytes:
    """The results as an Excel workbook, counted from the rows (not Redis); audited as an export."""
    from openpyxl import Workbook

    valid = db_counts(campaign.id)
    voided = dict(
        db.session.execute(
            sa.select(Vote.candidate_id, sa.func.count())
            .where(Vote.campaign_id == campaign.id, Vote.voided_at.is_not(None))
            .group_by(Vote.candidate_id)
        ).all()
    )
    voters = dict(
        db.session.execute(
            sa.select(Vote.candidate_id, sa.func.count(sa.distinct(Vote.openid)))
            .where(Vote.campaign_id == campaign.id, Vote.voided_at.is_(None))
            .group_by(Vote.candidate_id)
        ).all()
    )
    wb = Workbook()
    ws = wb.active
    ws.title = "结果"
    ws.append([campaign.title])
    ws.append(
        [
            f"投票时间 {campaign.starts_at.astimezone(LOCAL_TZ):%Y-%m-%d %H:%M} 至 "
            f"{campaign.ends_at.astimezone(LOCAL_TZ):%Y-%m-%d %H:%M}（北京时间）；"
            f"导出于 {utcnow().astimezone(LOCAL_TZ):%Y-%m-%d %H:%M}"
        ]
    )
    ws.append(["名次", "候选人", "单位", "有效票", "投票人数", "已作废票"])
    for s in ranking(campaign, valid):
        ws.append(
            [
                s.rank,
                sheets.text(s.candidate.name),
                sheets.text(s.candidate.unit_name),
                s.votes,
                voters.get(s.candidate.id, 0),
                voided.get(s.candidate.id, 0),
            ]
        )
    ws.append([])
    ws.append(["合计", "", "", sum(valid.values()), "", sum(voided.values())])
    for col, width in zip("ABCDEF", (6, 14, 24, 10, 10, 10), strict=True):
        ws.column_dimensions[col].width = width
    audit.record(
        "vote.export",
        kind=AuditKind.EXPORT,
        target=campaign,
        after={"valid": sum(valid.values()), "voided": sum(voided.values()), "candidates": len(valid)},
    )
    db.session.commit()
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def campaigns() -> list[VoteCampaign]:
    return list(db.session.scalars(sa.select(VoteCampaign).order_by(VoteCampaign.starts_at.desc())))


def open_campaigns(now: datetime | None = None) -> list[VoteCampaign]:
    now = now or utcnow()
    return list(
        db.session.scalars(
            sa.select(VoteCampaign)
            .where(VoteCampaign.ends_at > now - timedelta(days=30))
            .order_by(VoteCampaign.starts_at.desc())
        )
    )
