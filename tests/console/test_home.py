"""The console home's follower figures: the 7-day card and the 30-day chart count the same thing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.services import articles, channels, dashboard, followers, replies


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


def test_the_home_page_tells_each_role_what_waits_on_them_in_publishing(console, db_session):
    from datetime import UTC, datetime, timedelta

    from models import PushStatus
    from tests import factories
    from tests.services.test_publishing import approved, week_of_daily_cases

    people = factories.newsroom()  # ed1, rv1, li1
    for title in ("待审稿一", "待审稿二"):
        a = articles.save_article(people["liaison"], title=title, body_html="<p>正文</p>")
        articles.submit(people["liaison"], a.id)
    approved(people, "已通过稿")
    sent_back = articles.save_article(people["liaison"], title="退回稿", body_html="<p>正文</p>")
    articles.submit(people["liaison"], sent_back.id)
    articles.review(people["reviewer"], sent_back.id, approve=False, comment="补充法条")
    (failed,) = week_of_daily_cases(people, datetime.now(UTC) + timedelta(minutes=5), 1)
    failed.status = PushStatus.FAILED
    db_session.commit()

    def todo(username: str) -> str:
        assert console.login(username).status_code == 302
        page = console.get("/admin/").get_data(as_text=True)
        console.post("/admin/logout")
        return page.split('id="todo"')[1].split("</div>")[0]

    reviewer = todo("rv1")
    assert "待审核推文：<strong>2</strong>" in reviewer and "/admin/articles/list?status=submitted" in reviewer
    assert "待排期" not in reviewer
    editor = todo("ed1")
    assert "已通过、待排期：<strong>1</strong>" in editor and "/admin/articles/pushes/new" in editor
    assert "待审核推文" not in editor
    # the failed push: straight to the list of pushes that need someone
    assert "发布失败或状态不明：<strong>1</strong>" in editor and "/admin/articles/pushes?status=attention" in editor
    assert "退回修改：<strong>1</strong>" in todo("li1")
