"""The article editor's material library picker: the JSON list, a photo into the body, a photo as the cover; rights."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models import MaterialItem
from server.extensions import db
from server.services import articles, materials, publishing
from tests import factories
from tests.services.test_images import jpeg_bytes


def _photo(officer, colour: str, caption: str) -> MaterialItem:
    item, _ = materials.upload_photo(
        officer, jpeg_bytes((1200, 800), colour), client_id=f"console-{colour}", caption=caption
    )
    db.session.refresh(item)
    return item


def test_the_picker_lists_a_liaisons_unit_and_puts_a_photo_into_an_article(console, db_session):
    people = factories.newsroom()  # li1 of 浦东分局
    mine = _photo(factories.staff("of1", "officer", unit=people["unit"]), "green", "陆家嘴路口占道")
    theirs = _photo(factories.staff("of2", "officer", unit=factories.unit("杨浦分局")), "blue", "杨浦夜查")
    assert console.login("li1").status_code == 302
    form = console.get("/admin/articles/new").get_data(as_text=True)
    assert 'id="library-open"' in form and 'id="cover-library"' in form and "从素材库选择" in form

    listing = console.get("/admin/articles/library").get_json()
    assert listing["next_before"] is None
    [card] = listing["items"]
    assert card["id"] == mine.id and card["caption"] == "陆家嘴路口占道" and card["unit"] == "浦东分局"
    assert card["date"] and card["used"] is False
    thumb = console.get(card["thumb"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    thumb.close()
    assert console.get("/admin/articles/library?tag=夜查").get_json()["items"] == []

    assert console.post(f"/admin/articles/library/{theirs.id}/body").status_code == 403
    assert console.post("/admin/articles/library/999999/body").status_code == 404
    res = console.post(f"/admin/articles/library/{mine.id}/body")
    url = res.get_json()["url"]
    assert url.startswith(f"/admin/articles/media/articles/library/{mine.id}/")
    image = console.get(url)
    assert image.status_code == 200 and image.get_data()[:2] == b"\xff\xd8"
    image.close()

    res = console.post("/admin/articles/new", {"title": "劝离", "body_html": f'<p>案情</p><img src="{url}">'})
    assert res.status_code == 302
    article_url = res.headers["Location"]
    edit = console.post(
        article_url + "/edit", {"title": "劝离", "body_html": f'<p>案情</p><img src="{url}">', "cover_item": mine.id}
    )
    assert edit.status_code == 302
    detail = console.get(article_url).get_data(as_text=True)
    assert f"/admin/articles/media/articles/library/{mine.id}/cover-" in detail and f'src="{url}"' in detail

    refused = console.post(
        "/admin/articles/new", {"title": "乙", "body_html": "<p>正文</p>", "cover_item": str(theirs.id)}
    )
    assert refused.status_code == 400 and "无权使用" in refused.get_data(as_text=True)
    assert f'id="cover-item" value="{theirs.id}"' in refused.get_data(as_text=True)  # the choice is kept


def test_reviewers_do_not_pick_and_the_library_links_the_article_that_used_a_photo(console, db_session):
    people = factories.newsroom()
    item = _photo(factories.staff("of1", "officer", unit=people["unit"]), "red", "")
    url = articles.store_library_image(people["liaison"], item.id)
    article = articles.save_article(
        people["liaison"], title="夜查", body_html=f'<img src="{url}">', cover_item_id=item.id
    )
    articles.submit(people["liaison"], article.id)
    articles.review(people["reviewer"], article.id, approve=True)
    push = articles.schedule_push(people["editor"], [article.id], datetime.now(UTC) + timedelta(hours=1), None)
    publishing.mark_published_manually(people["editor"], push.id, ["https://mp.weixin.qq.com/s/a"])

    assert console.login("rv1").status_code == 302
    assert console.get("/admin/articles/library").status_code == 403
    assert console.post(f"/admin/articles/library/{item.id}/body").status_code == 403
    page = console.get(f"/admin/materials/{item.id}").get_data(as_text=True)
    assert f'href="/admin/articles/{article.id}">已用于文章 #{article.id}</a>' in page
