"""A liaison writes an article with the unit's photos from the material library: one into the body at the cursor
(the watermarked in-article copy), one as the cover; once published, the library links the photo to the article."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from server.extensions import db
from server.services import articles, materials, publishing
from tests import factories
from tests.browser.conftest import login, shoot
from tests.services.test_images import jpeg_bytes


def test_pick_library_photos_into_the_body_and_as_the_cover(page, live_server):
    pudong = factories.unit("浦东分局")
    liaison = factories.staff("liaison", "liaison", unit=pudong, name="张联络")
    editor = factories.staff("editor", "editor", name="李编辑")
    reviewer = factories.staff("reviewer", "reviewer", name="陈审核")
    officer = factories.staff("officer", "officer", unit=pudong, name="王队员")
    stranger = factories.staff("stranger", "officer", unit=factories.unit("杨浦分局"), name="赵队员")

    def photo(who, colour: str, caption: str, tags: str = ""):
        item, _ = materials.upload_photo(
            who, jpeg_bytes((1600, 1200), colour), client_id=f"browser-{colour}", caption=caption
        )
        db.session.refresh(item)
        if tags:
            materials.edit_item(item, caption=caption, tags=tags)
        return item

    scene = photo(officer, "green", "陆家嘴路口流动摊贩", "占道")
    crowd = photo(officer, "orange", "夜查现场", "夜查")
    photo(stranger, "blue", "杨浦的照片")  # another unit's: not offered to this liaison

    login(page, "liaison", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.goto("/admin/articles/new")
    page.fill("input[name=title]", "占道经营劝离记")
    page.click("#editor")
    page.keyboard.type("案情在前。处理在后。")
    for _ in range(5):
        page.keyboard.press("ArrowLeft")  # the cursor between the two sentences

    page.click("#library-open")
    dialog = page.locator("#library-dialog")
    dialog.locator(".library-card").first.wait_for()
    cards = dialog.locator(".library-card")
    assert cards.count() == 2  # newest first, this unit's only
    assert "夜查现场" in cards.nth(0).inner_text() and "浦东分局" in cards.nth(0).inner_text()
    assert "杨浦的照片" not in dialog.inner_text()
    dialog.locator("input[name=tag]").fill("占道")
    dialog.locator("button:has-text('筛选')").click()
    page.wait_for_function("document.querySelectorAll('#library-grid .library-card').length === 1")
    assert "陆家嘴路口流动摊贩" in cards.first.inner_text()
    shoot(page, "35-article-library-picker")
    cards.first.locator("button:has-text('插入正文')").click()
    page.wait_for_selector(f"#editor img[src^='/admin/articles/media/articles/library/{scene.id}/']")
    # The picker stays open for more photos; the one inserted is marked and cannot go in twice.
    assert dialog.is_visible()
    inserted = dialog.locator(f".library-card[data-id='{scene.id}'] button[data-action=body]")
    assert inserted.inner_text() == "已在正文中" and inserted.is_disabled()
    assert "已插入 1 张" in dialog.locator("#library-inserted").inner_text()
    dialog.locator("input[name=tag]").fill("")
    dialog.locator("button:has-text('筛选')").click()
    page.wait_for_function("document.querySelectorAll('#library-grid .library-card').length === 2")
    assert dialog.locator(f".library-card[data-id='{scene.id}'] button[data-action=body]").is_disabled()
    dialog.locator(f".library-card[data-id='{crowd.id}'] button:has-text('插入正文')").click()
    page.wait_for_selector(f"#editor img[src^='/admin/articles/media/articles/library/{crowd.id}/']")
    assert "已插入 2 张" in dialog.locator("#library-inserted").inner_text()
    dialog.locator("button:has-text('完成')").click()
    assert not dialog.is_visible()
    page.keyboard.type("随后")  # the cursor is back in the editor, after the last photo
    html = page.inner_html("#editor")
    # At the cursor, not appended, in the order picked, each once.
    assert re.search(
        rf"案情在前。<img [^>]*library/{scene.id}/[^>]*><img [^>]*library/{crowd.id}/[^>]*>随后处理在后。", html
    ), html
    assert html.count(f"library/{scene.id}/") == 1 and html.count(f"library/{crowd.id}/") == 1
    assert "陆家嘴路口流动摊贩" not in html  # the officer's caption is not published unseen as the alt text
    page.click("#library-open")  # a later opening does not offer the photos in the body again
    page.wait_for_selector(f"#library-grid .library-card[data-id='{crowd.id}'] button[data-action=body]:disabled")
    in_body = dialog.locator(f".library-card[data-id='{scene.id}'] button[data-action=body]")
    assert in_body.inner_text() == "已在正文中" and in_body.is_disabled()
    assert dialog.locator("#library-inserted").is_hidden()
    page.click("#library-close")

    page.click("#cover-library")
    dialog.locator(f".library-card[data-id='{crowd.id}'] button:has-text('设为封面')").click()
    assert f"素材 #{crowd.id}" in page.inner_text("#cover-picked")
    page.click("#article-form button[type=submit]")
    page.wait_for_selector(".flash.success:has-text('已保存')")
    article_id = int(re.search(r"/admin/articles/(\d+)$", page.url).group(1))
    page.wait_for_function("[...document.querySelectorAll('img')].every(img => img.complete)")  # loaded, under load
    cover = page.locator("img[alt='封面']")
    assert f"/articles/library/{crowd.id}/cover-" in cover.get_attribute("src")
    assert cover.evaluate("img => img.naturalWidth / img.naturalHeight") > 2.3
    body_images = page.locator(".article-body img")
    assert body_images.count() == 2
    assert body_images.first.evaluate("img => img.naturalWidth") == 1080  # the in-article rendition

    # -- reviewed, published (by hand here; the beat job takes the same path), and the library says where it went
    articles.submit(liaison, article_id)
    articles.review(reviewer, article_id, approve=True)
    push = articles.schedule_push(editor, [article_id], datetime.now(UTC) + timedelta(hours=1), None)
    publishing.mark_published_manually(editor, push.id, ["https://mp.weixin.qq.com/s/library"])
    page.goto(f"/admin/materials/{scene.id}")
    page.click(f"#material-use a:has-text('已用于文章 #{article_id}')")
    page.wait_for_url(f"**/admin/articles/{article_id}")
    page.goto("/admin/materials?used=1")
    assert "已用于文章" in page.inner_text(".material-card")
