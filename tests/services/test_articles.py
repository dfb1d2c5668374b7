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


def test_column_stats(emulator, people):
    column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
    a = approved(people, "统计", column.id)
    at = datetime.now(UTC) + timedelta(minutes=2)
    push = articles.schedule_push(people["editor"], [a.id], at, column.id)
    publishing.run_due(push.scheduled_at)
    publishing.record_result(push.publish_id, 0, "aid", ["https://x/s"], now=push.scheduled_at + timedelta(minutes=1))
    day = columns.local_day(push.scheduled_at)
    stats = columns.column_stats(day.year, day.month, now=push.scheduled_at + timedelta(hours=1))
    assert stats["per_column"][column.id] == 1
    assert stats["per_unit"][people["unit"].id] == 1
    assert stats["on_time"][column.id]["on_time"] == 1
