"""Votes: rules, counting exactly once under concurrency, the ranking mirror, brushing analysis, voids, export."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from models import AuditLog, Follower, Vote, VoteCampaign, VoteCandidate
from models.vote import VoteQuota
from server.extensions import db, get_redis
from server.services import ServiceError, votes

NOW = datetime(2026, 5, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


@pytest.fixture(autouse=True)
def _one_transaction_mirror(request, monkeypatch):
    """Inside db_session every "commit" is a savepoint of one transaction, so transaction ids cannot tell votes
    apart: use the id-less delta path there. The snapshot path runs in the committed_db and live-server tests."""
    if "db_session" in request.fixturenames:
        monkeypatch.setattr(votes, "USE_TRANSACTION_IDS", False)


def make_campaign(*, per_day: int = 3, per_candidate: int = 1, candidates: int = 3, **kwargs) -> VoteCampaign:
    campaign = votes.save_campaign(
        title="最美城管人",
        description="",
        starts_at=kwargs.pop("starts_at", NOW - timedelta(days=1)),
        ends_at=kwargs.pop("ends_at", NOW + timedelta(days=10)),
        votes_per_day=per_day,
        per_candidate_per_day=per_candidate,
        followers_only=kwargs.pop("followers_only", False),
        results_policy=kwargs.pop("results_policy", "live"),
    )
    for i in range(candidates):
        votes.save_candidate(campaign, name=f"队员{i + 1}", unit_name="浦东分局", story="事迹")
    return campaign


def cast(campaign: VoteCampaign, index: int, openid: str = "o-a", *, now: datetime = NOW, **kwargs):
    return votes.cast_vote(campaign.id, campaign.candidates[index].id, openid, ip="10.0.0.1", now=now, **kwargs)


def valid_rows(campaign: VoteCampaign) -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(Vote).where(Vote.campaign_id == campaign.id, Vote.voided_at.is_(None))
    )


def test_a_vote_is_a_row_and_counts(db_session):
    campaign = make_campaign()
    result = cast(campaign, 0, user_agent="Mozilla/5.0 MicroMessenger")
    assert result.count == 1 and result.remaining_today == 2
    vote = db_session.scalars(sa.select(Vote)).one()
    assert (vote.openid, vote.ip, vote.subnet, vote.seq, vote.candidate_seq) == ("o-a", "10.0.0.1", "10.0.0.0/24", 1, 1)
    assert vote.user_agent.endswith("MicroMessenger") and vote.cast_at == NOW


def test_per_day_and_per_candidate_limits(db_session):
    campaign = make_campaign(per_day=3, per_candidate=2)
    cast(campaign, 0)
    cast(campaign, 0)
    with pytest.raises(ServiceError, match="已为 TA 投过 2 票"):
        cast(campaign, 0)
    cast(campaign, 1)
    with pytest.raises(ServiceError, match="3 票已经投完"):
        cast(campaign, 2)
    assert valid_rows(campaign) == 3
    # the refused per-candidate vote gave its daily slot back: the counter says 3, not 4
    assert db_session.scalar(sa.select(VoteQuota.used)) == 3
    # the next Shanghai day (16:00 UTC = midnight) starts afresh
    cast(campaign, 2, now=NOW + timedelta(hours=12))
    assert valid_rows(campaign) == 4


def test_day_boundary_is_shanghai_midnight(db_session):
    campaign = make_campaign(per_day=1)
    cast(campaign, 0, now=datetime(2026, 5, 10, 15, 59, tzinfo=UTC))  # 23:59 local
    cast(campaign, 1, now=datetime(2026, 5, 10, 16, 0, tzinfo=UTC))  # 00:00 local, a new day
    with pytest.raises(ServiceError):
        cast(campaign, 2, now=datetime(2026, 5, 11, 3, 0, tzinfo=UTC))


def test_on_the_last_day_no_one_is_told_to_come_back_tomorrow(db_session):
    # The vote ends at 18:00 today (Shanghai): 「明天再来吧」 sent citizens back to a vote that would be over.
    campaign = make_campaign(per_day=2, per_candidate=1, ends_at=NOW + timedelta(hours=6))
    cast(campaign, 0)
    with pytest.raises(ServiceError) as refused:
        cast(campaign, 0)
    assert "已为 TA 投过 1 票" in str(refused.value) and "明天" not in str(refused.value)
    cast(campaign, 1)
    with pytest.raises(ServiceError) as refused:
        cast(campaign, 2)
    assert "2 票已经投完" in str(refused.value) and "明天" not in str(refused.value)
    # with a day still to come, tomorrow is right
    longer = make_campaign(per_day=1, ends_at=NOW + timedelta(days=2))
    cast(longer, 0)
    with pytest.raises(ServiceError, match="明天再来吧"):
        cast(longer, 1)


def test_outside_the_period_and_snapshot_refused(db_session):
    campaign = make_campaign(starts_at=NOW + timedelta(minutes=1), ends_at=NOW + timedelta(days=1))
    with pytest.raises(ServiceError, match="尚未开始"):
        cast(campaign, 0)
    cast(campaign, 0, now=NOW + timedelta(minutes=1))
    with pytest.raises(ServiceError, match="已结束"):
        cast(campaign, 1, now=NOW + timedelta(days=1))
    with pytest.raises(ServiceError, match="快照"):
        cast(campaign, 1, now=NOW + timedelta(minutes=2), snapshot=True)
    assert valid_rows(campaign) == 1


def test_followers_only(db_session):
    campaign = make_campaign(followers_only=True)
    with pytest.raises(ServiceError, match="仅限关注"):
        cast(campaign, 0, "o-stranger")
    db_session.add(Follower(openid="o-fan", subscribed=True, first_subscribed_at=NOW))
    db_session.add(Follower(openid="o-gone", subscribed=False, first_subscribed_at=NOW))
    db_session.commit()
    cast(campaign, 0, "o-fan")
    with pytest.raises(ServiceError, match="仅限关注"):
        cast(campaign, 0, "o-gone")


def test_candidate_of_another_campaign_refused(db_session):
    first, second = make_campaign(), make_campaign()
    with pytest.raises(ServiceError, match="候选人不存在"):
        votes.cast_vote(first.id, second.candidates[0].id, "o-a", ip="10.0.0.1", now=NOW)


def test_rate_limit_per_ip(db_session, monkeypatch):
    monkeypatch.setitem(votes.RATE_LIMITS, "ip", 5)
    campaign = make_campaign(per_day=1)
    for i in range(5):
        cast(campaign, 0, f"o-{i}")
    with pytest.raises(votes.RateLimited):
        cast(campaign, 0, "o-6")


def test_hidden_results_give_no_count(db_session):
    campaign = make_campaign(results_policy="hidden")
    assert cast(campaign, 0).count is None
    after_end = make_campaign(results_policy="after_end")
    assert cast(after_end, 0).count is None
    assert after_end.results_visible(after_end.ends_at)


def test_ranking_rebuilt_from_rows_when_missing(db_session, redis_client):
    campaign = make_campaign(per_day=3)
    cast(campaign, 0, "o-a")
    cast(campaign, 1, "o-a")
    cast(campaign, 0, "o-b")
    redis_client.flushdb()  # Redis lost: nothing of the truth is lost
    assert votes.counts(campaign.id) == {
        campaign.candidates[0].id: 2,
        campaign.candidates[1].id: 1,
        campaign.candidates[2].id: 0,
    }
    assert cast(campaign, 0, "o-c").count == 3  # deltas resume on the rebuilt set


def test_photo_is_verified_and_reencoded(db_session, app, tmp_path):
    from pathlib import Path

    from PIL import Image

    campaign = make_campaign(candidates=0)
    buf = io.BytesIO()
    img = Image.new("RGB", (2000, 1000), "red")
    exif = Image.Exif()
    exif[0x8825] = {1: "N"}  # GPS IFD
    img.save(buf, "JPEG", exif=exif)
    cand = votes.save_candidate(campaign, name="张三", unit_name="黄浦", story="", photo=buf.getvalue())
    with Image.open(Path(app.config["MEDIA_ROOT"]) / cand.photo_path) as stored:
        assert stored.format == "JPEG" and stored.size == (1200, 600) and not stored.getexif()
    with pytest.raises(ServiceError, match="不是有效的图片"):
        votes.save_candidate(campaign, name="李四", unit_name="", story="", photo=b"<?php system($_GET[1]); ?>")


# --- concurrency: real commits from many connections ------------------------------------------------------------------


def _hammer(app, campaign_id: int, jobs: list[tuple[int, str]]) -> tuple[int, int, list[str]]:
    """Run every (candidate_id, openid) vote at once from its own thread and connection."""
    barrier = threading.Barrier(len(jobs))
    accepted, refused, errors = [0], [0], []
    lock = threading.Lock()

    def one(candidate_id: int, openid: str) -> None:
        with app.app_context():
            barrier.wait()
            try:
                votes.cast_vote(campaign_id, candidate_id, openid, ip="10.1.2.3")
                with lock:
                    accepted[0] += 1
            except ServiceError:
                with lock:
                    refused[0] += 1
            except Exception as exc:  # noqa: BLE001  (any other failure is a test failure)
                errors.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=one, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return accepted[0], refused[0], errors


def _committed_campaign(per_day: int, per_candidate: int) -> tuple[int, list[int]]:
    now = datetime.now(UTC)
    campaign = votes.save_campaign(
        title="并发测试",
        description="",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=1),
        votes_per_day=per_day,
        per_candidate_per_day=per_candidate,
        followers_only=False,
        results_policy="live",
    )
    ids = [votes.save_candidate(campaign, name=f"候选{i}", unit_name="", story="").id for i in range(3)]
    return campaign.id, ids


def test_double_taps_count_once(app, committed_db, monkeypatch):
    monkeypatch.setitem(votes.RATE_LIMITS, "openid", 1000)
    campaign_id, ids = _committed_campaign(per_day=1, per_candidate=1)
    accepted, refused, errors = _hammer(app, campaign_id, [(ids[0], "o-tapper")] * 24)
    assert errors == []
    assert (accepted, refused) == (1, 23)
    assert committed_db.scalar(sa.select(sa.func.count()).select_from(Vote)) == 1
    assert votes.counts(campaign_id)[ids[0]] == 1


def test_concurrent_votes_respect_both_limits(app, committed_db, monkeypatch):
    monkeypatch.setitem(votes.RATE_LIMITS, "openid", 1000)
    monkeypatch.setitem(votes.RATE_LIMITS, "ip", 1000)
    campaign_id, ids = _committed_campaign(per_day=3, per_candidate=2)
    # 4 citizens, each firing 8 votes at each of the 3 candidates at once: 3 accepted each, at most 2 per candidate
    jobs = [(cid, f"o-{n}") for n in range(4) for cid in ids for _ in range(8)]
    accepted, refused, errors = _hammer(app, campaign_id, jobs)
    assert errors == []
    assert accepted == 12 and refused == len(jobs) - 12
    rows = committed_db.execute(
        sa.select(Vote.openid, Vote.candidate_id, sa.func.count()).group_by(Vote.openid, Vote.candidate_id)
    ).all()
    per_openid: dict[str, int] = {}
    for openid, _, n in rows:
        assert n <= 2
        per_openid[openid] = per_openid.get(openid, 0) + n
    assert per_openid == {f"o-{n}": 3 for n in range(4)}
    assert votes.counts(campaign_id) == votes.db_counts(campaign_id)
    assert sum(votes.db_counts(campaign_id).values()) == 12


# --- brushing analysis and voids --------------------------------------------------------------------------------------


def brush(db_session, campaign: VoteCampaign, n: int = 300, ip: str = "222.85.10.7") -> None:
    """A farm: one IP, n brand-new followers within minutes, all for candidate 0, one user agent."""
    target = campaign.candidates[0].id
    for i in range(n):
        at = NOW + timedelta(seconds=i)  # 300 votes in 5 minutes
        db_session.add(Follower(openid=f"o-farm-{i}", subscribed=True, first_subscribed_at=at - timedelta(minutes=2)))
        votes.cast_vote(campaign.id, target, f"o-farm-{i}", ip=ip, user_agent="FarmBot/1.0 MicroMessenger", now=at)


def honest(campaign: VoteCampaign, n: int = 40) -> None:
    """Ordinary citizens: own addresses, spread over candidates and hours."""
    for i in range(n):
        votes.cast_vote(
            campaign.id,
            campaign.candidates[i % 3].id,
            f"o-citizen-{i}",
            ip=f"36.{i}.{i % 7}.{i + 1}",
            user_agent=f"Mozilla/5.0 (iPhone; {i % 5}) MicroMessenger",
            now=NOW + timedelta(minutes=17 * i),
        )


def test_brushing_is_flagged_and_voiding_moves_the_ranking(db_session, monkeypatch):
    monkeypatch.setitem(votes.RATE_LIMITS, "ip", 10_000)
    monkeypatch.setitem(votes.RATE_LIMITS, "subnet", 10_000)
    campaign = make_campaign(per_day=1)
    honest(campaign)
    brush(db_session, campaign)
    report = votes.review(campaign.id)
    flagged = report.flagged
    assert flagged, [(c.kind, c.key, c.score) for c in report.clusters]
    ip_cluster = next(c for c in flagged if c.kind == "ip")
    assert ip_cluster.key == "222.85.10.7" and ip_cluster.voters == 300
    assert ip_cluster.top_candidate == campaign.candidates[0].id and ip_cluster.top_share == 1.0
    assert ip_cluster.new_share == 1.0
    # honest voters form no flagged group
    assert all(c.key != "36.0.0.1" for c in flagged)
    target = campaign.candidates[0].id
    before = votes.counts(campaign.id)[target]
    assert before == 314  # 14 honest + 300 farm
    voided = votes.void_votes(campaign, "同一 IP 批量新粉丝刷票", kind="ip", key="222.85.10.7", candidate_id=target)
    assert voided == 300
    assert votes.counts(campaign.id)[target] == 14 == votes.db_counts(campaign.id)[target]
    entry = db_session.scalars(sa.select(AuditLog).filter_by(action="vote.void")).one()
    assert entry.note == "同一 IP 批量新粉丝刷票" and entry.after["votes"] == 300
    # voiding again voids nothing and moves nothing
    assert votes.void_votes(campaign, "重复", kind="ip", key="222.85.10.7") == 0
    assert votes.counts(campaign.id)[target] == 14
    assert not [c for c in votes.review(campaign.id).flagged if c.kind == "ip"]


def test_void_needs_a_reason(db_session):
    campaign = make_campaign()
    cast(campaign, 0)
    with pytest.raises(ServiceError, match="原因"):
        votes.void_votes(campaign, " ", kind="ip", key="10.0.0.1")


def test_export_matches_the_database(db_session, monkeypatch):
    monkeypatch.setitem(votes.RATE_LIMITS, "ip", 10_000)
    monkeypatch.setitem(votes.RATE_LIMITS, "subnet", 10_000)
    campaign = make_campaign(per_day=1)
    honest(campaign, 30)
    brush(db_session, campaign, 25)
    votes.void_votes(campaign, "刷票", kind="ip", key="222.85.10.7")
    sheet = load_workbook(io.BytesIO(votes.export_results(campaign))).active
    rows = [r for r in sheet.iter_rows(min_row=4, values_only=True) if r[0] and r[0] != "合计"]
    truth = dict(
        db_session.execute(
            sa.select(VoteCandidate.name, sa.func.count(Vote.id))
            .outerjoin(Vote, sa.and_(Vote.candidate_id == VoteCandidate.id, Vote.voided_at.is_(None)))
            .where(VoteCandidate.campaign_id == campaign.id)
            .group_by(VoteCandidate.name)
        ).all()
    )
    assert {r[1]: r[3] for r in rows} == truth
    assert sum(r[5] for r in rows) == 25
    assert db_session.scalars(sa.select(AuditLog).filter_by(action="vote.export")).one().kind.value == "export"


def test_the_review_is_stored_until_a_void_or_a_fresh_analysis(db_session, monkeypatch):
    monkeypatch.setitem(votes.RATE_LIMITS, "ip", 10_000)
    monkeypatch.setitem(votes.RATE_LIMITS, "subnet", 10_000)
    campaign = make_campaign(per_day=1)
    brush(db_session, campaign)
    first = votes.review(campaign.id)
    stored = votes.review(campaign.id)
    assert stored == first  # every field, the groups' times included, comes back from Redis as it was computed
    assert isinstance(stored.clusters[0].first_at, datetime) and stored.clusters[0].first_at.tzinfo is not None
    honest(campaign, 5)
    assert votes.review(campaign.id).totals == first.totals  # read from the store, not recomputed
    assert votes.review(campaign.id, fresh=True).totals["valid"] == first.totals["valid"] + 5
    votes.void_votes(campaign, "同一 IP 批量新粉丝刷票", kind="ip", key="222.85.10.7")
    assert votes.review(campaign.id).totals["voided"] == 300  # the void started a new generation
    get_redis().set(votes._review_key(campaign.id), '{"stored by": "an older release"}')
    assert votes.review(campaign.id).totals["voided"] == 300  # a shape it cannot read is computed afresh


def test_a_campaign_time_before_the_first_year_in_utc_is_no_time():
    # Found by tests/test_form_mutations.py: year 1 at 00:00 in Shanghai overflowed converting to UTC.
    assert votes.parse_local_minute("0001-01-01T00:00") is None
    assert votes.parse_local_minute("9999-12-31T23:59") is not None
