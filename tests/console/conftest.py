from __future__ import annotations

import re

import pytest

from tests import factories


def csrf_from(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


class Console:
    """A browser-like session on /admin: keeps cookies and sends the page's CSRF token with each form."""

    def __init__(self, client) -> None:
        self.client = client
        self.token = ""

    def get(self, path: str, **kwargs):
        res = self.client.get(path, **kwargs)
        if res.mimetype == "text/html" and 'name="csrf_token"' in res.get_data(as_text=True):
            self.token = csrf_from(res.get_data(as_text=True))
        return res

    def post(self, path: str, data: dict | None = None, **kwargs):
        if not self.token:
            self.get("/admin/login")
        return self.client.post(path, data={"csrf_token": self.token, **(data or {})}, **kwargs)

    def login(self, username: str, password: str = factories.PASSWORD, **kwargs):
        self.get("/admin/login")
        res = self.post("/admin/login", {"username": username, "password": password}, **kwargs)
        if res.status_code == 302:  # signed in: a new session, whose forms need a token of its own
            self.get(res.headers["Location"], follow_redirects=True)
        return res


@pytest.fixture
def console(client) -> Console:
    return Console(client)


@pytest.fixture
def admin(db_session):
    return factories.staff("admin1", "admin", name="管理员甲")


@pytest.fixture
def as_admin(console, admin) -> Console:
    assert console.login("admin1").status_code == 302
    return console
