"""Datetimes go in as UTC on every backend: SQLite (the demo) keeps the wall time of what it is given and drops the
offset, so a Beijing-time value stored as is would read back 8 hours off and compare wrongly against UTC ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import Tip, TipSource, TipStatus, TipStatusChange
from server.extensions import db
from server.filters import LOCAL_TZ
from server.services import targets
from tests.factories import unit as make_unit

pytestmark = pytest.mark.smoke


def _tip(made: datetime, unit_id: int | None = None) -> Tip:
    tip = Tip(
        tracking_no="ABCD2345",
        submit_key="k-1",
        openid="o-1",
        category="其他",
        description="占道经营五天了",
        source=TipSource.H5,
        unit_id=unit_id,
        created_at=made,
    )
    db.session.add(tip)
    return tip


def test_a_beijing_time_value_reads_back_as_the_same_instant_and_compares_as_one(db_session):
    made = datetime(2026, 12, 4, 8, 0, tzinfo=LOCAL_TZ)  # 00:00 UTC
    tip = _tip(made)
    db.session.flush()
    tip_id = tip.id
    db.session.expire_all()
    assert db.session.get(Tip, tip_id).created_at == made == datetime(2026, 12, 4, 0, 0, tzinfo=UTC)
    since = sa.select(sa.func.count()).select_from(Tip).where(Tip.created_at >= made - timedelta(minutes=1))
    assert db.session.scalar(since) == 1
    later = sa.select(sa.func.count()).select_from(Tip).where(Tip.created_at >= made + timedelta(minutes=1))
    assert db.session.scalar(later) == 0


def test_handling_hours_on_this_backend(db_session):
    district = make_unit("浦东分局")
    made = datetime.now(UTC) - timedelta(hours=30)
    tip = _tip(made, district.id)
    tip.history.append(TipStatusChange(to_status=TipStatus.RESOLVED, at=made + timedelta(hours=12)))
    db.session.flush()
    today = datetime.now(UTC).date()
    window = (today - timedelta(days=3), today + timedelta(days=1))
    assert targets.count_by_unit("tip_handling_hours", *window) == {district.id: 12.0}
