"""The material library in the console: the feed shows officers' photos with unit, time and place; filters; rights."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import sqlalchemy as sa

from models import AuditLog, MaterialItem, MaterialState, Unit, utcnow
from server.extensions import db
from server.filters import LOCAL_TZ
from server.services import images, materials
from tests import factories
from tests.handlers.test_tips import media as media  # noqa: F401  (a fixture, shared)
from tests.handlers.test_tips import send_image, send_location
from tests.services.test_images import jpeg_bytes


def test_officer_conversation_appears_in_the_feed_and_citizen_photo_does_not(as_admin, wechat, media, db_session):
    officer = factories.staff("qian", "officer", unit=factories.unit("长宁分局"), name="钱七")
    officer.openid = "o-qian"
    db.session.commit()
    before = as_admin.get("/admin/materials/feed.json").get_json()
    assert before["items"] == []
    send_image(wechat, "o-qian", media(jpeg_bytes()))
    send_location(wechat, "o-qian", 31.2, 121.42, "中山公园")
    send_image(wechat, "o-citizen-q", media(jpeg_bytes(colour="blue")))
    feed = as_admin.get("/admin/materials/feed.json?after=0").get_json()
    [card] = feed["items"]
    assert card["unit"] == "长宁分局" and card["uploader"] == "钱七" and card["place"] == "中山公园" and card["time"]
    assert as_admin.get(f"/admin/materials/feed.json?after={feed['last_id']}").get_json()["items"] == []
    page = as_admin.get("/admin/materials").get_data(as_text=True)
    assert "钱七" in page and "material_feed.js" in page
    item = db.session.scalars(sa.select(MaterialItem)).one()
    detail = as_admin.get(f"/admin/materials/{item.id}").get_data(as_text=True)
    assert "31.20000, 121.42000" in detail and "<svg" in detail
    thumb = as_admin.client.get(f"/admin/materials/{item.id}/file/thumb")
    assert thumb.status_code == 200 and thumb.get_data()[:2] == b"\xff\xd8"
    thumb.close()
    res = as_admin.post(
        f"/admin/materials/{item.id}/edit", {"caption": "公园门口", "tags": "占道，夜查", "starred": "1"}
    )
    assert res.status_code == 302
    assert item.tags == ["占道", "夜查"] and item.starred
    assert len(as_admin.get("/admin/materials/feed.json?tag=夜查").get_json()["items"]) == 1
    assert as_admin.get("/admin/materials/feed.json?tag=其他").get_json()["items"] == []
    res = as_admin.post(f"/admin/materials/{item.id}/process", {"purpose": "cover", "watermark": "br", "wechat": "1"})
    assert res.status_code == 302
    db.session.refresh(item)
    [cover] = item.renditions
    assert abs(cover.width / cover.height - 2.35) < 0.1 and cover.sha256
    assert "钱七" in as_admin.get("/admin/materials/stats").get_data(as_text=True)


def test_the_feed_tells_what_became_of_the_photos_shown_as_processing(console, admin, db_session):
    """A chat photo reaches the page while its download runs (处理中); the card stayed so until a reload, even when
    the photo never made it into the library."""
    officer = factories.staff("zhou", "officer", unit=factories.unit("闵行分局"), name="周九")
    ready, refused, waiting = factories.photo_library(officer, 3, set())
    for item in (ready, refused, waiting):
        item.state = MaterialState.PENDING
    db.session.commit()
    console.login("admin1")
    feed = console.get("/admin/materials/feed.json?after=0").get_json()
    assert [c["state"] for c in feed["items"]] == ["处理中"] * 3
    ready.state, ready.thumb_path, ready.caption = MaterialState.READY, "materials/ab/ready.thumb.jpg", "公园门口"
    refused.state, refused.error = MaterialState.FAILED, images.NOT_AN_IMAGE
    db.session.commit()
    pending = ",".join(str(i.id) for i in (ready, refused, waiting))
    feed = console.get(f"/admin/materials/feed.json?after={feed['last_id']}&pending={pending}").get_json()
    assert feed["items"] == []
    [card] = feed["ready"]
    assert (card["id"], card["state"], card["caption"]) == (ready.id, "可用", "公园门口") and card["thumb"]
    assert feed["gone"] == [refused.id]  # the one still downloading stays as it is
    elsewhere = factories.unit("奉贤分局")  # another unit's photos are not told of
    assert materials.settled([ready.id, refused.id, waiting.id], [elsewhere.id]) == ([], [])


def test_a_liaison_sees_only_their_unit(console, wechat, media, db_session):
    mine, other = factories.unit("虹口分局"), factories.unit("杨浦分局")
    officer = factories.staff("sun", "officer", unit=other, name="孙八")
    officer.openid = "o-sun"
    factories.staff("liaison1", "liaison", unit=mine)
    db.session.commit()
    send_image(wechat, "o-sun", media(jpeg_bytes()))
    item = db.session.scalars(sa.select(MaterialItem)).one()
    factories.staff("lijiu", "officer", unit=mine, name="李九")  # no photo yet: nothing to filter by
    console.login("liaison1")
    assert console.get("/admin/materials/feed.json").get_json()["items"] == []
    officers = re.search(
        r'<select name="officer".*?</select>', console.get("/admin/materials").get_data(as_text=True), re.S
    )
    assert "孙八" not in officers.group(0) and "李九" not in officers.group(0)  # another unit's officer is not theirs
    assert console.get(f"/admin/materials/{item.id}").status_code == 403


def test_a_photo_is_deleted_with_its_files_and_a_reason_and_its_group_goes_on(as_admin, db_session):
    officer = factories.staff("zhou", "officer", unit=factories.unit("静安分局"), name="周九")
    colleague = factories.staff("zheng", "officer", unit=officer.unit, name="郑一")
    photo = jpeg_bytes((1600, 1200))
    first, _ = materials.upload_photo(officer, photo, client_id="delete-client-1")
    second, _ = materials.upload_photo(officer, jpeg_bytes((640, 480), colour="darkred"), client_id="delete-client-2")
    same, _ = materials.upload_photo(
        colleague, photo, client_id="delete-client-3"
    )  # the same picture, by another officer
    third, _ = materials.upload_photo(officer, jpeg_bytes((640, 480), colour="navy"), client_id="delete-client-4")
    for item in (first, second, same, third):
        db.session.refresh(item)  # derived by the eager task in its own session
    second.group_id = third.group_id = first.id  # near-duplicates of the first
    second.scene_id = third.scene_id = first.id
    db.session.commit()
    assert as_admin.post(f"/admin/materials/{first.id}/process", {"purpose": "cover"}).status_code == 302
    db.session.refresh(first)
    files = [first.original_path, first.public_path, first.thumb_path, first.renditions[0].path]
    assert all(images.media_path(f).is_file() for f in files)

    refused = as_admin.post(f"/admin/materials/{first.id}/delete", {"reason": " "})
    assert refused.status_code == 400 and "请填写删除原因" in refused.get_data(as_text=True)
    res = as_admin.post(f"/admin/materials/{first.id}/delete", {"reason": "队员误发的私人照片"})
    assert res.status_code == 302
    assert "已删除照片 #" in as_admin.get(res.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(MaterialItem, first.id) is None
    # Its own files are gone; the picture's files the other officer's copy shares stay.
    assert not images.media_path(files[3]).exists()
    assert all(images.media_path(f).is_file() for f in files[:3])
    assert {
        (i.group_id, i.scene_id)
        for i in (db.session.get(MaterialItem, second.id), db.session.get(MaterialItem, third.id))
    } == {(second.id, second.id)}
    [entry] = db.session.scalars(sa.select(AuditLog).filter_by(action="material.delete"))
    assert entry.after == {"reason": "队员误发的私人照片"} and entry.before["uploader"] == "周九"
    again = as_admin.post(f"/admin/materials/{first.id}/delete", {"reason": "队员误发的私人照片"})  # a double click
    assert again.status_code == 302 and "已被删除" in as_admin.get(again.headers["Location"]).get_data(as_text=True)
    # The last holder of the picture deleted: its files go too.
    assert as_admin.post(f"/admin/materials/{same.id}/delete", {"reason": "同一张误发照片"}).status_code == 302
    assert not any(images.media_path(f).exists() for f in files[:3])


def test_a_reviewer_reads_the_library_but_changes_nothing(console, db_session):
    officer = factories.staff("wushi", "officer", unit=factories.unit("徐汇分局"), name="吴十")
    item, _ = materials.upload_photo(officer, jpeg_bytes((320, 240)), client_id="rv-client")
    factories.staff("rv1", "reviewer")
    console.login("rv1")
    assert console.get(f"/admin/materials/{item.id}").status_code == 200
    assert console.post(f"/admin/materials/{item.id}/edit", {"caption": "审核改了"}).status_code == 403
    assert console.post(f"/admin/materials/{item.id}/process", {"watermark": "x"}).status_code == 403
    assert console.post("/admin/materials/star", {"item_id": str(item.id), "starred": "1"}).status_code == 403
    assert console.post(f"/admin/materials/{item.id}/delete", {"reason": "审核删了"}).status_code == 403
    db.session.refresh(item)
    assert item.caption != "审核改了" and not item.starred


def test_caption_tag_star_and_process_edits_are_audited_with_chinese_labels(as_admin, db_session):
    officer = factories.staff("zhou", "officer", unit=factories.unit("静安分局"), name="周九")
    a, _ = materials.upload_photo(officer, jpeg_bytes((320, 240)), client_id="audit-client-a")
    b, _ = materials.upload_photo(officer, jpeg_bytes((320, 240), colour="blue"), client_id="audit-client-b")
    for item in (a, b):
        db.session.refresh(item)  # derived by the eager task in its own session
    edit = {"caption": "夜查 占道经营", "tags": "占道，夜查", "address": "", "starred": "1"}
    assert as_admin.post(f"/admin/materials/{a.id}/edit", edit).status_code == 302
    assert as_admin.post(f"/admin/materials/{a.id}/edit", edit).status_code == 302  # the same again: nothing new
    res = as_admin.post("/admin/materials/star", {"item_id": [str(a.id), str(b.id)], "starred": "1"})
    assert res.status_code == 302  # a selection: only b changes
    unstar = {"caption": "", "tags": "", "starred": "0"}
    assert as_admin.post(f"/admin/materials/{b.id}/edit", unstar).status_code == 302
    assert as_admin.post(f"/admin/materials/{a.id}/process", {"purpose": "thumb"}).status_code == 302
    form = {"purpose": "cover", "watermark": "br", "opacity": "0.8", "wechat": "1"}
    assert as_admin.post(f"/admin/materials/{a.id}/process", form).status_code == 302
    assert as_admin.post(f"/admin/materials/{a.id}/process", {"purpose": "poster"}).status_code == 302  # refused

    rows = db.session.scalars(sa.select(AuditLog).where(AuditLog.action.like("material.%")).order_by(AuditLog.id))
    entries = list(rows)
    assert [(e.action, e.target_type, e.target_id) for e in entries] == [
        ("material.edit", "material_item", str(a.id)),
        ("material.star", "material_item", str(a.id)),
        ("material.star", "material_item", str(b.id)),
        ("material.unstar", "material_item", str(b.id)),
        ("material.process", "material_item", str(a.id)),
        ("material.upload", "material_item", str(a.id)),
    ]
    assert {e.staff_name for e in entries} == {"管理员甲"}
    assert entries[0].before == {"caption": None, "tags": []}
    assert entries[0].after == {"caption": "夜查 占道经营", "tags": ["占道", "夜查"]}
    assert entries[2].note == "批量选择 2 张" and entries[2].after == {"starred": True}
    assert entries[4].after["purpose"] == "thumb"
    assert entries[5].after["purpose"] == "cover" and entries[5].after["watermark"] == "br"

    page = as_admin.get("/admin/audit?action=material.").get_data(as_text=True)
    for action, label in (
        ("material.edit", "修改素材说明、标签或地址"),
        ("material.star", "素材加星标"),
        ("material.unstar", "素材取消星标"),
        ("material.process", "加工素材"),
        ("material.upload", "加工素材并上传到微信"),
    ):
        assert f'{label} <code class="hint">{action}</code>' in page
    assert "夜查 占道经营" in page  # the before/after shown


def _cards(page: str) -> int:
    return page.count('class="material-card"')


def test_tag_filter_and_paging_over_more_photos_than_a_page(as_admin, db_session):
    officer = factories.staff("wushi", "officer", unit=factories.unit("普陀分局"), name="吴十")
    total = materials.PAGE_SIZE + 30
    items = factories.photo_library(officer, total, tagged=set(range(0, total, 2)))  # the oldest beyond a page

    tagged = as_admin.get("/admin/materials?tag=夜查").get_data(as_text=True)
    assert _cards(tagged) == total // 2 and "更早的照片" not in tagged  # all of them, on one page

    first = as_admin.get("/admin/materials").get_data(as_text=True)
    assert _cards(first) == materials.PAGE_SIZE and "data-feed-url" in first
    [older] = re.findall(r'href="([^"]*before=[^"]*)"', first)
    second = as_admin.get(html.unescape(older)).get_data(as_text=True)
    assert _cards(second) == 30 and "更早的照片" not in second and "最新照片" in second
    assert "data-feed-url" not in second  # an older page is not live
    assert f'data-id="{items[0].id}"' in second and f'data-id="{items[0].id}"' not in first

    cursor = items[9].id  # a console that fell behind: the feed catches up in order, 50 at a time
    feed = as_admin.get(f"/admin/materials/feed.json?tag=夜查&after={cursor}").get_json()
    assert [c["id"] for c in feed["items"]] == [i.id for i in items[10:110:2]][::-1]
    assert feed["last_id"] == items[108].id


def test_an_empty_library_says_so_across_the_whole_grid(as_admin, db_session):
    page = as_admin.get("/admin/materials").get_data(as_text=True)
    assert '<div class="card empty" id="material-empty"><strong>还没有照片</strong>' in page
    assert ".material-grid > .empty { grid-column:1 / -1; }" in page  # not squeezed into the first 180px cell
    filtered = as_admin.get("/admin/materials?starred=1").get_data(as_text=True)
    assert '<div class="card empty" id="material-empty"><strong>没有符合条件的照片</strong>' in filtered


def test_a_save_from_a_page_someone_else_has_changed_since_is_refused(as_admin, db_session):
    officer = factories.staff("zhengs", "officer", unit=factories.unit("闵行分局"), name="郑十一")
    item, _ = materials.upload_photo(officer, jpeg_bytes((320, 240)), client_id="stale-client")
    page = as_admin.get(f"/admin/materials/{item.id}").get_data(as_text=True)
    base = re.search(r'name="base" value="([0-9a-f]+)"', page).group(1)
    first = {"caption": "甲写的", "tags": "占道", "base": base}
    assert as_admin.post(f"/admin/materials/{item.id}/edit", first).status_code == 302
    second = {"caption": "乙写的", "tags": "夜查", "base": base}  # the same page, opened before the first save
    res = as_admin.post(f"/admin/materials/{item.id}/edit", second)
    assert res.status_code == 409
    page = res.get_data(as_text=True)
    assert "刚被他人修改" in page
    db.session.refresh(item)
    assert (item.caption, item.tags) == ("甲写的", ["占道"])
    # What 乙 typed is still in the form (it was thrown away), beside what 甲 saved; saved again, it is kept.
    assert ">乙写的</textarea>" in page and 'value="夜查"' in page and "甲写的" in page
    again = {**second, "base": re.search(r'name="base" value="([0-9a-f]+)"', page).group(1)}
    assert as_admin.post(f"/admin/materials/{item.id}/edit", again).status_code == 302
    db.session.refresh(item)
    assert (item.caption, item.tags) == ("乙写的", ["夜查"])


def test_a_double_click_on_save_is_not_taken_for_someone_elses_change(as_admin, db_session):
    """Both clicks' requests arrive; the second found the photo changed (by the first) and said 刚被他人修改."""
    officer = factories.staff("zhengs", "officer", unit=factories.unit("闵行分局"), name="郑十一")
    item, _ = materials.upload_photo(officer, jpeg_bytes((320, 240)), client_id="double-client")
    page = as_admin.get(f"/admin/materials/{item.id}").get_data(as_text=True)
    base = re.search(r'name="base" value="([0-9a-f]+)"', page).group(1)
    form = {"caption": "占道经营，已劝离", "tags": "占道", "address": "世纪大道", "base": base}
    assert as_admin.post(f"/admin/materials/{item.id}/edit", form).status_code == 302
    assert as_admin.post(f"/admin/materials/{item.id}/edit", form).status_code == 302
    edits = db.session.scalars(sa.select(AuditLog).filter_by(action="material.edit")).all()
    assert len(edits) == 1


def test_photos_that_did_not_make_it_are_listed_with_why_for_their_unit_only(console, wechat, media, db_session):
    mine, other = factories.unit("闵行分局"), factories.unit("奉贤分局")
    officer = factories.staff("zhou", "officer", unit=mine, name="周九")
    officer.openid = "o-zhou"
    factories.staff("liaison-mine", "liaison", unit=mine)
    factories.staff("liaison-other", "liaison", unit=other)
    db.session.commit()
    send_image(wechat, "o-zhou", media(jpeg_bytes()))
    send_image(wechat, "o-zhou", media(b"%PDF-1.4 not a photo"))
    send_image(wechat, "o-zhou", media(jpeg_bytes()))  # the same photo again: it is in the library, not lost
    kept, refused, copy = db.session.scalars(sa.select(MaterialItem).order_by(MaterialItem.id)).all()
    assert refused.state is MaterialState.FAILED and refused.error
    assert copy.state is MaterialState.FAILED and copy.error.startswith(materials.COPY_OF)

    console.login("liaison-mine")
    page = console.get("/admin/materials").get_data(as_text=True)
    assert "近 7 天有 1 张照片未能存入素材库" in page
    listed = page[page.index('id="material-failures"') : page.index('id="material-grid"')]
    assert "周九" in listed and "闵行分局" in listed and html.escape(refused.error) in listed
    assert f'data-id="{kept.id}"' in page and f'data-id="{refused.id}"' not in page
    # A date filter shows the refusals of those days; another page of the library does not repeat them.
    day = refused.received_at.astimezone(LOCAL_TZ).date()
    earlier = (day - timedelta(days=1)).isoformat()
    assert "所选日期内有 1 张" in console.get(f"/admin/materials?from={day}&to={day}").get_data(as_text=True)
    assert "material-failures" not in console.get(f"/admin/materials?to={earlier}").get_data(as_text=True)
    assert "material-failures" not in console.get(f"/admin/materials?before={kept.id + 1}").get_data(as_text=True)

    console.post("/admin/logout")
    assert console.login("liaison-other").status_code == 302
    assert "material-failures" not in console.get("/admin/materials").get_data(as_text=True)


def test_the_photos_not_saved_say_whether_the_officer_was_told_in_wechat(as_admin, wechat, media, emulator, db_session):
    from server.services import lost_photos

    officer = factories.staff("sun", "officer", unit=factories.unit("杨浦分局"), name="孙八")
    officer.openid = "o-sun"
    db.session.commit()
    emulator.hook("users", {"openids": ["o-sun"]})
    send_image(wechat, "o-sun", media(b"%PDF-1.4 not a photo"))
    send_image(wechat, "o-sun", media(b"GIF89a broken"))

    def told() -> list[str]:
        page = as_admin.get("/admin/materials").get_data(as_text=True)
        listed = page[page.index('id="material-failures"') : page.index('id="material-grid"')]
        return re.findall(r"<td>([^<]*)</td></tr>", listed)

    assert told() == ["待告知", "待告知"]  # the officer may still send a caption, whose reply tells them
    emulator.hook("interaction", {"openid": "o-sun", "at": emulator.state()["now"] - 49 * 3600})
    assert lost_photos.tell_officers(utcnow() + materials.PAIR_WINDOW + timedelta(seconds=1)) == 1
    [error] = {
        e.after["error"] for e in db.session.scalars(sa.select(AuditLog).filter_by(action="material.lost_notice"))
    }
    assert error.startswith("45015 ") and told() == [html.escape(f"未能告知：{error}")] * 2


# -- uploads to WeChat -----------------------------------------------------------------------------------------------

ADD_MATERIAL = "cgi-bin/material/add_material"
UPLOAD_FORM = {"purpose": "cover", "watermark": "br", "wechat": "1"}


def _photo(client_id: str, unit: Unit | None = None) -> MaterialItem:
    officer = factories.staff(f"off-{client_id}", "officer", unit=unit or factories.unit("浦东分局"), name="王队员")
    item, _ = materials.upload_photo(officer, jpeg_bytes((640, 480)), client_id=client_id)
    db.session.refresh(item)  # derived by the eager task in its own session
    return item


def _upload_cell(page: str) -> str:
    found = re.search(r'<td class="upload"[^>]*>(.*?)</td>', page, re.S)
    assert found, "no upload cell on the page"
    return found.group(1)


def test_an_upload_wechat_refuses_reads_failed_with_why_and_its_retry_goes_once_wechat_recovers(
    as_admin, emulator, db_session
):
    item = _photo("wx-refused")
    emulator.hook("fail", {"path": ADD_MATERIAL, "errcode": 40009, "errmsg": "invalid image size", "times": 1})
    res = as_admin.post(f"/admin/materials/{item.id}/process", UPLOAD_FORM, follow_redirects=True)
    page = res.get_data(as_text=True)
    assert "已提交上传到微信，上传结果见下方加工版本列表" in page
    db.session.refresh(item)
    [rendition] = item.renditions
    cell = _upload_cell(page)
    assert "失败" in cell and "40009 图片大小不合法：超出微信的限制" in cell  # at once: a refusal is not retried
    retry = f"/admin/materials/{item.id}/renditions/{rendition.id}/retry"
    assert f'action="{retry}"' in cell and "重试" in cell
    assert sum(c["path"] == ADD_MATERIAL for c in emulator.state()["calls"]) == 1

    page = as_admin.post(retry, follow_redirects=True).get_data(as_text=True)  # WeChat takes it now
    assert "已重新提交上传到微信" in page
    [uploaded] = emulator.state()["materials"]
    cell = _upload_cell(page)
    assert "已上传" in cell and uploaded["media_id"] in cell and "重试" not in cell and "40009" not in cell

    entries = db.session.scalars(
        sa.select(AuditLog).where(AuditLog.action.like("material.upload%")).order_by(AuditLog.id)
    ).all()
    assert [e.action for e in entries] == ["material.upload", "material.upload_retry"]
    assert entries[1].before == {"upload_state": "failed", "error": "40009 图片大小不合法：超出微信的限制"}
    assert entries[1].after == {"rendition_id": rendition.id, "purpose": "cover"}
    assert '重试上传到微信 <code class="hint">material.upload_retry</code>' in as_admin.get(
        "/admin/audit?action=material."
    ).get_data(as_text=True)


def test_a_double_click_on_retry_queues_one_upload(as_admin, emulator, db_session, request):
    item = _photo("wx-double")
    broker = request.getfixturevalue("broker")  # tasks queued from now on, not run
    emulator.hook("fail", {"path": ADD_MATERIAL, "errcode": 45009, "times": 1})
    assert as_admin.post(f"/admin/materials/{item.id}/process", UPLOAD_FORM).status_code == 302
    db.session.refresh(item)
    [rendition] = item.renditions
    [(task, args)] = broker()
    assert args == f"({rendition.id},)"
    page = as_admin.get(f"/admin/materials/{item.id}").get_data(as_text=True)
    assert "排队中" in _upload_cell(page) and 'id="upload-wait"' in page  # the page says a reload will tell
    celery_app = as_admin.client.application.extensions["celery"]
    celery_app.tasks[task].apply((rendition.id,))  # a worker runs it: the day's quota is spent
    db.session.expire_all()  # the page is read through the test's session (a request of its own would not hold it)
    page = as_admin.get(f"/admin/materials/{item.id}").get_data(as_text=True)
    assert "45009 今天调用微信接口的次数已用完，请明天再试" in _upload_cell(page) and 'id="upload-wait"' not in page

    retry = f"/admin/materials/{item.id}/renditions/{rendition.id}/retry"
    assert as_admin.post(retry).status_code == 302
    second = as_admin.post(retry, follow_redirects=True).get_data(as_text=True)
    assert "这个版本已在上传队列中，无需重复提交" in second
    assert "排队中" in _upload_cell(second) and "重试" not in _upload_cell(second)
    assert len(broker()) == 2  # the first request's and one retry
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditLog.action == "material.upload_retry")) == 1


def test_only_curators_of_the_photos_unit_may_retry_an_upload(console, emulator, db_session):
    item = _photo("wx-rights")
    other = _photo("wx-rights-other", unit=factories.unit("黄浦分局"))
    emulator.hook("fail", {"path": ADD_MATERIAL, "errcode": 40009, "times": 1})
    rendition, _ = materials.request_upload(item.id, materials.make_recipe("cover"))
    db.session.refresh(rendition)
    assert rendition.upload_state.value == "failed"
    retry = f"/admin/materials/{item.id}/renditions/{rendition.id}/retry"
    wrong_item = f"/admin/materials/{other.id}/renditions/{rendition.id}/retry"
    factories.staff("officer-r", "officer", unit=item.unit)
    factories.staff("reviewer-r", "reviewer")
    factories.staff("liaison-r", "liaison", unit=other.unit)
    factories.staff("liaison-own", "liaison", unit=item.unit)

    def as_(who: str) -> None:
        console.post("/admin/logout")
        assert console.login(who).status_code == 302

    for who in ("officer-r", "reviewer-r", "liaison-r"):
        as_(who)
        assert console.post(retry).status_code == 403, who
    as_("reviewer-r")
    page = console.get(f"/admin/materials/{item.id}").get_data(as_text=True)
    assert "40009" in _upload_cell(page) and "/retry" not in page  # reviewers read why, and get no button
    as_("liaison-own")
    assert console.post(wrong_item).status_code == 403  # the other unit's photo
    assert "/retry" in console.get(f"/admin/materials/{item.id}").get_data(as_text=True)
    db.session.refresh(rendition)
    assert rendition.upload_state.value == "failed" and emulator.state()["materials"] == []
    assert (
        console.post(wrong_item.replace(str(other.id), str(_photo("wx-rights-same", unit=item.unit).id))).status_code
        == 404
    )
    assert console.post(retry).status_code == 302  # the photo's own unit's liaison may
    db.session.refresh(rendition)
    assert rendition.upload_state.value == "uploaded"
