"""Library photos in articles: copied among the articles' files, scoped by unit, a cover change like any other, and
marked used (图片采用) once when their article is published."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from models import ArticleStatus, MaterialItem, PushStatus
from server.extensions import db
from server.services import ServiceError, articles, images, materials, publishing, targets
from server.services import staff as staff_service
from server.services.htmlclean import clean_html
from tests import factories
from tests.services.test_materials import noisy_jpeg
from tests.services.test_publishing import approved, last_publish_event


@pytest.fixture
def people(db_session):
    people = factories.newsroom()  # li1 of 浦东分局
    people["officer"] = factories.staff("of1", "officer", unit=people["unit"], name="王队员")
    people["other_unit"] = factories.unit("杨浦分局")
    people["other_officer"] = factories.staff("of2", "officer", unit=people["other_unit"], name="赵队员")
    return people


def photo(officer, seed: int) -> MaterialItem:
    item, _ = materials.upload_photo(officer, noisy_jpeg((1200, 900), seed=seed), client_id=f"lib-client-{seed}")
    db.session.refresh(item)  # derived by the eager task
    return item


def test_a_photo_goes_into_the_body_and_the_cover_from_the_articles_folder(people):
    body_item, cover_item = photo(people["officer"], 1), photo(people["officer"], 2)
    url = articles.store_library_image(people["liaison"], body_item.id)
    assert url.startswith(f"/admin/articles/media/articles/library/{body_item.id}/") and url.endswith(".jpg")
    assert f'src="{url}"' in clean_html(f'<img src="{url}">')  # the cleaner keeps it
    [rendition] = [r for r in body_item.renditions if r.purpose == "article"]
    assert rendition.recipe["watermark"] == "br"  # the default in-article rendition is watermarked
    copied = images.media_path(url.removeprefix("/admin/articles/media/"), under="articles")
    assert copied.read_bytes() == images.media_path(rendition.path).read_bytes()

    article = articles.save_article(
        people["liaison"], title="占道经营", body_html=f'<p>案情</p><img src="{url}">', cover_item_id=cover_item.id
    )
    assert url in article.body_html
    assert article.cover_path.startswith(f"articles/library/{cover_item.id}/cover-{article.id}-")
    cover = images.media_path(article.cover_path, under="articles").read_bytes()
    assert len(cover) <= articles.COVER_MAX_BYTES  # through cover_jpeg, as an uploaded cover
    with Image.open(io.BytesIO(cover)) as img:
        assert abs(img.width / img.height - articles.COVER_RATIO) < 0.02
    assert articles.library_item_ids(article) == sorted([body_item.id, cover_item.id])
    db.session.refresh(body_item)
    assert not body_item.used_in_article  # a draft uses nothing yet: publishing marks


def test_the_same_photo_twice_in_one_body_is_refused(people):
    """Inserted twice from the picker (once more after a reload, say), the photo went out twice in the article."""
    item, other = photo(people["officer"], 11), photo(people["officer"], 12)
    first = articles.store_library_image(people["liaison"], item.id)
    again = articles.store_library_image(people["liaison"], item.id)
    body = f'<p>案情</p><img src="{first}"><p>处理</p><img src="{again}">'
    with pytest.raises(ServiceError, match=f"素材 #{item.id}"):
        articles.save_article(people["liaison"], title="占道经营", body_html=body)
    # A photo in the body may still be the cover; two different photos are two.
    second = articles.store_library_image(people["liaison"], other.id)
    body = f'<p>案情</p><img src="{first}"><img src="{second}">'
    article = articles.save_article(people["liaison"], title="占道经营", body_html=body, cover_item_id=item.id)
    assert articles.library_item_ids(article) == sorted([item.id, other.id])


def test_an_editors_own_rendition_is_preferred(people):
    item = photo(people["officer"], 3)
    [blurred] = materials.render(item.id, [materials.make_recipe("article", blur=[[0, 0, 0.5, 0.5]], watermark="tl")])
    url = articles.store_library_image(people["editor"], item.id)
    data = images.media_path(url.removeprefix("/admin/articles/media/")).read_bytes()
    assert data == images.media_path(blurred.path).read_bytes()


def test_a_cover_from_the_library_needs_approval_again(people):
    article = approved(people, "已通过")
    version = article.version
    item = photo(people["officer"], 4)
    articles.save_article(
        people["liaison"], article.id, title="已通过", body_html=article.body_html, cover_item_id=item.id
    )
    assert article.status is ArticleStatus.DRAFT and article.version == version + 1
    assert article.cover_path.startswith(f"articles/library/{item.id}/") and article.cover_media_id is None


def test_a_liaison_uses_only_their_units_photos(people):
    mine, theirs = photo(people["officer"], 5), photo(people["other_officer"], 6)
    liaison = people["liaison"]
    rows, _ = materials.pickable_page(materials.MaterialFilter(), staff_service.visible_units(liaison))
    assert [r.id for r in rows] == [mine.id]
    rows, _ = materials.pickable_page(materials.MaterialFilter(), staff_service.visible_units(people["editor"]))
    assert [r.id for r in rows] == [theirs.id, mine.id]  # newest first
    with pytest.raises(ServiceError, match="无权使用"):
        articles.store_library_image(liaison, theirs.id)
    with pytest.raises(ServiceError, match="无权使用"):
        articles.save_article(liaison, title="标题", body_html="<p>正文</p>", cover_item_id=theirs.id)
    with pytest.raises(ServiceError):
        articles.store_library_image(people["officer"], mine.id)  # officers do not write articles
    assert articles.store_library_image(people["editor"], theirs.id)


def test_the_picker_pages_newest_first_and_skips_unprocessed_photos(people):
    ready = factories.photo_library(people["officer"], 5, tagged={1, 3})
    pending = MaterialItem(
        key="upload:pending-0", source=ready[0].source, uploader_id=people["officer"].id, unit_id=people["unit"].id
    )
    db.session.add(pending)
    db.session.commit()
    f, units = materials.MaterialFilter(), staff_service.visible_units(people["liaison"])
    first, cursor = materials.pickable_page(f, units, limit=3)
    assert [r.id for r in first] == [r.id for r in ready[::-1][:3]]
    rest, end = materials.pickable_page(f, units, before_id=cursor, limit=3)
    assert [r.id for r in rest] == [ready[1].id, ready[0].id] and end is None
    tagged, _ = materials.pickable_page(materials.MaterialFilter(tag="夜查"), units)
    assert [r.id for r in tagged] == [ready[3].id, ready[1].id]


def test_publishing_marks_the_photos_used_once_and_the_scoreboard_counts_them(emulator, wechat, people):
    used, cover_item, removed = (photo(people["officer"], s) for s in (7, 8, 9))
    other_unit_photo = photo(people["other_officer"], 10)
    url = articles.store_library_image(people["editor"], used.id)
    gone = articles.store_library_image(people["editor"], removed.id)
    theirs = articles.store_library_image(people["editor"], other_unit_photo.id)
    also_cover = articles.store_library_image(people["editor"], cover_item.id)  # in the body and the cover: once
    body = f'<p>案情</p><img src="{url}"><p>处理</p><img src="{theirs}"><img src="{also_cover}">'
    article = articles.save_article(
        people["editor"], title="夜查", body_html=body + f'<img src="{gone}">', cover_item_id=cover_item.id
    )
    articles.save_article(people["editor"], article.id, title="夜查", body_html=body)  # one deleted in the editor
    articles.submit(people["editor"], article.id)
    articles.review(people["reviewer"], article.id, approve=True)
    start = datetime.now(UTC) + timedelta(minutes=5)
    push = articles.schedule_push(people["editor"], [article.id], start, None)
    publishing.run_due(start + timedelta(seconds=30))
    db.session.expire_all()
    assert not db.session.get(MaterialItem, used.id).used_in_article  # submitted, not yet published
    assert wechat.post(last_publish_event(emulator)["xml"]).status_code == 200
    db.session.expire_all()
    assert db.session.get(type(push), push.id).status is PushStatus.PUBLISHED
    for item in (used, cover_item, other_unit_photo):
        row = db.session.get(MaterialItem, item.id)
        assert row.used_in_article and row.article_id == article.id and row.used_at is not None
    assert not db.session.get(MaterialItem, removed.id).used_in_article
    today = datetime.now(UTC).astimezone(materials.LOCAL_TZ).date()
    counts = targets.count_by_unit("photos_used", today, today)
    assert counts == {people["unit"].id: 2.0, people["other_unit"].id: 1.0}  # the photographers' units


def test_a_photo_keeps_its_first_article_and_a_manual_publish_marks_too(people):
    item = photo(people["officer"], 11)
    url = articles.store_library_image(people["editor"], item.id)
    first, second = (
        articles.save_article(people["editor"], title=t, body_html=f'<img src="{url}">', cover_item_id=item.id)
        for t in ("第一篇", "第二篇")
    )
    for article in (first, second):
        articles.submit(people["editor"], article.id)
        articles.review(people["reviewer"], article.id, approve=True)
        push = articles.schedule_push(people["editor"], [article.id], datetime.now(UTC) + timedelta(hours=1), None)
        publishing.mark_published_manually(people["editor"], push.id, ["https://mp.weixin.qq.com/s/x"])
    db.session.refresh(item)
    assert item.used_in_article and item.article_id == first.id
