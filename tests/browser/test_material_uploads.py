"""A photo's page follows an upload to WeChat without a reload: 排队中 turns into 失败 with WeChat's reason and 重试,
and after 重试 into 已上传, while the caption being typed stays. The live server has no worker: the test runs each
queued upload as one would, against the emulator."""

from __future__ import annotations

import sqlalchemy as sa

from models import MaterialRendition
from server.extensions import db
from server.tasks.materials import upload_rendition
from tests.browser.helpers import open_officer_photo

ADD_MATERIAL = "cgi-bin/material/add_material"


def _run_queued_upload() -> None:
    db.session.expire_all()
    rendition = db.session.scalars(sa.select(MaterialRendition)).one()
    upload_rendition.apply((rendition.id,))


def test_the_upload_state_settles_in_place_and_a_retry_goes(page, live_server, emulator):
    open_officer_photo(page, (1200, 900), "uploads-browser-1")
    page.click("#process-form button[name=wechat]")
    page.wait_for_selector("text=已提交上传到微信")
    assert page.inner_text("#renditions td.upload").strip() == "排队中"
    assert page.is_visible("#upload-wait")
    page.fill("textarea[name=caption]", "正在写的说明")

    emulator.hook("fail", {"path": ADD_MATERIAL, "errcode": 40009, "errmsg": "invalid image size", "times": 1})
    _run_queued_upload()  # WeChat refuses it
    page.wait_for_selector("#renditions td.upload[data-upload-state=failed]", timeout=15_000)
    assert "40009 图片大小不合法：超出微信的限制" in page.inner_text("#renditions td.upload")
    assert not page.is_visible("#upload-wait")
    assert page.input_value("textarea[name=caption]") == "正在写的说明"  # not reloaded

    page.click("#renditions button:has-text('重试')")
    page.wait_for_selector("text=已重新提交上传到微信")
    assert page.inner_text("#renditions td.upload").strip() == "排队中"
    _run_queued_upload()  # WeChat has recovered
    page.wait_for_selector("#renditions td.upload[data-upload-state=uploaded]", timeout=15_000)
    [uploaded] = emulator.state()["materials"]
    assert uploaded["media_id"] in page.inner_text("#renditions td.upload")
