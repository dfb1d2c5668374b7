"""The console home's follower figures: the 7-day card and the 30-day chart count the same thing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.services import channels, dashboard, followers, replies


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


def test_the_auto_reply_card_counts_the_rules_the_auto_reply_page_lists(db_session):
    # A channel QR's reply is a rule too, kept on the channel's page: the card would count one the page never shows.
    replies.save_rule(name="开放日", match_type="exact", pattern="开放日", reply_text="7·15 开放日欢迎报名")
    channels.create_channel(
        name="开放日海报", scene="open_day", unit_id=None, reply=channels.ReplyInput("text", text="报名请点菜单")
    )
    assert dashboard.follower_counts()["rules"] == len(replies.list_rules()) == 1
