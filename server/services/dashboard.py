"""Figures for the console home: followers and messages, and what waits on someone in publishing; in SQL."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from models import Article, ArticleStatus, Follower, InboundMessage, MatchType, ReplyRule
from server.extensions import db
from server.filters import LOCAL_TZ
from server.services import publishing


def _local_midnight_utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ)


def follower_counts() -> dict[str, int]:
    today = datetime.now(LOCAL_TZ).date()
    week_start = _local_midnight_utc(today - timedelta(days=6))
    row = db.session.execute(
        sa.select(
            sa.func.count().filter(Follower.subscribed),
            # first follows, as the home chart counts them: the card is the sum of its last 7 bars
            sa.func.count().filter(Follower.first_subscribed_at >= week_start),
            sa.func.count().filter(Follower.unsubscribed_at >= week_start),
        )
    ).one()
    messages_today = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(InboundMessage)
        .where(InboundMessage.received_at >= _local_midnight_utc(today))
    )
    # As the auto-reply page lists them: a channel QR's reply is on the channel's page
    enabled = sa.and_(ReplyRule.enabled, ReplyRule.match_type != MatchType.SCENE)
    rules = db.session.scalar(sa.select(sa.func.count()).select_from(ReplyRule).where(enabled))
    return {
        "followers": row[0],
        "new_7d": row[1],
        "left_7d": row[2],
        "messages_today": messages_today or 0,
        "rules": rules or 0,
    }


def daily_new_followers(days: int = 30) -> list[tuple[date, int]]:
    """New subscriptions per local day, zero-filled; bucketed by comparing against day boundaries in SQL."""
    today = datetime.now(LOCAL_TZ).date()
    first = today - timedelta(days=days - 1)
    bounds = [_local_midnight_utc(first + timedelta(days=i)) for i in range(days + 1)]
    columns = [
        sa.func.count().filter(Follower.first_subscribed_at >= lo, Follower.first_subscribed_at < hi)
        for lo, hi in zip(bounds, bounds[1:], strict=False)
    ]
    counts = db.session.execute(sa.select(*columns).where(Follower.first_subscribed_at >= bounds[0])).one()
    return [(first + timedelta(days=i), int(n)) for i, n in enumerate(counts)]


def publishing_todo(unit_ids: Collection[int] | None = None) -> dict[str, int]:
    """Articles waiting on someone: a reviewer (submitted), an editor (approved, not yet in a push), their writer
    (sent back, not yet reworked), and pushes gone wrong (failed in the last 7 days, or awaiting a check).
    `unit_ids`: a liaison's units only (None: every unit)."""
    where = [Article.unit_id.in_(unit_ids)] if unit_ids is not None else []
    returned = sa.and_(
        Article.status == ArticleStatus.DRAFT,
        Article.reviewed_version.is_not(None),
        sa.or_(Article.approved_version.is_(None), Article.approved_version != Article.reviewed_version),
    )
    row = db.session.execute(
        sa.select(
            sa.func.count().filter(Article.status == ArticleStatus.SUBMITTED),
            sa.func.count().filter(Article.status == ArticleStatus.APPROVED),
            sa.func.count().filter(returned),
        )
        .select_from(Article)
        .where(*where)
    ).one()
    troubled = len(publishing.recent_failures())  # the calendar's red banners, counted
    return {"submitted": row[0], "approved": row[1], "returned": row[2], "push_problems": troubled}
