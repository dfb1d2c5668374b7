"""The material library's live page: a photo shown as 处理中 becomes the photo once processed, or leaves the grid when
it was refused (it is among those not saved), without a reload."""

from __future__ import annotations

from models import MaterialState
from server.extensions import db
from server.services import images, materials
from tests import factories
from tests.browser.conftest import login
from tests.services.test_images import jpeg_bytes


def test_cards_still_processing_settle_without_a_reload(page, live_server):
    officer = factories.staff("officer", "officer", unit=factories.unit("浦东分局"), name="王队员")
    factories.staff("editor", "editor", name="李编辑")
    done, _ = materials.upload_photo(officer, jpeg_bytes((800, 600), "green"), client_id="feed-done-photo")
    db.session.refresh(done)  # processed by the (eager) task
    ready, refused = factories.photo_library(officer, 2, set())
    for item in (ready, refused):  # their downloads are under way
        item.state = MaterialState.PENDING
    db.session.commit()

    login(page, "editor", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.goto("/admin/materials")
    assert page.locator(f".material-card[data-id='{ready.id}'] .pending").inner_text() == "处理中"
    ready.state, ready.thumb_path, ready.caption = MaterialState.READY, done.thumb_path, "陆家嘴路口流动摊贩"
    refused.state, refused.error = MaterialState.FAILED, images.NOT_AN_IMAGE
    db.session.commit()
    page.wait_for_selector(f".material-card[data-id='{ready.id}'] img", timeout=15_000)
    assert "陆家嘴路口流动摊贩" in page.inner_text(f".material-card[data-id='{ready.id}']")
    page.wait_for_selector(f".material-card[data-id='{refused.id}']", state="detached", timeout=15_000)
    assert page.locator(".material-card").count() == 2
