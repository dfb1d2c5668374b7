"""The followers pages: search, last activity, paging, day counts, remarks synced to WeChat, CSV export, roles."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import AuditKind, AuditLog, Channel, Follower, InboundMessage
from server.extensions import db
from server.filters import local_dt
from server.wechat.client import get_client
from tests import factories


def follower(openid: str, **fields) -> Follower:
    """A follower row as the subscribe handler would leave it (default: subscribed a day ago)."""
    at = fields.pop("at", datetime.now(UTC) - timedelta(days=1))
    row = Follower(openid=openid, **({"subscribed": True, "subscribed_at": at, "first_subscribed_at": at} | fields))
    db.session.add(row)
    db.session.commit()
    return row


def message(openid: str, received_at: datetime, n: int = 0) -> None:
    db.session.add(
        InboundMessage(
            dedupe_key=f"m:{openid}:{received_at.timestamp()}:{n}",
            openid=openid,
            msg_type="text",
            payload={"Content": "你好"},
            sent_at=received_at,
            received_at=received_at,
        )
    )
    db.session.commit()


def openids_on(html: str) -> list[str]:
    return re.findall(r"<td><a href=\"/admin/followers/\d+[^\"]*\"><code>([^<]+)</code>", html)


@pytest.fixture
def as_editor(console, db_session):
    factories.staff("editor1", "editor", name="编辑甲")
    assert console.login("editor1").status_code == 302
    return console


def test_empty_list_says_what_to_do(as_editor):
    html = as_editor.get("/admin/followers").get_data(as_text=True)
    assert "还没有粉丝记录" in html and "导出 CSV" not in html
    html = as_editor.get("/admin/followers?openid=nobody").get_data(as_text=True)
    assert "没有符合条件的粉丝" in html and "清除筛选" in html


def test_search_filters(as_editor):
    now = datetime.now(UTC)
    follower("oA-alpha-1", remark="张师傅", source_scene="open_day", at=now - timedelta(days=40))
    follower("oB-beta-2", source_scene="poster", at=now - timedelta(days=2))
    follower("oC-alpha-3", subscribed=False, unsubscribed_at=now, at=now - timedelta(days=3))
    resub = follower("oD-delta-4", source_scene="open_day", at=now - timedelta(days=1))
    resub.first_subscribed_at = now - timedelta(days=90)  # first came long ago, came back yesterday
    db.session.commit()

    def listed(**query) -> list[str]:
        res = as_editor.get("/admin/followers", query_string=query)
        assert res.status_code == 200
        return sorted(openids_on(res.get_data(as_text=True)))

    assert listed() == ["oA-alpha-1", "oB-beta-2", "oC-alpha-3", "oD-delta-4"]
    assert listed(openid="alpha") == ["oA-alpha-1", "oC-alpha-3"]
    assert listed(remark="张") == ["oA-alpha-1"]
    assert listed(status="subscribed") == ["oA-alpha-1", "oB-beta-2", "oD-delta-4"]
    assert listed(status="unsubscribed") == ["oC-alpha-3"]
    assert listed(scene="open_day") == ["oA-alpha-1", "oD-delta-4"]
    assert listed(scene="-") == ["oC-alpha-3"]
    week_ago = (now - timedelta(days=7)).date().isoformat()
    assert listed(since=week_ago) == ["oB-beta-2", "oC-alpha-3", "oD-delta-4"]
    assert listed(since=week_ago, by="first") == ["oB-beta-2", "oC-alpha-3"]
    assert listed(until=week_ago) == ["oA-alpha-1"]
    assert listed(openid="alpha", status="subscribed") == ["oA-alpha-1"]


def test_dates_are_local_days(as_editor):
    # 23:30 in Shanghai on 1 March is 15:30 UTC: it belongs to 1 March, not to the UTC date's neighbour.
    follower("o-late", at=datetime(2026, 3, 1, 15, 30, tzinfo=UTC))
    follower("o-next", at=datetime(2026, 3, 1, 16, 30, tzinfo=UTC))  # 00:30 on 2 March in Shanghai
    html = as_editor.get("/admin/followers?since=2026-03-01&until=2026-03-01").get_data(as_text=True)
    assert openids_on(html) == ["o-late"]
    assert "2026-03-01 23:30" in html


@pytest.mark.parametrize(
    "query",
    [
        {"since": "2026-13-45"},
        {"until": "昨天"},
        {"since": "0001-01-01"},
        {"until": "9999-12-31"},
        {"page": "99999999999999999999"},
        {"page": "-3"},
        {"page": "abc"},
        {"openid": "' OR 1=1; DROP TABLE follower; --"},
        {"remark": "%"},
        {"openid": "_"},
        {"scene": "x" * 500},
        {"status": "maybe"},
    ],  # NUL: refused for every page alike (tests/console/test_hostile_input.py)
)
def test_bad_input_is_never_a_server_error(as_editor, query):
    follower("o-keep-1", remark="保留")
    res = as_editor.get("/admin/followers", query_string=query)
    assert res.status_code == 200
    assert as_editor.get("/admin/followers/export.csv", query_string=query).status_code == 200
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Follower)) == 1


def test_bad_dates_are_explained_and_wildcards_match_literally(as_editor):
    follower("o-percent", remark="100%满意")
    follower("o-plain", remark="满意")
    html = as_editor.get("/admin/followers?since=2026-02-30&remark=%25").get_data(as_text=True)
    assert "不是有效日期" in html
    assert openids_on(html) == ["o-percent"]  # "%" is a character here, not "anything"
    swapped = as_editor.get("/admin/followers?since=2026-03-02&until=2026-03-01").get_data(as_text=True)
    assert "已对调" in swapped


def test_last_active_comes_from_the_message_log(as_editor, wechat):
    follower("o-quiet")
    follower("o-chatty")
    old = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    message("o-chatty", old)
    message("o-chatty", datetime(2026, 1, 9, 4, 15, tzinfo=UTC))  # the latest: 12:15 in Shanghai
    message("o-chatty", old + timedelta(hours=1))
    html = as_editor.get("/admin/followers").get_data(as_text=True)
    rows = dict(re.findall(r"<code>([^<]+)</code></a></td>.*?<td class=\"last-active[^\"]*\">([^<]*)</td>", html, re.S))
    assert rows == {"o-quiet": "—", "o-chatty": "2026-01-09 12:15"}
    before = local_dt(datetime.now(UTC))
    wechat.text("o-chatty", "在吗")  # through the gateway: the log gets a row received now
    html = as_editor.get("/admin/followers").get_data(as_text=True)
    rows = dict(re.findall(r"<code>([^<]+)</code></a></td>.*?<td class=\"last-active[^\"]*\">([^<]*)</td>", html, re.S))
    assert rows["o-chatty"] in {before, local_dt(datetime.now(UTC))}
    assert rows["o-quiet"] == "—"


def _statements_for(console, path: str) -> int:
    seen: list[str] = []
    console.get(path)  # once before counting: whether the editor's row is still cached depends on the commits before

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert console.get(path).status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    return len(seen)


def test_the_list_costs_the_same_queries_for_3_or_50_rows(as_editor):
    for i in range(3):
        follower(f"o-few-{i}")
        message(f"o-few-{i}", datetime.now(UTC))
    few = _statements_for(as_editor, "/admin/followers")
    for i in range(47):
        follower(f"o-many-{i}")
        message(f"o-many-{i}", datetime.now(UTC))
    assert _statements_for(as_editor, "/admin/followers") == few  # last activity is grouped in SQL, not per row


def test_paging_by_fifty(as_editor):
    base = datetime.now(UTC) - timedelta(days=1)
    for i in range(53):
        follower(f"o-{i:03d}", at=base + timedelta(minutes=i))
    first = as_editor.get("/admin/followers").get_data(as_text=True)
    assert len(openids_on(first)) == 50 and openids_on(first)[0] == "o-052"  # newest first
    assert "第 1 / 2 页" in first and "下一页" in first
    second = as_editor.get("/admin/followers?page=2").get_data(as_text=True)
    assert openids_on(second) == ["o-002", "o-001", "o-000"]
    beyond = as_editor.get("/admin/followers?page=999999999").get_data(as_text=True)
    assert openids_on(beyond) == openids_on(second)  # clamped to the last page


def test_daily_subscribe_and_unsubscribe_counts(as_editor, wechat):
    now = int(time.time())
    wechat.event("o-c1", "subscribe", create_time=now - 30)
    wechat.event("o-c2", "subscribe", create_time=now - 20)
    wechat.event("o-c1", "unsubscribe", create_time=now - 10)
    wechat.event("o-c1", "subscribe", create_time=now - 5)  # back again: counted as WeChat counts it
    html = as_editor.get("/admin/followers").get_data(as_text=True)
    assert "共 3 次</span>" in html and "共 1 次</span>" in html
    assert html.count("<svg") == 2
    assert sorted(openids_on(html)) == ["o-c1", "o-c2"]


def test_remark_is_synced_to_wechat_and_audited(as_editor, emulator):
    row = follower("o-remark")
    emulator.hook("users", {"openids": ["o-remark"]})
    res = as_editor.post(f"/admin/followers/{row.id}/remark", {"remark": "  东城张师傅  "})
    assert res.status_code == 302
    user = next(u for u in emulator.state()["users"] if u["openid"] == "o-remark")
    assert user["remark"] == "东城张师傅"
    assert db.session.get(Follower, row.id).remark == "东城张师傅"
    [entry] = db.session.scalars(sa.select(AuditLog).filter_by(action="follower.remark")).all()
    assert entry.before == {"remark": None} and entry.after == {"remark": "东城张师傅"}
    assert entry.staff_name == "编辑甲"
    assert "东城张师傅" in as_editor.get("/admin/followers?remark=张师傅").get_data(as_text=True)


def test_a_31_byte_remark_is_refused_as_wechat_would(as_editor, emulator):
    row = follower("o-long", remark="旧备注")
    emulator.hook("users", {"openids": ["o-long"]})
    ten, eleven = "城" * 10, "城" * 10 + "a"  # 30 bytes is the most WeChat takes; 31 is one too many
    # The emulator, like WeChat, answers 40092 for 31 bytes: our own limit is WeChat's.
    with pytest.raises(Exception) as refused:
        get_client().user.update_remark("o-long", eleven)
    assert refused.value.errcode == 40092
    res = as_editor.post(f"/admin/followers/{row.id}/remark", {"remark": eleven})
    html = res.get_data(as_text=True)
    assert res.status_code == 400 and "最长 30 个字节" in html and "现在是 31 个字节" in html
    assert db.session.get(Follower, row.id).remark == "旧备注"
    assert as_editor.post(f"/admin/followers/{row.id}/remark", {"remark": ten}).status_code == 302
    assert db.session.get(Follower, row.id).remark == ten


def test_when_wechat_refuses_nothing_is_kept(as_editor, emulator):
    row = follower("o-refused", remark="旧备注")
    emulator.hook("users", {"openids": ["o-refused"]})
    emulator.hook("fail", {"path": "cgi-bin/user/info/updateremark", "errcode": 40092, "times": 1})
    res = as_editor.post(f"/admin/followers/{row.id}/remark", {"remark": "新备注"})
    assert res.status_code == 400 and "备注名不符合微信的要求" in res.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Follower, row.id).remark == "旧备注"
    assert db.session.scalar(sa.select(AuditLog).filter_by(action="follower.remark")) is None
    user = next(u for u in emulator.state()["users"] if u["openid"] == "o-refused")
    assert user["remark"] == ""
    # A follower WeChat does not know: its own error, in Chinese.
    stranger = follower("o-stranger")
    res = as_editor.post(f"/admin/followers/{stranger.id}/remark", {"remark": "谁"})
    assert res.status_code == 400 and "备注未保存：40003 openid 无效：不是本公众号的粉丝" in res.get_data(as_text=True)


def test_csv_export_of_the_filtered_list_is_audited(as_editor):
    now = datetime.now(UTC)
    follower("o-x1", remark='=HYPERLINK("http://evil")', source_scene="open_day", at=now - timedelta(hours=2))
    follower("o-x2", remark="李阿姨", source_scene="open_day", at=now - timedelta(hours=1))
    follower("o-y3", source_scene="poster")
    db.session.add(Channel(name="7·15 开放日海报", scene="open_day"))
    message("o-x2", datetime(2026, 2, 1, 1, 0, tzinfo=UTC))
    res = as_editor.get("/admin/followers/export.csv?scene=open_day&openid=o-x")
    assert res.status_code == 200 and res.mimetype == "text/csv"
    assert "attachment" in res.headers["Content-Disposition"]
    body = res.get_data()
    assert body.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0][:3] == ["openid", "备注", "状态"]
    assert [r[0] for r in rows[1:]] == ["o-x2", "o-x1"]
    assert rows[1][6] == "7·15 开放日海报（open_day）"  # a channel's scene by its name, as on the page
    assert rows[1][1] == "李阿姨" and rows[1][8] == "2026-02-01 09:00:00"
    assert rows[2][1].startswith("'=")  # a formula is exported as text
    [entry] = db.session.scalars(sa.select(AuditLog).filter_by(action="follower.export")).all()
    assert entry.kind is AuditKind.EXPORT and entry.staff_name == "编辑甲"
    assert entry.after == {"filter": {"openid": "o-x", "scene": "open_day"}, "rows": 2}


def test_the_list_links_the_export_with_its_filter(as_editor):
    follower("o-link")
    html = as_editor.get("/admin/followers?openid=o-li&status=subscribed").get_data(as_text=True)
    assert re.search(r'href="/admin/followers/export.csv\?[^"]*openid=o-li', html)


@pytest.mark.parametrize("role", ["reviewer", "liaison"])
def test_every_console_role_sees_followers_but_only_editors_set_remarks_and_export(console, db_session, emulator, role):
    row = follower("o-seen")
    emulator.hook("users", {"openids": ["o-seen"]})
    factories.staff("someone", role, unit=factories.unit() if role == "liaison" else None)
    console.login("someone")
    assert "o-seen" in console.get("/admin/followers").get_data(as_text=True)
    detail = console.get(f"/admin/followers/{row.id}").get_data(as_text=True)
    assert "o-seen" in detail and "保存备注" not in detail
    assert console.post(f"/admin/followers/{row.id}/remark", {"remark": "x"}).status_code == 403
    assert console.get("/admin/followers/export.csv").status_code == 403
    assert "导出 CSV" not in console.get("/admin/followers").get_data(as_text=True)


def test_officers_get_403(console, db_session):
    row = follower("o-hidden")
    factories.staff("officer1", "officer", unit=factories.unit())
    console.login("officer1")
    assert console.get("/admin/followers").status_code == 403
    assert console.get(f"/admin/followers/{row.id}").status_code == 403
    assert console.get("/admin/followers/export.csv").status_code == 403
    assert console.post(f"/admin/followers/{row.id}/remark", {"remark": "x"}).status_code == 403
    assert db.session.scalar(sa.select(AuditLog).filter_by(action="follower.export")) is None


def test_unknown_follower_is_404(as_editor):
    assert as_editor.get("/admin/followers/999999").status_code == 404


def test_a_manager_syncs_the_list_from_wechat_and_the_page_shows_the_outcome(as_editor, emulator):
    follower("o-known")
    emulator.hook("users", {"users": [{"openid": "o-known"}, {"openid": "o-before-go-live"}]})
    page = as_editor.get("/admin/followers").get_data(as_text=True)
    assert "尚未与微信同步过粉丝名单" in page and "从微信同步粉丝名单" in page
    res = as_editor.post("/admin/followers/sync")
    assert res.status_code == 302
    page = as_editor.get("/admin/followers").get_data(as_text=True)
    assert "已开始与微信同步粉丝名单" in page
    assert re.search(r"上次与微信同步：[^，]+，微信名单 2 人；补记新关注 1、重新关注 0、取消关注 0", page)
    assert "o-before-go-live" in page
    [entry] = db.session.scalars(sa.select(AuditLog).filter_by(action="follower.sync")).all()
    assert entry.staff_name == "编辑甲"


def test_the_day_charts_say_they_count_events_not_the_people_home_counts(as_editor, emulator):
    """A follow filled in by the sync is a new follower on the home page but no event in the log: the follower
    page's charts, counted from the log, say so instead of contradicting home's figure."""
    emulator.hook("users", {"users": [{"openid": "o-missed"}]})
    as_editor.post("/admin/followers/sync")
    page = as_editor.get("/admin/followers").get_data(as_text=True)
    assert '近 30 天每日关注次数 <span class="hint">共 0 次</span>' in page
    assert "与微信同步补记的不计入" in page and "首页的「新增关注」按首次关注的人数计" in page
    assert '共 <strong data-testid="total">1</strong> 位粉丝（含已取消关注的）' in page
    assert "位粉丝（含已取消关注的）" not in as_editor.get("/admin/followers?status=subscribed").get_data(as_text=True)
    # The sync button looks like the console's other buttons
    assert '<button type="submit" class="btn secondary small">从微信同步粉丝名单</button>' in page


def test_a_failed_sync_is_said_on_the_page_not_a_500(as_editor, emulator):
    emulator.hook("users", {"openids": ["o-a"]})
    emulator.hook("fail", {"path": "cgi-bin/user/get", "errcode": 48001, "times": 1})
    res = as_editor.post("/admin/followers/sync")
    assert res.status_code == 302
    page = as_editor.get("/admin/followers").get_data(as_text=True)
    assert "同步没有完成" in page and "同步未全部完成" in page and "48001" in page


def test_only_managers_may_start_a_sync(console, db_session):
    factories.staff("reviewer1", "reviewer", name="审核甲")
    assert console.login("reviewer1").status_code == 302
    assert "从微信同步粉丝名单" not in console.get("/admin/followers").get_data(as_text=True)
    assert console.post("/admin/followers/sync").status_code == 403
