"""The console home's follower figures: the 7-day card and the 30-day chart count the same thing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.services import dashboard, followers


def test_the_seven_day_card_is_the_sum_of_the_charts_last_seven_bars(db_session):
    now = datetime.now(UTC)
    followers.subscribe("o_new_stays", now - timedelta(days=1))
    followers.subscribe("o_new_left", now - timedelta(days=2))
    followers.unsubscribe("o_new_left", now - timedelta(days=1))
    followers.subscribe("o_new_left_too", now - timedelta(days=5))
    followers.unsubscribe("o_new_left_too", now - timedelta(days=4))
    followers.subscribe("o_old_back", now - timedelta(days=40))  # a returning follower is not new
    followers.unsubscribe("o_old_back", now - timedelta(days=20))
    followers.subscribe("o_old_back", now - timedelta(hours=3))
    followers.subscribe("o_long_ago", now - timedelta(days=12))

    counts = dashboard.follower_counts()
    daily = dashboard.daily_new_followers(30)
    assert counts["new_7d"] == sum(n for _, n in daily[-7:]) == 3
    assert sum(n for _, n in daily) == 4  # o_long_ago too; o_old_back's first follow is outside the window
    assert counts["followers"] == 3 and counts["left_7d"] == 2


def test_the_home_page_explains_what_it_counts(as_admin, db_session):
    followers.subscribe("o_home", datetime.now(UTC))
    page = as_admin.get("/admin/").get_data(as_text=True)
    assert "按首次关注的日期统计" in page and "近 7 天新增关注" in page
