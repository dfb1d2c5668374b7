"""Tips in the console: queue and filters, unit scoping (403), actions by role, photos, export, map, settings."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from models import AuditLog, Tip, TipStatus, utcnow
from server.extensions import db
from server.services import images, tips
from tests import factories
from tests.services.test_images import exif_of, jpeg_bytes
from tests.services.test_tips import SHANGHAI, file_tip, offset


@pytest.fixture
def units(db_session):
    return {"pudong": factories.unit("浦东分局"), "xuhui": factories.unit("徐汇分局")}


@pytest.fixture
def staff(units):
    return {
        "editor": factories.staff("editor1", "editor", name="李编辑"),
        "reviewer": factories.staff("reviewer1", "reviewer", name="钱审核"),
        "liaison": factories.staff("liaison1", "liaison", unit=units["pudong"], name="王联络"),
        "other": factories.staff("liaison2", "liaison", unit=units["xuhui"], name="赵联络"),
    }


def login(console, username: str):
    assert console.login(username).status_code == 302
    return console


def test_the_queue_lists_filters_and_highlights_overdue(console, staff):
    fresh = file_tip("o-1", category="违法建筑", address="浦东新区世纪大道 1 号")
    late = file_tip("o-2", category="家禽", address="徐汇区漕溪北路 2 号")
    late.status_changed_at = utcnow() - timedelta(hours=30)
    db.session.commit()
    login(console, "editor1")
    page = console.get("/admin/tips").get_data(as_text=True)
    assert fresh.display_no in page and late.display_no in page and "已超时" in page
    assert 'class="overdue"' in page
    page = console.get("/admin/tips", query_string={"category": "家禽"}).get_data(as_text=True)
    assert late.display_no in page and fresh.display_no not in page
    page = console.get("/admin/tips", query_string={"district": "浦东新区"}).get_data(as_text=True)
    assert fresh.display_no in page and late.display_no not in page
    page = console.get("/admin/tips", query_string={"overdue": "1"}).get_data(as_text=True)
    assert late.display_no in page and fresh.display_no not in page
    lat, lng = SHANGHAI
    box = f"{lat - 0.01},{lng - 0.01},{lat + 0.01},{lng + 0.01}"
    assert fresh.display_no in console.get("/admin/tips", query_string={"bbox": box}).get_data(as_text=True)
    assert "区域格式" in console.get("/admin/tips", query_string={"bbox": "1,2"}).get_data(as_text=True)


def test_a_liaison_sees_only_their_units_tips_and_gets_403_on_others(console, staff, units):
    mine, theirs = file_tip("o-1"), file_tip("o-2")
    tips.transition(mine.id, "dispatch", staff["editor"], unit_id=units["pudong"].id, notify=False)
    tips.transition(theirs.id, "dispatch", staff["editor"], unit_id=units["xuhui"].id, notify=False)
    login(console, "liaison1")
    page = console.get("/admin/tips").get_data(as_text=True)
    assert mine.display_no in page and theirs.display_no not in page
    assert console.get(f"/admin/tips/{mine.id}").status_code == 200
    assert console.get(f"/admin/tips/{theirs.id}").status_code == 403
    photo = db.session.get(Tip, theirs.id).photos[0]
    assert console.client.get(f"/admin/tips/photos/{photo.id}/thumb").status_code == 403
    res = console.post(f"/admin/tips/{theirs.id}/action", {"action": "start"})
    assert res.status_code == 403
    assert console.post("/admin/tips/dispatch", {"tip_id": mine.id, "unit_id": units["pudong"].id}).status_code == 403


def test_the_whole_lifecycle_in_the_console_sends_notices(console, staff, units, emulator):
    emulator.hook("users", {"users": [{"openid": "o-citizen", "subscribe": 1}]})
    tip = file_tip()
    login(console, "editor1")
    res = console.post(f"/admin/tips/{tip.id}/action", {"action": "accept", "note": "已受理"})
    assert res.status_code == 302
    res = console.post(f"/admin/tips/{tip.id}/action", {"action": "dispatch", "unit_id": units["pudong"].id})
    assert res.status_code == 302
    console.post("/admin/logout")
    login(console, "liaison1")
    page = console.get(f"/admin/tips/{tip.id}").get_data(as_text=True)
    assert 'data-action="start"' in page and 'data-action="accept"' not in page
    assert console.post(f"/admin/tips/{tip.id}/action", {"action": "start"}).status_code == 302
    res = console.post(f"/admin/tips/{tip.id}/action", {"action": "resolve", "note": "已清理完毕"})
    assert res.status_code == 302
    assert db.session.get(Tip, tip.id, populate_existing=True).status is TipStatus.RESOLVED
    sent = [t for t in emulator.state()["templates_sent"] if t["touser"] == "o-citizen"]
    assert [t["data"]["phrase2"]["value"] for t in sent] == ["已受理", "已办结"]
    assert sent[0]["url"].endswith(f"/m/tips/{tip.tracking_no}")
    page = console.get(f"/admin/tips/{tip.id}").get_data(as_text=True)
    assert "已发送" in page and "已清理完毕" in page


def test_a_reviewer_reads_but_cannot_act(console, staff):
    tip = file_tip()
    login(console, "reviewer1")
    page = console.get(f"/admin/tips/{tip.id}").get_data(as_text=True)
    assert "审核角色只读" in page
    assert console.post(f"/admin/tips/{tip.id}/action", {"action": "accept"}).status_code == 403


def test_a_refused_action_shows_the_reason(console, staff):
    tip = file_tip()
    login(console, "editor1")
    res = console.post(f"/admin/tips/{tip.id}/action", {"action": "reject", "note": ""})
    assert res.status_code == 400 and "请填写不予受理的原因" in res.get_data(as_text=True)


def test_bulk_dispatch(console, staff, units):
    a, b = file_tip("o-1"), file_tip("o-2")
    login(console, "editor1")
    res = console.post("/admin/tips/dispatch", {"tip_id": [a.id, b.id], "unit_id": units["xuhui"].id})
    assert res.status_code == 302
    for t in (a, b):
        t = db.session.get(Tip, t.id, populate_existing=True)
        assert t.status is TipStatus.DISPATCHED and t.unit_id == units["xuhui"].id


def test_duplicates_are_suggested_and_marked(console, staff):
    original = file_tip("o-1")
    near = offset(100)
    copy = file_tip("o-2", latitude=near[0], longitude=near[1])
    login(console, "editor1")
    page = console.get(f"/admin/tips/{copy.id}").get_data(as_text=True)
    assert f"标记为 {original.display_no} 的重复" in page
    res = console.post(f"/admin/tips/{copy.id}/action", {"action": "duplicate", "duplicate_of": original.tracking_no})
    assert res.status_code == 302
    assert db.session.get(Tip, copy.id, populate_existing=True).duplicate_of_id == original.id


def test_a_refused_action_keeps_what_was_typed_and_names_the_wrong_number(console, staff):
    # A mistyped number came back as 「请填写被重复的线索编号」 with the number and the note gone.
    tip = file_tip()
    login(console, "editor1")
    form = {"action": "duplicate", "duplicate_of": "ABCD-EFGH", "note": "同一摊位，已由浦东分局处理"}
    res = console.post(f"/admin/tips/{tip.id}/action", form)
    page = res.get_data(as_text=True)
    assert res.status_code == 400 and "没有编号为 ABCD-EFGH 的线索" in page
    assert 'value="ABCD-EFGH"' in page and 'value="同一摊位，已由浦东分局处理"' in page
    assert page.count('value="同一摊位，已由浦东分局处理"') == 1  # only in the form that was sent, not in the others
    assert db.session.get(Tip, tip.id, populate_existing=True).status is TipStatus.SUBMITTED


def test_originals_for_admin_editor_reviewer_only_and_audited(console, staff, units):
    tip = file_tip()
    tips.transition(tip.id, "dispatch", staff["editor"], unit_id=units["pudong"].id, notify=False)
    photo = tip.photos[0]
    login(console, "liaison1")
    public = console.client.get(f"/admin/tips/photos/{photo.id}/public")
    assert public.status_code == 200 and not exif_of(public.data).get_ifd(0x8825)
    public.close()
    assert console.client.get(f"/admin/tips/photos/{photo.id}/original").status_code == 403
    console.post("/admin/logout")
    login(console, "reviewer1")
    original = console.client.get(f"/admin/tips/photos/{photo.id}/original")
    assert original.status_code == 200 and exif_of(original.data).get_ifd(0x8825)  # the evidence, untouched
    original.close()
    views = db.session.scalars(sa.select(AuditLog).filter_by(action="tip.photo_original_view")).all()
    assert len(views) == 1 and views[0].kind.value == "pii_view"


def test_redacting_changes_the_public_copy_only(console, staff):
    tip = file_tip()
    photo = tip.photos[0]
    original_before = images.media_path(photo.original_path).read_bytes()
    public_before = images.media_path(photo.public_path).read_bytes()
    login(console, "editor1")
    res = console.post(f"/admin/tips/photos/{photo.id}/redact", {"x": 0, "y": 0, "w": 50, "h": 50})
    assert res.status_code == 302
    db.session.refresh(photo)
    assert photo.redacted and images.media_path(photo.public_path).read_bytes() != public_before
    assert images.media_path(photo.original_path).read_bytes() == original_before
    assert console.post(f"/admin/tips/photos/{photo.id}/redact", {"x": "a"}).status_code == 400
    console.post("/admin/logout")
    login(console, "reviewer1")
    assert console.post(f"/admin/tips/photos/{photo.id}/redact", {"x": 0, "y": 0, "w": 5, "h": 5}).status_code == 403


def test_the_redaction_box_fields_are_labelled(console, staff):
    photo = file_tip().photos[0]
    login(console, "editor1")
    page = console.get(f"/admin/tips/{photo.tip_id}").get_data(as_text=True)
    form = page.split(f'action="/admin/tips/photos/{photo.id}/redact"')[1].split("</form>")[0]
    assert "<legend>遮挡区域（在图上拖动框选，或填写占图片的百分比）</legend>" in form
    for label, name in (("左", "x"), ("上", "y"), ("宽", "w"), ("高", "h")):  # visible, not a clipped placeholder
        assert f'<label>{label} <input type="number" name="{name}"' in form
    assert "placeholder" not in form


def test_export_masks_phones_for_roles_that_may_not_see_them(console, staff):
    file_tip(phone="13912345678", photos=[jpeg_bytes(), jpeg_bytes()])
    file_tip()  # no phone, one photo: the newest, first row
    login(console, "reviewer1")
    res = console.client.get("/admin/tips/export.xlsx")
    assert res.status_code == 200 and res.mimetype.endswith("spreadsheetml.sheet")
    rows = list(load_workbook(io.BytesIO(res.data)).active.iter_rows(values_only=True))
    assert [(r[11], r[12]) for r in rows[1:]] == [(None, 1), ("139****5678", 2)]  # phone, photo count
    console.post("/admin/logout")
    login(console, "editor1")
    rows = list(
        load_workbook(io.BytesIO(console.client.get("/admin/tips/export.xlsx").data)).active.iter_rows(values_only=True)
    )
    assert rows[2][11] == "13912345678"
    exports = db.session.scalars(sa.select(AuditLog).filter_by(action="tip.export")).all()
    assert [e.after["rows"] for e in exports] == [2, 2]  # the rows each file holds


def test_phone_reveal_is_audited(console, staff):
    tip = file_tip(phone="13912345678")
    login(console, "editor1")
    page = console.get(f"/admin/tips/{tip.id}").get_data(as_text=True)
    assert "139****5678" in page and "13912345678" not in page
    page = console.post(f"/admin/tips/{tip.id}/phone").get_data(as_text=True)
    assert "13912345678" in page
    assert db.session.scalars(sa.select(AuditLog).filter_by(action="tip.phone_view")).one().kind.value == "pii_view"


def test_the_map_draws_points_offline_with_a_scale(console, staff):
    file_tip("o-1")
    north = offset(800, 600)
    file_tip("o-2", latitude=north[0], longitude=north[1])
    login(console, "editor1")
    page = console.get("/admin/tips", query_string={"view": "map"}).get_data(as_text=True)
    assert page.count("<circle") == 2 and "比例尺" in page and ("米" in page or "公里" in page)
    assert "http" not in page.split('<svg id="tip-map"')[1].split("</svg>")[0].replace("http://www.w3.org", "")


def test_the_scale_bar_sits_below_every_marker(console, staff):
    file_tip("o-1")  # the south-west corner: drawn bottom left, where the scale bar starts
    north = offset(800, 600)
    file_tip("o-2", latitude=north[0], longitude=north[1])
    login(console, "editor1")
    page = console.get("/admin/tips", query_string={"view": "map"}).get_data(as_text=True)
    svg = page.split('<svg id="tip-map"')[1].split("</svg>")[0]
    plotted = float(re.search(r'<rect width="[\d.]+" height="([\d.]+)"', svg).group(1))
    lowest_marker = max(float(cy) + float(r) for cy, r in re.findall(r'<circle [^>]*cy="([\d.]+)" r="([\d.]+)"', svg))
    bar_top = float(re.search(r'<g transform="translate\([\d.]+ ([\d.]+)\)">', svg).group(1)) - 5  # ticks rise 5
    assert lowest_marker <= plotted < bar_top
    assert float(re.search(r'viewBox="0 0 [\d.]+ ([\d.]+)"', svg).group(1)) > bar_top + 5


def test_settings_categories_sla_and_blocks(console, staff):
    login(console, "editor1")
    assert console.get("/admin/tips/settings").status_code == 200
    assert console.post("/admin/tips/categories", {"name": "共享单车", "sort": "5"}).status_code == 302
    assert "共享单车" in tips.category_names()
    assert console.post("/admin/tips/sla", {"submitted": "0"}).status_code == 400
    sla = {"submitted": "12", "accepted": "24", "dispatched": "48", "in_progress": "96"}
    assert console.post("/admin/tips/sla", sla).status_code == 302
    assert tips.sla_hours()["submitted"] == 12
    assert console.post("/admin/tips/blocks", {"openid": "o-spammer", "reason": "恶意提交"}).status_code == 302
    assert tips.is_blocked("o-spammer")
    console.post("/admin/logout")
    login(console, "liaison1")
    assert console.get("/admin/tips/settings").status_code == 403


def test_dispatching_to_a_unit_nobody_can_be_notified_in_says_so(console, staff, units):
    pudong = units["pudong"]
    staff["liaison"].openid, pudong.post_a_id = "o-liaison-wang", staff["liaison"].id
    db.session.commit()
    login(console, "editor1")
    one, two, three = file_tip("o-d1"), file_tip("o-d2"), file_tip("o-d3")
    page = console.post(
        f"/admin/tips/{one.id}/action", {"action": "dispatch", "unit_id": pudong.id}, follow_redirects=True
    ).get_data(as_text=True)
    assert "已更新为「已派发」" in page and "派发通知无法送达" not in page
    # Before: 已派发 alone, and the notice to a unit with no bound post failed where nobody looked.
    page = console.post(
        f"/admin/tips/{two.id}/action", {"action": "dispatch", "unit_id": units["xuhui"].id}, follow_redirects=True
    ).get_data(as_text=True)
    assert "「徐汇分局」的 A/B 岗都没有绑定微信的在职人员" in page
    res = console.post("/admin/tips/dispatch", {"tip_id": [three.id], "unit_id": units["xuhui"].id})
    assert "派发通知无法送达" in console.get(res.headers["Location"]).get_data(as_text=True)
