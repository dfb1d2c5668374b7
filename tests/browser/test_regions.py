"""Regions are dragged on the picture, not typed: a material's crop and blur boxes, a tip photo's masked area."""

from __future__ import annotations

import json

import sqlalchemy as sa

from models import AuditLog, Tip
from server.extensions import db
from server.services import tips
from tests import factories
from tests.browser.conftest import login
from tests.browser.helpers import open_officer_photo
from tests.services.test_images import jpeg_bytes


def drag(page, img, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag across `img` between two points given as fractions of its width and height."""
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    page.mouse.move(box["x"] + box["width"] * start[0], box["y"] + box["height"] * start[1])
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end[0], box["y"] + box["height"] * end[1], steps=5)
    page.mouse.up()


def close(values, expected, tolerance=0.02) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(values, expected, strict=True))


def test_crop_and_blur_boxes_are_dragged_on_the_material(page, live_server):
    open_officer_photo(page, (1600, 1200), "regions-1")
    img = page.locator("[data-region-picker] img")
    drag(page, img, (0.1, 0.2), (0.6, 0.7))
    assert close(json.loads(page.input_value("input[name=crop]")), [0.1, 0.2, 0.5, 0.5])
    page.check("input[name=region_mode][value=blur]")
    drag(page, img, (0.7, 0.1), (0.8, 0.2))
    drag(page, img, (0.2, 0.8), (0.3, 0.9))
    blur = json.loads(page.input_value("input[name=blur]"))
    assert len(blur) == 2 and close(blur[0], [0.7, 0.1, 0.1, 0.1]) and close(blur[1], [0.2, 0.8, 0.1, 0.1])
    assert page.locator(".region.crop").count() == 1 and page.locator(".region.blur").count() == 2
    page.click("[data-region-clear]")  # clears the kind picked (blur), keeps the crop
    assert page.input_value("input[name=blur]") == "" and page.input_value("input[name=crop]")
    page.click("#process-form button.btn:has-text('生成')")
    page.wait_for_selector("text=已提交处理")
    # The live server has no worker: the request it queued is in the audit entry, recipe and all.
    entry = db.session.scalars(sa.select(AuditLog).filter_by(action="material.process")).one()
    assert close(entry.after["crop"], [0.1, 0.2, 0.5, 0.5]) and not entry.after["blur"]


def test_a_tip_photos_masked_area_is_dragged(page, live_server):
    factories.staff("editor", "editor")
    tip = tips.submit_tip(
        "o-citizen",
        category="占道经营",
        description="门口有人占道摆摊卖水果",
        photos=[jpeg_bytes((1200, 900), "red")],
        address="世纪大道 100 号",
        submit_key="regions-tip-000001",
    )
    login(page, "editor", factories.PASSWORD)
    page.wait_for_url("**/admin/")
    page.goto(f"/admin/tips/{tip.id}")
    img = page.locator(".redact [data-region-picker] img").first
    for name, value in zip("xywh", ("10", "20", "30", "40"), strict=True):  # typed by hand: drawn too
        page.fill(f".redact input[name={name}]", value)
        page.dispatch_event(f".redact input[name={name}]", "change")
    typed = page.locator(".redact .region.mask")
    assert typed.count() == 1 and typed.evaluate("d => [d.style.left, d.style.width]") == ["10%", "30%"]
    drag(page, img, (0.25, 0.25), (0.75, 0.5))
    assert close([float(page.input_value(f".redact input[name={n}]")) for n in "xywh"], [25, 25, 50, 25], 2)
    page.click(".redact button:has-text('遮挡')")
    page.wait_for_selector("text=已遮挡")
    db.session.expire_all()
    assert db.session.scalars(sa.select(Tip)).one().photos[0].redacted
