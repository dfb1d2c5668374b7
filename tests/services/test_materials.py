"""Materials: renditions fit WeChat's limits and ratios, carry no EXIF and the watermark; uploads are reused."""

from __future__ import annotations

import io
import random
from datetime import timedelta

import pytest
import sqlalchemy as sa
from PIL import Image, ImageOps

from models import MaterialItem, MaterialSource, MaterialState, utcnow
from server.extensions import db
from server.filters import LOCAL_TZ
from server.services import images, materials
from tests import factories
from tests.services.test_images import exif_of, phone_jpeg


def noisy_jpeg(size=(1600, 1200), *, orientation: int | None = None, seed: int = 1) -> bytes:
    """Detailed content (hard to compress), optionally with an EXIF orientation and GPS."""
    rnd = random.Random(seed)
    image = Image.frombytes("RGB", size, rnd.randbytes(size[0] * size[1] * 3))
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif.get_ifd(0x8825).update({1: "N", 2: (31.0, 14.0, 0.0)})
    if orientation:
        exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, exif=exif)
    return out.getvalue()


@pytest.fixture
def officer(db_session):
    person = factories.staff("zhao", "officer", unit=factories.unit("徐汇分局"), name="赵六")
    person.openid = "o-zhao"
    db.session.commit()
    return person


def _item(officer, data: bytes, cid: str = "svc-client-1") -> MaterialItem:
    item, _ = materials.upload_photo(officer, data, client_id=cid)
    db.session.refresh(item)
    return item


def test_renditions_fit_limits_ratios_and_lose_exif(officer):
    item = _item(officer, noisy_jpeg())
    recipes = [materials.default_recipe(p) for p in ("cover", "thumb", "article", "image")]
    cover, thumb, article, image = materials.render(item.id, recipes)
    for r, limit in ((cover, 10 << 20), (thumb, 64 << 10), (article, 1 << 20), (image, 10 << 20)):
        data = images.media_path(r.path).read_bytes()
        assert len(data) == r.size <= limit
        assert not exif_of(data)  # no EXIF block at all: no GPS, no camera
    assert abs(cover.width / cover.height - 2.35) < 0.01 and cover.width == 900
    assert thumb.width == thumb.height == 300
    assert max(article.width, article.height) <= 1080
    assert materials.render(item.id, recipes[:1])[0].id == cover.id  # cached by (item, recipe)


def test_a_48_mp_phone_photo_is_kept_and_rendered(officer):
    item = _item(officer, phone_jpeg(orientation=6))
    assert item.state is MaterialState.READY and (item.width, item.height) == (6000, 8000)
    recipes = [materials.default_recipe(p) for p in ("cover", "image")]
    recipes.append(materials.Recipe(purpose="image", crop=(0.0, 0.0, 0.1, 0.1)))  # a close crop: what the decode has
    cover, image, close = materials.render(item.id, recipes)
    assert (cover.width, cover.height) == (900, 383) and (image.width, image.height) == (1440, 1920)
    assert (close.width, close.height) == (600, 800)  # a tenth of each side of the upright picture


def test_orientation_is_applied_after_the_shrink(officer):
    item = _item(officer, noisy_jpeg((1600, 1200), orientation=6))
    [r] = materials.render(item.id, [materials.make_recipe("article")])
    assert r.height > r.width  # rotated upright: portrait


def test_watermark_and_blur_change_the_pixels(officer):
    item = _item(officer, _flat_jpeg())
    plain, marked = materials.render(
        item.id, [materials.make_recipe("article"), materials.make_recipe("article", watermark="br", opacity=1)]
    )
    a = Image.open(io.BytesIO(images.media_path(plain.path).read_bytes()))
    b = Image.open(io.BytesIO(images.media_path(marked.path).read_bytes()))
    corner = (int(a.width * 0.6), int(a.height * 0.85), a.width - 5, a.height - 5)
    diff = sum(abs(x - y) for x, y in zip(a.crop(corner).tobytes(), b.crop(corner).tobytes(), strict=True))
    assert diff > 10_000  # the text is there
    assert materials._font(20)[1] is True  # the CJK font on this machine
    [blurred] = materials.render(item.id, [materials.make_recipe("article", blur=[[0, 0, 0.5, 0.5]])])
    c = Image.open(io.BytesIO(images.media_path(blurred.path).read_bytes())).convert("L")
    region = c.crop((0, 0, c.width // 2, c.height // 2))
    original = a.convert("L").crop((0, 0, a.width // 2, a.height // 2))
    assert len(set(region.tobytes())) < len(set(original.tobytes()))


def _flat_jpeg() -> bytes:
    image = Image.new("RGB", (1600, 1200), (40, 90, 160))
    for x in range(0, 1600, 8):
        for y in range(0, 1200, 2):
            image.putpixel((x, y), (250, 250, 250))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_thumb_quality_iterates_down_to_64_kb(monkeypatch):
    encodes = []
    real = materials._jpeg_at
    monkeypatch.setattr(materials, "_jpeg_at", lambda image, q, **kw: encodes.append(q) or real(image, q, **kw))
    noisy = Image.frombytes("RGB", (300, 300), random.Random(3).randbytes(300 * 300 * 3))
    data = materials.encode_within(noisy, 64 << 10)
    assert len(data) <= 64 << 10
    assert len(encodes) <= 14  # a bisection per size tried, not a walk through every quality
    encodes.clear()
    smooth = noisy.resize((30, 30)).resize((300, 300))
    assert len(materials.encode_within(smooth, 64 << 10)) <= 64 << 10 and encodes == [88]  # fits at once
    at_60 = real(noisy, 60, optimize=True)
    assert materials.encode_within(noisy, len(at_60)) == at_60  # the highest quality that fits, not a step below


def test_wechat_upload_is_reused_for_the_same_processed_bytes(officer, emulator):
    item = _item(officer, noisy_jpeg(seed=5))
    media_id = materials.wechat_image(item.id, "cover")
    url = materials.wechat_image(item.id, "article")
    thumb = materials.wechat_image(item.id, "thumb")
    assert media_id and thumb and url.startswith("http")
    assert materials.wechat_image(item.id, "cover") == media_id
    uploaded = [m["media_id"] for m in emulator.state()["materials"]]
    assert media_id in uploaded and thumb in uploaded
    assert len(uploaded) == 2  # the second cover request reused the first upload


def test_near_duplicates_share_a_group_and_mark_used(officer):
    base = Image.frombytes("RGB", (64, 48), random.Random(9).randbytes(64 * 48 * 3)).resize((640, 480))
    shots = []
    for i in range(3):
        out = io.BytesIO()
        base.save(out, "JPEG", quality=90 - i * 5)  # the same scene, slightly different bytes
        shots.append(out.getvalue())
    items = [_item(officer, data, f"dup-client-{i}") for i, data in enumerate(shots)]
    other = _item(officer, noisy_jpeg((640, 480), seed=11), "other-client")
    assert len({i.group_id for i in items}) == 1 and other.group_id != items[0].group_id
    groups = materials.search(materials.MaterialFilter(), None)
    assert sorted(len(g.members) for g in groups) == [1, 3]
    assert materials.mark_used([items[0].id], article_id=42) == 1
    assert materials.search(materials.MaterialFilter(used=True), None)[0].lead.article_id == 42
    [row] = materials.weekly_counts(None)
    assert (row["officer"], row["unit"], row["photos"], row["used"]) == ("赵六", "徐汇分局", 4, 1)


def test_the_weekly_numbers_are_counted_without_loading_every_photo(db_session):
    """The statistics page loaded each photo of eight weeks with its officer and unit (1.5 s for 30,000 photos)."""
    squad, other = factories.unit("陆家嘴中队"), factories.unit("黄浦分局")
    wang = factories.staff("wangwu", "officer", unit=squad, name="王队员")
    li = factories.staff("liqi", "officer", unit=other, name="李队员")
    now = utcnow()
    rows = [(wang, now, True), (wang, now, False), (li, now, False), (wang, now - timedelta(weeks=1), False)]
    rows += [(wang, now - timedelta(weeks=9), True)]  # too old
    for n, (who, at, used) in enumerate(rows):
        item = MaterialItem(key=f"upload:week-{n}", source=MaterialSource.UPLOAD, state=MaterialState.READY)
        item.uploader_id, item.unit_id, item.received_at, item.used_in_article, item.tags = (
            who.id,
            who.unit_id,
            at,
            used,
            [],
        )
        db.session.add(item)
    refused = MaterialItem(key="chat:week-refused", source=MaterialSource.CHAT, state=MaterialState.FAILED)
    refused.uploader_id, refused.unit_id, refused.received_at = wang.id, squad.id, now
    db.session.add(refused)
    db.session.commit()
    db.session.expunge_all()

    def week(at):
        year, number, _ = at.astimezone(LOCAL_TZ).isocalendar()
        return f"{year}-W{number:02d}"

    loaded = []

    def seen(item, _context):
        loaded.append(item.id)

    sa.event.listen(MaterialItem, "load", seen)
    try:
        counts = materials.weekly_counts(None)
    finally:
        sa.event.remove(MaterialItem, "load", seen)
    assert loaded == []  # counted from four columns, not built into photos
    assert [(r["week"], r["unit"], r["officer"], r["photos"], r["used"]) for r in counts] == [
        (week(now), "黄浦分局", "李队员", 1, 0),
        (week(now), "陆家嘴中队", "王队员", 2, 1),
        (week(now - timedelta(weeks=1)), "陆家嘴中队", "王队员", 1, 0),
    ]
    assert [r["officer"] for r in materials.weekly_counts([other.id])] == ["李队员"]


def test_a_far_older_near_duplicate_starts_a_new_group(officer):
    a = _item(officer, noisy_jpeg((320, 240), seed=21), "old-client")
    a.received_at = utcnow() - timedelta(hours=3)
    db.session.commit()
    b = _item(officer, noisy_jpeg((320, 240), seed=21)[:-2] + b"\xff\xd9", "new-client")
    assert b.group_id != a.group_id or b.id == a.id


def _quadrants(size=(1600, 1000)) -> Image.Image:
    """An upright picture whose every part is told apart by colour: four quadrants and a centre patch."""
    w, h = size
    image = Image.new("RGB", size)
    for (x, y), colour in zip(
        ((0, 0), (w // 2, 0), (0, h // 2), (w // 2, h // 2)), ("red", "lime", "blue", "yellow"), strict=True
    ):
        image.paste(colour, (x, y, x + w // 2, y + h // 2))
    image.paste("white", (w * 2 // 5, h * 2 // 5, w * 3 // 5, h * 3 // 5))
    return image


# The transpose that stores an upright picture the way a camera with this EXIF orientation does (the inverse of
# what turns it upright).
STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _as_stored(upright: Image.Image, orientation: int) -> bytes:
    stored = upright if STORE[orientation] is None else upright.transpose(STORE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=95, exif=exif)
    return out.getvalue()


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel (0–255) of two pictures seen at 32 × 32."""
    a, b = (i.convert("RGB").resize((32, 32), Image.Resampling.BOX).tobytes() for i in (a, b))
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_is_cut_where_the_upright_picture_says(orientation):
    upright = _quadrants()
    data = _as_stored(upright, orientation)
    with Image.open(io.BytesIO(data)) as check:  # the fixture really is that orientation
        assert _difference(ImageOps.exif_transpose(check), upright) < 2
    recipes = [
        materials.make_recipe("cover"),
        materials.make_recipe("thumb"),
        materials.make_recipe("article"),
        materials.make_recipe("article", crop=[0.1, 0.2, 0.5, 0.6]),  # an editor's crop: cut from the decode
    ]
    made = materials.render_images(data, recipes)
    for recipe, (jpeg, size) in zip(recipes, made, strict=True):
        cut = materials.plan_cut(recipe, *upright.size)
        w, h = upright.size
        left, top, right, bottom = cut.box
        expected = upright.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
        with Image.open(io.BytesIO(jpeg)) as out:
            assert out.size == size == cut.size
            assert _difference(out, expected) < 6, recipe


def test_thumbnail_from_the_reduced_copy_is_the_centre_square_within_limits():
    """The thumbnail is cut from the shrunk copy the other renditions share, not from the original decode."""
    grain = Image.frombytes("RGB", (400, 600), random.Random(4).randbytes(400 * 600 * 3)).resize((1600, 2400))
    upright = Image.blend(_quadrants((1600, 2400)), grain, 0.3)  # parts told apart, and detail to compress
    recipes = [materials.default_recipe(p) for p in ("article", "thumb")]
    assert materials.plan_cut(recipes[1], 1600, 2400).scale < materials.plan_cut(recipes[0], 1600, 2400).scale
    (_, _), (thumb, size) = materials.render_images(_as_stored(upright, 8), recipes, text="徐汇分局 2026-07-15")
    assert size == (300, 300) and len(thumb) <= 64 << 10 and not exif_of(thumb)
    centre = upright.crop((0, 400, 1600, 2000))
    with Image.open(io.BytesIO(thumb)) as made:
        assert made.size == (300, 300)
        assert _difference(made, centre) < 3  # the centre square, upright
        assert _difference(made, upright.crop((0, 0, 1600, 1600))) > 15  # (the measure tells squares apart)


@pytest.mark.smoke  # also on the embedded SQLite: the tag filter is SQL there too (json_each, not jsonb)
def test_the_tag_filter_is_sql_so_every_page_is_full_and_nothing_is_missed(officer):
    items = factories.photo_library(
        officer, 30, tagged={0, 1, 2, 5, 8, 13, 21, 22, 23, 29}
    )  # mostly old, beyond a first page
    newest_tagged = [items[i].id for i in (29, 23, 22, 21, 13, 8, 5, 2, 1, 0)]
    night = materials.MaterialFilter(tag="夜查")
    seen, before = [], None
    for _ in range(4):
        groups, before = materials.search_page(night, None, before_id=before, limit=4)
        assert len(groups) == 4 or before is None  # a page is full unless it is the last
        seen += [g.lead.id for g in groups]
        if before is None:
            break
    assert seen == newest_tagged
    everything = [g.lead.id for g in materials.search(materials.MaterialFilter(tag="占道"), None, limit=100)]
    assert everything == [i.id for i in reversed(items)]
    assert materials.search(materials.MaterialFilter(tag="夜"), None) == []  # a whole tag, not a substring
    assert materials.search(materials.MaterialFilter(tag="夜查"), [officer.unit_id + 1000]) == []


def test_the_unit_filter_takes_in_the_units_below(db_session):
    """The filter lists units as a tree; a district (分局) chosen showed none of its squads' (中队) photos, though the
    squads' officers send nearly all of them."""
    district = factories.unit("浦东分局")
    squad = factories.unit("陆家嘴中队", kind="squad", parent=district)
    elsewhere = factories.unit("黄浦分局")
    ids = {}
    for unit in (district, squad, elsewhere):
        who = factories.staff(f"of-{unit.id}", "officer", unit=unit)
        item = MaterialItem(key=f"upload:unit-{unit.id}", source=MaterialSource.UPLOAD, state=MaterialState.READY)
        item.uploader_id, item.unit_id, item.tags = who.id, unit.id, []
        db.session.add(item)
        db.session.commit()
        ids[unit.id] = item.id
    found = [g.lead.id for g in materials.search(materials.MaterialFilter(unit_id=district.id), None)]
    assert sorted(found) == sorted([ids[district.id], ids[squad.id]])
    found = [g.lead.id for g in materials.search(materials.MaterialFilter(unit_id=squad.id), None)]
    assert found == [ids[squad.id]]
    picked, _ = materials.pickable_page(materials.MaterialFilter(unit_id=district.id), None)
    assert sorted(i.id for i in picked) == sorted([ids[district.id], ids[squad.id]])


def test_a_feed_catching_up_gets_the_photos_after_its_cursor_in_order(officer):
    items = factories.photo_library(officer, 12, tagged=set(range(12)))
    night = materials.MaterialFilter(tag="夜查")
    cursor, got = items[1].id, []
    while groups := materials.search(night, None, after_id=cursor, limit=5):
        ids = [g.lead.id for g in groups]
        assert ids == sorted(ids, reverse=True)  # newest first within a chunk
        got += reversed(ids)
        cursor = max(ids)
    assert got == [i.id for i in items[2:]]  # more than one chunk, none skipped


def test_items_left_pending_are_found_by_the_sweep_until_wechat_forgets_them(db_session):
    from models import MaterialState
    from server.services.tips import CHAT_MEDIA_LIFETIME, STALLED_AFTER
    from tests.services.test_images import jpeg_bytes

    officer = factories.staff("qian", "officer", unit=factories.unit("长宁分局"), name="钱七")
    item, _ = materials.upload_photo(officer, jpeg_bytes((320, 240)), client_id="sweep-client")
    db.session.refresh(item)
    assert item.state is not MaterialState.PENDING and materials.stalled_items() == ([], [])
    item.state = MaterialState.PENDING  # as if its derivation was never queued (the broker was down)
    db.session.commit()
    assert materials.stalled_items() == ([], [])  # too recent: its task may still be running
    item.received_at = utcnow() - STALLED_AFTER - timedelta(minutes=1)
    db.session.commit()
    assert materials.stalled_items() == ([], [item.id])
    item.received_at = utcnow() - CHAT_MEDIA_LIFETIME - timedelta(hours=1)
    db.session.commit()
    assert materials.stalled_items() == ([], [])


def test_a_chat_photo_never_downloaded_while_wechat_kept_it_is_listed_as_not_saved(db_session):
    """Its downloads failed for three days (WeChat's API or our token down): it stayed 处理中 for good, and was not
    among the photos an editor is told did not make it into the library."""
    from server.services.tips import CHAT_MEDIA_LIFETIME
    from server.tasks import materials as tasks

    officer = factories.staff("qian", "officer", unit=factories.unit("长宁分局"), name="钱七")
    old, recent = factories.photo_library(officer, 2, set())
    for item, media_id in ((old, "media-old"), (recent, "media-recent")):
        item.source, item.state, item.media_id = MaterialSource.CHAT, MaterialState.PENDING, media_id
    old.received_at, recent.received_at = utcnow() - CHAT_MEDIA_LIFETIME - timedelta(minutes=1), utcnow()
    db.session.commit()
    tasks.requeue_stalled_items.delay()
    db.session.expire_all()
    assert (old.state, old.error) == (MaterialState.FAILED, "微信照片已过期或不存在")
    assert recent.state is MaterialState.PENDING  # its download may still be under way
    f = materials.MaterialFilter(day_from=old.received_at.date() - timedelta(days=1))
    assert materials.recent_failures(f, None) == ([old], 1)
