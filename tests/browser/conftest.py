"""Playwright driving Debian's headless Chromium against the live gunicorn server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Chromium's own update and sync traffic is refused on a closed network; keep it from trying.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed (scripts/test.sh installs it)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, committed_db):
    context = browser.new_context(base_url=live_server.url, locale="zh-CN", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


PHONE = {
    "locale": "zh-CN",
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}


def _phone(browser, live_server, committed_db):
    """A citizen's phone: its own cookies, so its own WeChat identity."""
    context = browser.new_context(base_url=live_server.url, **PHONE)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


phone_page = pytest.fixture(_phone, name="phone_page")
second_phone = pytest.fixture(_phone, name="second_phone")  # a second citizen in the same test


def shoot(page, name: str) -> None:
    """Keep a screenshot of this page for the README (docs/screenshots), when asked to (SCREENSHOTS=1)."""
    if os.environ.get("SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")  # sticky parts (the menu preview) sit where a reader expects them
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def login(page, username: str, password: str) -> None:
    page.goto("/admin/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
