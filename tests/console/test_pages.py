"""Every console page: each form field has a name a screen reader can read out, and the tab shows our icon."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from tests import factories
from tests.services.test_events import make_event


class Fields(HTMLParser):
    """Collects the form fields of a page with what could name them: aria-label(ledby), title, a <label for>, or an
    enclosing <label>."""

    FIELDS = ("input", "select", "textarea")
    UNNAMED_TYPES = ("hidden", "submit", "button", "reset", "image")

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, str | None]] = []
        self.label_for: set[str] = set()
        self.label_depth = 0
        self.editable: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label":
            self.label_depth += 1
            if a.get("for"):
                self.label_for.add(a["for"])
        elif tag in self.FIELDS and a.get("type") not in self.UNNAMED_TYPES:
            self.fields.append({**a, "_tag": tag, "_in_label": "1" if self.label_depth else None})
        if a.get("contenteditable") == "true":
            self.editable.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.label_depth = max(self.label_depth - 1, 0)

    def unnamed(self) -> list[str]:
        def named(f: dict[str, str | None]) -> bool:
            return bool(
                f.get("aria-label")
                or f.get("aria-labelledby")
                or f.get("title")
                or f["_in_label"]
                or (f.get("id") and f["id"] in self.label_for)
            )

        unnamed = [f"{f['_tag']}[name={f.get('name')}]" for f in self.fields if not named(f)]
        unnamed += [f"contenteditable#{e.get('id')}" for e in self.editable if not e.get("aria-labelledby")]
        return unnamed


def unnamed_fields(html: str) -> list[str]:
    parser = Fields()
    parser.feed(html)
    return parser.unnamed()


PAGES = [
    "/admin/stats",
    "/admin/stats/scoreboard",
    "/admin/stats/records",
    "/admin/stats/reports",
    "/admin/audit",
    "/admin/staff",
    "/admin/replies",
    "/admin/alerts/terms",
    "/admin/articles/list",
    "/admin/articles/new",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_field_has_a_name(as_admin, path):
    res = as_admin.get(path)
    assert res.status_code == 200
    assert unnamed_fields(res.get_data(as_text=True)) == []


def test_the_scan_page_names_its_token_box(console, db_session):
    factories.staff("liaison1", "liaison", unit=factories.unit())
    console.login("liaison1")
    event, _ = make_event()
    page = console.get(f"/admin/events/{event.id}/scan").get_data(as_text=True)
    assert 'id="token"' in page and unnamed_fields(page) == []


def test_pages_link_the_icon_that_static_serves(console, admin):
    icon = re.compile(r'<link rel="icon" href="/static/favicon\.svg\?v=[0-9a-f]{12}" type="image/svg\+xml">')
    assert icon.search(console.get("/admin/login").get_data(as_text=True))  # a page with its own <head>
    assert console.login("admin1").status_code == 302
    assert icon.search(console.get("/admin/").get_data(as_text=True))  # console/base.html
    res = console.client.get("/static/favicon.svg")
    assert res.status_code == 200 and res.mimetype == "image/svg+xml" and b"<svg" in res.data
    res.close()


def _grow(n: int, start: int) -> None:
    """n more units, each with an officer, a contact point, a binding code, a photo and an event."""
    from models import ContactPoint
    from server.extensions import db
    from server.services import binding, staff

    for i in range(start, start + n):
        office = factories.unit(f"中队{i}")
        officer = factories.staff(f"officer{i}", "officer", unit=office)
        staff.save_unit(name=office.name, kind=office.kind, parent_id=None, unit=office, post_a_id=officer.id)
        db.session.add(
            ContactPoint(name=f"联络点{i}", address="某路", latitude=31.2, longitude=121.4, unit_id=office.id)
        )
        binding.issue(officer.id)
        factories.photo_library(officer, 1, set())[0].key = f"upload:grow-{i}"
        make_event()
    db.session.commit()


@pytest.mark.parametrize(
    "path",
    [
        "/admin/units",
        "/admin/staff",
        "/admin/contacts",
        "/admin/binding",
        "/admin/events",
        "/admin/materials/feed.json",
    ],
)
def test_a_list_runs_as_many_statements_for_many_rows_as_for_few(as_admin, db_session, path):
    import sqlalchemy as sa

    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    engine = db_session.get_bind().engine
    sizes = []
    for start in (0, 2):
        _grow(2 if start == 0 else 6, start)
        statements.clear()
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            assert as_admin.get(path).status_code == 200
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        sizes.append(len(statements))
    assert sizes[0] == sizes[1], statements  # one query per row would add 4 or more


@pytest.mark.parametrize("role", ["admin", "editor", "reviewer", "liaison"])
def test_the_menu_offers_only_pages_the_role_may_open(console, db_session, role):
    factories.staff("someone", role, unit=factories.unit() if role == "liaison" else None)
    assert console.login("someone").status_code == 302
    home = console.get("/admin/").get_data(as_text=True)
    links = set(re.findall(r"<nav>.*?</nav>", home, re.S)[0].split('href="')[1:])
    paths = {link.split('"')[0] for link in links}
    assert paths and all(console.get(path).status_code == 200 for path in paths), paths


def test_the_audit_log_is_searched_and_read_in_chinese(as_admin, admin, db_session):
    from server.services import staff as staff_service

    person = {"username": "obrien", "name": "O'Brien 王", "role": "editor", "unit_id": None}
    staff_service.save_staff(**person, password="Welcome-2026a")
    for query, found in (("新增人员", "新增人员"), ("staff.create", "新增人员"), ("管理员甲", "登录")):
        page = as_admin.get("/admin/audit", query_string={"action": query}).get_data(as_text=True)
        assert found in page, query  # by the action's name, its code, or the person who did it
    page = as_admin.get("/admin/audit", query_string={"action": "新增人员"}).get_data(as_text=True)
    assert "姓名（name）" in page and "O&#39;Brien 王" in page and "\\u" not in page
    assert "新增人员" not in as_admin.get("/admin/audit", query_string={"action": "删除"}).get_data(as_text=True)
