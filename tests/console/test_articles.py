from __future__ import annotations

from tests import factories


def test_calendar_and_pages_render_for_an_editor(console, db_session):
    factories.staff("ed1", "editor")
    assert console.login("ed1").status_code == 302
    res = console.get("/admin/articles")
    assert res.status_code == 200 and "每日一案" in res.get_data(as_text=True)
    assert "缺稿" in res.get_data(as_text=True)
    assert console.get("/admin/articles?view=week").status_code == 200
    assert console.get("/admin/articles/columns").status_code == 200
    assert console.get("/admin/articles/new").status_code == 200
    res = console.post("/admin/articles/new", {"title": "标题", "body_html": "<p onclick='x()'>正文</p>"})
    assert res.status_code == 302
    detail = console.get(res.headers["Location"]).get_data(as_text=True)
    assert "正文" in detail and "onclick" not in detail


def test_liaison_cannot_approve_or_schedule(console, db_session):
    unit = factories.unit("浦东分局")
    factories.staff("li1", "liaison", unit=unit)
    assert console.login("li1").status_code == 302
    assert console.get("/admin/articles/pushes/new").status_code == 403
    assert console.get("/admin/articles/columns").status_code == 403
    res = console.post("/admin/articles/new", {"title": "标题", "body_html": "<p>正文</p>"})
    article_url = res.headers["Location"]
    console.post(article_url + "/approve", {"comment": ""})
    assert "已通过" not in console.get(article_url).get_data(as_text=True).split("状态：")[1][:40]
