"""The article workflow: roles, versions, the reviewer's diff, re-approval after edits; columns and numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models import ArticleStatus, PushStatus
from server.services import ServiceError, articles, columns, publishing
from tests.services.test_publishing import approved, jpeg


@pytest.fixture
def people(db_session):
    from tests import factories

    unit = factories.unit("浦东分局")
    return {
        "editor": factories.staff("ed1", "editor"),
        "reviewer": factories.staff("rv1", "reviewer"),
        "liaison": factories.staff("li1", "liaison", unit=unit),
        "officer": factories.staff("of1", "officer", unit=unit),
        "unit": unit,
    }


def test_workflow_roles_and_versions(people):
    with pytest.raises(ServiceError):
        articles.save_article(people["officer"], title="x", body_html="<p>x</p>")
    a = articles.save_article(people["liaison"], title="占道经营", body_html="<p>案情一</p><script>x</script>")
    assert a.unit_id == people["unit"].id and "<script" not in a.body_html
    with pytest.raises(ServiceError):
        articles.review(people["reviewer"], a.id, approve=True)  # not submitted yet
    articles.submit(people["liaison"], a.id)
    with pytest.raises(ServiceError):
        articles.review(people["liaison"], a.id, approve=True)  # a liaison cannot approve
    with pytest.raises(ServiceError):
        articles.review(people["reviewer"], a.id, approve=False)  # sending back needs a comment
    articles.review(people["reviewer"], a.id, approve=False, comment="补充法条")
    assert a.status is ArticleStatus.DRAFT and a.review_comment == "补充法条"
    articles.save_article(people["liaison"], a.id, title="占道经营", body_html="<p>案情一</p><p>法条二</p>")
    diff = articles.review_diff(a)
    assert [d.text for d in diff if d.kind == "add"] == ["法条二"]
    assert [v.version for v in a.versions] == [1, 2]


def test_title_limit(people):
    with pytest.raises(ServiceError, match="32"):
        articles.save_article(people["editor"], title="长" * 33, body_html="<p>x</p>")


def test_editing_after_approval_needs_approval_again_and_leaves_the_push(people):
    a = approved(people, "已通过")
    push = articles.schedule_push(people["editor"], [a.id], datetime.now(UTC) + timedelta(hours=1), None)
    assert a.status is ArticleStatus.SCHEDULED
    articles.save_article(people["liaison"], a.id, title="已通过", body_html="<p>改了</p>")
    assert a.status is ArticleStatus.DRAFT and a.push_id is None
    assert push.status is PushStatus.CANCELLED
    assert "改了" in "".join(d.text for d in articles.review_diff(a) if d.kind == "add")


def test_a_new_cover_after_approval_needs_approval_again(people):
    a = approved(people, "已通过")
    push = articles.schedule_push(people["editor"], [a.id], datetime.now(UTC) + timedelta(hours=1), None)
    before = a.cover_path
    fields = {"title": a.title, "author": a.author, "body_html": a.body_html}  # the same text, a new cover
    articles.save_article(people["liaison"], a.id, cover=jpeg(), **fields)
    assert a.cover_path != before and a.cover_media_id is None
    assert a.status is ArticleStatus.DRAFT and a.push_id is None and push.status is PushStatus.CANCELLED
    assert a.version == a.approved_version + 1


def test_a_bad_cover_saves_nothing(people):
    a = approved(people, "已通过")
    with pytest.raises(ServiceError):
        articles.save_article(people["liaison"], a.id, title="改了标题", body_html=a.body_html, cover=b"not an image")
    assert a.title == "已通过" and a.status is ArticleStatus.APPROVED


def test_push_holds_at_most_eight(people):
    ids = [approved(people, f"第{i}篇").id for i in range(9)]
    with pytest.raises(ServiceError, match="8"):
        articles.schedule_push(people["editor"], ids, datetime.now(UTC) + timedelta(hours=1), None)
    push = articles.schedule_push(people["editor"], ids[:8], datetime.now(UTC) + timedelta(hours=1), None)
    assert [a.push_index for a in push.articles] == list(range(8))


def test_cover_is_cropped_to_235_and_small(people):
    from io import BytesIO

    from PIL import Image

    data = articles.cover_jpeg(jpeg(3000, 3000))
    assert len(data) <= 64 * 1024
    with Image.open(BytesIO(data)) as img:
        assert abs(img.width / img.height - 2.35) < 0.02
    with Image.open(BytesIO(articles.cover_jpeg(jpeg(900, 383)))) as img:
        assert img.size == (900, 383)  # the library's cover rendition as it is, not a row short


def test_gap_reminders_go_to_the_units_turn_contact_once(people):
    unit = people["unit"]
    unit.post_a = people["liaison"]
    column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    columns.save_column(
        column.id, name=column.name, cadence="daily", publish_time="08:00", feeder_unit_ids=[unit.id], active=True
    )
    today = columns.local_day(datetime.now(UTC))
    assert columns.send_gap_reminders(today) >= 2  # 3 days and 1 day ahead
    assert columns.send_gap_reminders(today) == 0
    requests = columns.requests_for(people["liaison"], today)
    assert {r.day for r in requests} >= {today + timedelta(days=1), today + timedelta(days=3)}


def _publish(emulator, people, title: str, at: datetime, column_id: int | None, *, late: timedelta = timedelta()):
    """An approved article in a push at `at`, published through the emulator; WeChat's result read `late` after."""
    a = approved(people, title, column_id)
    push = articles.schedule_push(people["editor"], [a.id], at, column_id)
    publishing.run_due(push.scheduled_at)
    publishing.poll_submitted(push.scheduled_at + late, after=timedelta())  # the emulator has published it
    assert a.status is ArticleStatus.PUBLISHED
    return push


def test_column_stats_count_on_time_slots(emulator, people):
    daily = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    adhoc = next(c for c in columns.list_columns() if c.name == "专题人物风采")
    day = columns.local_day(datetime.now(UTC)) + timedelta(days=1)  # its 08:00 slot is still ahead
    if (day + timedelta(days=1)).day == 1:
        day += timedelta(days=1)  # two days' slots in one month
    first, second = columns.slot_at(daily, day), columns.slot_at(daily, day + timedelta(days=1))
    tomorrow = day + timedelta(days=1)
    _publish(emulator, people, "准时", first, daily.id, late=timedelta(minutes=2))
    _publish(emulator, people, "晚了", second, daily.id, late=timedelta(minutes=40))
    _publish(emulator, people, "专题", second + timedelta(hours=3), adhoc.id, late=timedelta(minutes=1))
    stats = columns.column_stats(tomorrow.year, tomorrow.month, now=second + timedelta(hours=5))
    assert stats["per_column"] == {daily.id: 2, adhoc.id: 1}
    assert stats["per_unit"] == {people["unit"].id: 3}
    rate = stats["on_time"][daily.id]
    assert (rate["slots"], rate["on_time"]) == (tomorrow.day, 1)  # every daily slot of the month so far
    assert rate["rate"] == round(1 / tomorrow.day, 4)
    assert (stats["on_time"][adhoc.id]["slots"], stats["on_time"][adhoc.id]["rate"]) == (1, 1.0)


def test_published_articles_feed_the_scoreboard_and_the_positive_reports_target(emulator, people):
    from server.services import targets

    at = datetime.now(UTC) + timedelta(minutes=2)
    _publish(emulator, people, "第一篇", at, None)
    _publish(emulator, people, "第二篇", at + timedelta(minutes=1), None)
    own = articles.save_article(people["editor"], title="编辑部稿", body_html="<p>无单位</p>", cover=jpeg())
    articles.submit(people["editor"], own.id)
    articles.review(people["reviewer"], own.id, approve=True)
    push = articles.schedule_push(people["editor"], [own.id], at + timedelta(minutes=2), None)
    publishing.run_due(push.scheduled_at)
    publishing.poll_submitted(push.scheduled_at, after=timedelta())
    submitted_only = articles.save_article(people["liaison"], title="待审", body_html="<p>x</p>")
    articles.submit(people["liaison"], submitted_only.id)
    articles.review(people["reviewer"], submitted_only.id, approve=False, comment="再改改")
    articles.submit(people["liaison"], submitted_only.id)  # submitted twice: one 投稿
    day = columns.local_day(at)
    lo, hi = day - timedelta(days=1), day + timedelta(days=1)  # the test may straddle Beijing midnight
    unit = people["unit"].id
    assert targets.count_by_unit("articles_published", lo, hi) == {unit: 2, None: 1}
    assert targets.count_by_unit("articles_submitted", lo, hi) == {unit: 3, None: 1}
    row = next(r for r in targets.scoreboard(day.year, day.month) if r.unit_id == unit)
    assert (row.values["articles_published"], row.values["articles_submitted"]) == (2, 3)
    weights = targets.get_weights()
    assert row.score == 2 * weights["articles_published"] + 3 * weights["articles_submitted"]
    reports = next(p for p in targets.progress(day.year, as_of=hi) if p.key == "positive_reports")
    assert reports.actual == 3 and reports.target == 500


def test_a_push_into_a_column_that_does_not_exist_is_refused_and_saves_nothing(people):
    # Found by tests/test_form_mutations.py: the foreign key refused it as a 500 (and 2**31 as a database error).
    a = approved(people, "夜查渣土车")
    at = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(ServiceError, match="栏目不存在"):
        articles.schedule_push(people["editor"], [a.id], at, 999_999)
    assert articles.schedule_push(people["editor"], [a.id], at, None).status is PushStatus.SCHEDULED


@pytest.mark.parametrize("weekday", ["²", " ", "1.5", "7", "-1", "x" * 50])
def test_a_column_weekday_that_is_not_a_day_is_refused_in_chinese(people, weekday):
    # Found by tests/test_form_mutations.py: int() of the select's value raised, a 500.
    with pytest.raises(ServiceError, match="周一到周日"):
        columns.save_column(name="每周一法", cadence="weekly", weekday=weekday)
    with pytest.raises(ServiceError, match="报送单位不存在"):
        columns.save_column(name="每周一法", cadence="daily", feeder_unit_ids=["²"])
