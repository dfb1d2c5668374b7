"""The custom menu: WeChat's limits, drafts, publishing via the emulator, history, restore, pull, officers' menu."""

from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa

from models import AuditLog, MatchType, MenuKind, MenuVersion, ReplyRule
from server.services import menus, replies
from server.services.menus import MenuError, validate_menu
from tests import factories

SERVICES = {"name": "办事", "sub_button": [{"type": "view", "name": "投诉指南", "url": "https://example.gov.cn/guide"}]}
TIPS = {"type": "click", "name": "随手拍", "key": "TIP_HOWTO"}
ABOUT = {"type": "click", "name": "关于我们", "key": "ABOUT"}
MENU = [TIPS, SERVICES, ABOUT]


def leaf(name: str = "按钮") -> dict:
    return {"type": "click", "name": name, "key": f"K_{name}"}


def refused(buttons, *expected: str) -> str:
    with pytest.raises(MenuError) as caught:
        validate_menu(buttons)
    message = str(caught.value)
    for part in expected:
        assert part in message, message
    return message


def wechat_shape(buttons: list[dict]) -> list[dict]:
    """What the emulator (like menu/get) shows for a menu: every leaf carries sub_button: []."""
    out = []
    for b in buttons:
        if b.get("sub_button"):
            out.append({"name": b["name"], "sub_button": [s | {"sub_button": []} for s in b["sub_button"]]})
        else:
            out.append(b | {"sub_button": []})
    return out


# ---------------------------------------------------------------------------------------------------------------
# validate_menu: every limit, each message naming the button and the field
# ---------------------------------------------------------------------------------------------------------------


def test_a_menu_within_every_limit_passes():
    validate_menu(
        [
            {"type": "click", "name": "一二三四五", "key": "K" * 128},  # 15 bytes
            {"name": "办事", "sub_button": [leaf(f"子{i}") for i in range(5)]},
            {"type": "view", "name": "官网", "url": "https://example.gov.cn/" + "a" * (1024 - 23)},
        ]
    )
    validate_menu([{"name": "组", "sub_button": [leaf("二" * 20)]}])  # 60 bytes


def test_no_buttons_or_not_a_list():
    refused([], "至少需要 1 个一级菜单")
    refused(None, "至少需要 1 个一级菜单")


def test_fourth_top_level_button():
    refused([leaf("a"), leaf("b"), leaf("c"), leaf("d")], "一级菜单最多 3 个", "当前 4 个")


def test_sixth_sub_button_names_its_parent():
    refused(
        [leaf("a"), {"name": "办事", "sub_button": [leaf(f"s{i}") for i in range(6)]}],
        "第 2 个一级菜单「办事」",
        "子菜单最多 5 个",
        "当前 6 个",
    )


def test_top_level_name_of_17_bytes():
    name = "办事指南服" + "ab"  # 5 × 3 + 2 = 17 bytes
    refused(
        [leaf("a"), {"type": "click", "name": name, "key": "X"}],
        f"第 2 个一级菜单「{name}」",
        "名称超过 16 字节",
        "当前 17 字节",
    )


def test_the_message_of_the_issue():
    message = refused([leaf("a"), {"type": "click", "name": "办事服务中心", "key": "X"}])  # 18 bytes
    assert message.startswith("第 2 个一级菜单「办事服务中心」：名称超过 16 字节（当前 18 字节")


def test_sub_button_name_of_61_bytes():
    name = "二" * 20 + "x"
    refused(
        [{"name": "办事", "sub_button": [leaf("ok"), {"type": "click", "name": name, "key": "Y"}]}],
        "第 1 个一级菜单「办事」的第 2 个子菜单",
        "名称超过 60 字节",
        "当前 61 字节",
    )


def test_empty_names_are_refused():
    refused([leaf("a"), {"type": "click", "name": "  ", "key": "X"}], "第 2 个一级菜单：名称不能为空")
    refused(
        [{"name": "办事", "sub_button": [{"type": "click", "name": "", "key": "X"}]}],
        "第 1 个一级菜单「办事」的第 1 个子菜单：名称不能为空",
    )


def test_key_of_129_bytes():
    refused([{"type": "click", "name": "随手拍", "key": "k" * 129}], "「随手拍」", "key 超过 128 字节", "当前 129 字节")


def test_url_of_1025_bytes():
    url = "https://example.gov.cn/" + "a" * (1025 - 23)
    refused([{"type": "view", "name": "官网", "url": url}], "「官网」", "url 超过 1024 字节", "当前 1025 字节")


def test_url_must_be_http_or_https():
    refused([{"type": "view", "name": "官网", "url": "ftp://example.gov.cn/"}], "「官网」", "http:// 或 https://")
    refused([{"type": "view", "name": "官网", "url": "/m/upload"}], "「官网」", "http:// 或 https://")


def test_control_characters_and_spaces_where_wechat_cannot_take_them():
    # Pasted from a document: a tab or vertical tab in a name, a space in a key or inside a link.
    refused([{"type": "click", "name": "随手\x0b拍", "key": "X"}], "名称含有看不见的控制字符")
    refused([{"type": "click", "name": "随手拍", "key": "TIP KEY"}], "「随手拍」", "key 不能含有空格或控制字符")
    refused([{"type": "view", "name": "官网", "url": "https://example.gov.cn/a b"}], "「官网」", "不能含有空格")
    validate_menu([{"type": "click", "name": "随手 拍", "key": "TIP_KEY"}])  # a space inside a name is fine


def test_view_without_url():
    refused([{"type": "view", "name": "官网"}], "第 1 个一级菜单「官网」", "缺少网页链接 url", "打开网页")


def test_click_without_key():
    refused(
        [{"name": "办事", "sub_button": [{"type": "click", "name": "指南"}]}],
        "「办事」的第 1 个子菜单「指南」",
        "缺少按钮标识 key",
    )


def test_every_key_type_needs_a_key():
    for kind in menus.KEY_TYPES:
        refused([{"type": kind, "name": "上传"}], "「上传」", "缺少按钮标识 key")


def test_unknown_type():
    refused([{"type": "news", "name": "资讯", "key": "N"}], "「资讯」", "不支持的菜单类型「news」")


def test_missing_type():
    refused([{"name": "资讯"}], "「资讯」", "请选择菜单类型")


def test_miniprogram_needs_url_appid_and_pagepath():
    full = {"type": "miniprogram", "name": "小程序", "url": "https://example.gov.cn", "appid": "wx1", "pagepath": "p/i"}
    validate_menu([full])
    refused([{k: v for k, v in full.items() if k != "appid"}], "「小程序」", "缺少小程序 appid")
    refused([{k: v for k, v in full.items() if k != "pagepath"}], "「小程序」", "缺少小程序页面路径 pagepath")
    refused([{k: v for k, v in full.items() if k != "url"}], "「小程序」", "缺少网页链接 url")


def test_media_and_article_types_need_their_ids():
    for kind in ("media_id", "view_limited"):
        refused([{"type": kind, "name": "素材"}], "「素材」", "缺少素材 media_id")
    for kind in ("article_id", "article_view_limited"):
        refused([{"type": kind, "name": "文章"}], "「文章」", "缺少已发布文章 article_id")
    validate_menu(
        [{"type": "media_id", "name": "素材", "media_id": "M"}, {"type": "article_id", "name": "文", "article_id": "A"}]
    )


def test_duplicate_keys_name_both_buttons():
    refused(
        [
            {"type": "click", "name": "甲", "key": "SAME"},
            {"name": "办事", "sub_button": [{"type": "scancode_push", "name": "乙", "key": "SAME"}]},
        ],
        "第 2 个一级菜单「办事」的第 1 个子菜单「乙」",
        "按钮标识「SAME」",
        "第 1 个一级菜单「甲」重复",
    )


def test_a_button_with_sub_buttons_has_no_type_of_its_own():
    refused([{"name": "办事", "type": "click", "key": "X", "sub_button": [leaf("a")]}], "「办事」", "不能再设置 type")


def test_no_third_level():
    refused(
        [{"name": "办事", "sub_button": [{"name": "深", "sub_button": [leaf("x")]}]}],
        "「深」",
        "子菜单下不能再有子菜单",
    )


def test_at_most_three_link_domains():
    views = [{"type": "view", "name": f"站{i}", "url": f"https://s{i}.example.cn/"} for i in range(4)]
    refused([views[0], {"name": "更多", "sub_button": views[1:]}], "最多指向 3 个不同域名", "当前 4 个")


def test_malformed_buttons_are_a_message_not_a_crash():
    refused(["x"], "第 1 个一级菜单：格式不正确")
    refused([{"name": "办事", "sub_button": "x"}], "「办事」", "子菜单格式不正确")
    refused([{"name": 5, "type": "click", "key": "x"}], "第 1 个一级菜单：名称不能为空")


def test_normalize_trims_and_keeps_only_the_fields_of_the_type():
    raw = [{"name": " 官网 ", "type": "view", "url": " https://a.cn ", "key": "stale", "sub_button": []}]
    assert menus.normalize(raw) == [{"name": "官网", "type": "view", "url": "https://a.cn"}]


# ---------------------------------------------------------------------------------------------------------------
# Drafts and click replies
# ---------------------------------------------------------------------------------------------------------------


def test_a_draft_is_one_row_updated_in_place_and_audited(db_session):
    first = menus.save_draft("default", [TIPS])
    second = menus.save_draft("default", MENU, base=menus.draft_token(first))
    assert first.id == second.id and second.published_at is None
    assert db_session.scalar(sa.select(sa.func.count()).select_from(MenuVersion)) == 1
    entries = db_session.scalars(sa.select(AuditLog).filter_by(action="menu.draft_save").order_by(AuditLog.id)).all()
    assert [e.after["buttons"] for e in entries] == [[TIPS], MENU]
    assert entries[1].before["buttons"] == [TIPS]


def test_a_draft_saved_on_a_stale_base_is_refused(db_session):
    first = menus.save_draft("default", [TIPS])
    stale = menus.draft_token(first)
    menus.save_draft("default", [TIPS, ABOUT], base=stale)
    with pytest.raises(MenuError, match="已被其他人修改"):
        menus.save_draft("default", [ABOUT], base=stale)


def test_an_invalid_draft_is_not_stored(db_session):
    with pytest.raises(MenuError):
        menus.save_draft("default", [{"type": "view", "name": "官网"}])
    assert menus.draft(MenuKind.DEFAULT) is None


def test_click_reply_texts_become_click_rules(db_session):
    menus.save_draft("default", MENU, {"TIP_HOWTO": "拍照并发送位置即可", "ABOUT": "", "NOPE": "ignored"})
    rule = db_session.scalar(sa.select(ReplyRule).filter_by(match_type=MatchType.CLICK, pattern="TIP_HOWTO"))
    assert rule.reply_text == "拍照并发送位置即可" and rule.enabled
    assert replies.click_reply("TIP_HOWTO").text == "拍照并发送位置即可"
    assert db_session.scalar(sa.select(ReplyRule).filter_by(pattern="ABOUT")) is None  # empty: nothing written
    assert db_session.scalar(sa.select(ReplyRule).filter_by(pattern="NOPE")) is None  # not a click key of the menu
    menus.save_draft("default", MENU, {"TIP_HOWTO": "新的说明"})
    rules = db_session.scalars(sa.select(ReplyRule).filter_by(pattern="TIP_HOWTO")).all()
    assert [r.reply_text for r in rules] == ["新的说明"]  # the same rule, updated
    assert menus.click_replies(MENU) == {"TIP_HOWTO": {"text": "新的说明", "editable": True, "enabled": True}}


def test_a_too_long_click_reply_is_refused_by_button_name(db_session):
    with pytest.raises(MenuError, match="菜单「随手拍」的回复内容超过 2048 字节"):
        menus.save_draft("default", MENU, {"TIP_HOWTO": "长" * 700})


def test_the_officers_menu_starts_as_the_default_menu_plus_upload(db_session):
    menus.save_draft("default", [TIPS, SERVICES])
    buttons, _ = menus.editor_buttons(MenuKind.CONDITIONAL)
    assert buttons == [TIPS, SERVICES, menus.OFFICER_UPLOAD]
    full = menus.with_officer_upload(MENU)  # three columns: into the last sub-menu with room
    assert full[1]["sub_button"][-1] == menus.OFFICER_UPLOAD and len(full) == 3
    validate_menu(full)
    leaves_only = menus.with_officer_upload([TIPS, ABOUT, leaf("三")])
    assert leaves_only[2] == {"name": "三", "sub_button": [leaf("三"), menus.OFFICER_UPLOAD]}
    validate_menu(leaves_only)


# ---------------------------------------------------------------------------------------------------------------
# Publishing through the emulator
# ---------------------------------------------------------------------------------------------------------------


def test_publish_sends_exactly_the_draft_and_records_it(db_session, emulator):
    editor = factories.staff("editor1", "editor")
    from server.services import audit

    token = audit.set_actor(audit.Actor(editor.id, editor.name, "127.0.0.1"))
    try:
        menus.save_draft("default", MENU)
        version = menus.publish_draft("default")
    finally:
        audit.reset_actor(token)
    assert emulator.state()["menu"]["button"] == wechat_shape(MENU)
    assert version.published_at is not None and version.created_by_id == editor.id and version.source == "console"
    assert menus.draft(MenuKind.DEFAULT) is None and menus.live(MenuKind.DEFAULT).id == version.id
    entry = db_session.scalar(sa.select(AuditLog).filter_by(action="menu.publish"))
    assert entry.before is None and entry.after["buttons"] == MENU and entry.staff_id == editor.id


def test_a_wechat_error_is_shown_with_its_code_and_nothing_is_published(db_session, emulator):
    menus.save_draft("default", MENU)
    emulator.hook("fail", {"path": "cgi-bin/menu/create", "errcode": 40018})
    with pytest.raises(MenuError) as caught:
        menus.publish_draft("default")
    assert str(caught.value) == "菜单发布失败：40018 一级菜单名称长度不合法（不超过 16 字节）"
    assert emulator.state()["menu"] is None
    assert menus.live(MenuKind.DEFAULT) is None and menus.draft(MenuKind.DEFAULT) is not None
    assert db_session.scalar(sa.select(AuditLog).filter_by(action="menu.publish")) is None


def test_a_code_without_a_chinese_text_shows_wechats_own_without_its_request_id(db_session, emulator):
    menus.save_draft("default", MENU)
    fail = {"path": "cgi-bin/menu/create", "errcode": 40033, "errmsg": "invalid charset hint: [x1] rid: 1-2-3"}
    emulator.hook("fail", fail)
    with pytest.raises(MenuError) as caught:
        menus.publish_draft("default")
    assert str(caught.value) == "菜单发布失败：40033 invalid charset"


def test_an_http_error_status_is_explained_not_shown_as_code_none(db_session, emulator):
    menus.save_draft("default", MENU)
    gateway = {"status": 503, "body": "<html>503</html>", "content_type": "text/html", "work": False}
    emulator.hook("garble", {"path": "cgi-bin/menu/create"} | gateway)
    with pytest.raises(MenuError) as caught:
        menus.publish_draft("default")
    assert str(caught.value) == "菜单发布失败：微信服务器暂时出错（HTTP 503），请稍后再试"
    assert menus.live(MenuKind.DEFAULT) is None and menus.draft(MenuKind.DEFAULT) is not None


def test_publishing_twice_without_changes_is_refused(db_session, emulator):
    menus.save_draft("default", MENU)
    menus.publish_draft("default")
    assert menus.save_draft("default", MENU) == menus.live(MenuKind.DEFAULT)  # a double submit stores nothing
    with pytest.raises(MenuError, match="无需重复发布"):
        menus.publish_draft("default")
    assert len(menus.history(MenuKind.DEFAULT)) == 1


def test_restore_publishes_an_older_version_again_as_a_new_one(db_session, emulator):
    menus.save_draft("default", MENU)
    old = menus.publish_draft("default")
    newer = [TIPS, ABOUT]
    menus.save_draft("default", newer)
    menus.publish_draft("default")
    assert emulator.state()["menu"]["button"] == wechat_shape(newer)
    menus.save_draft("default", [ABOUT])  # a pending draft, replaced by the restore
    restored = menus.restore_version(old.id)
    assert emulator.state()["menu"]["button"] == wechat_shape(MENU)
    assert restored.id not in (old.id,) and restored.source == "restored" and restored.buttons == MENU
    assert [v.id for v in menus.history(MenuKind.DEFAULT)][0] == restored.id
    assert len(menus.history(MenuKind.DEFAULT)) == 3  # every published version kept
    assert menus.draft(MenuKind.DEFAULT) is None
    entry = db_session.scalar(sa.select(AuditLog).filter_by(action="menu.restore"))
    assert entry.before["buttons"] == newer and entry.after["buttons"] == MENU


def test_a_failed_restore_records_nothing(db_session, emulator):
    menus.save_draft("default", MENU)
    old = menus.publish_draft("default")
    emulator.hook("fail", {"path": "cgi-bin/menu/create", "errcode": 45009})
    with pytest.raises(MenuError, match="45009"):
        menus.restore_version(old.id)
    assert len(menus.history(MenuKind.DEFAULT)) == 1


def test_pull_imports_the_live_menu_into_the_draft(db_session, emulator, app):
    live = copy.deepcopy(MENU)
    menus.get_client().post("menu/create", data={"button": live})  # set elsewhere, e.g. on mp.weixin.qq.com
    version = menus.pull_from_wechat("default")
    assert version.source == "pulled" and version.published_at is None and version.buttons == MENU
    assert menus.draft(MenuKind.DEFAULT).id == version.id


def test_a_failed_pull_says_it_was_the_pull_and_why(db_session, emulator):
    emulator.hook("fail", {"path": "cgi-bin/menu/get", "errcode": 48001})
    with pytest.raises(MenuError) as caught:
        menus.pull_from_wechat("default")
    assert str(caught.value) == "拉取菜单失败：48001 公众号没有此接口的权限（需微信认证）"
    assert menus.draft(MenuKind.DEFAULT) is None


def test_pull_of_an_empty_menu_says_so(db_session, emulator):
    with pytest.raises(MenuError, match="没有自定义菜单（46003）"):
        menus.pull_from_wechat("default")
    assert menus.draft(MenuKind.DEFAULT) is None


def test_conditional_menu_goes_to_the_officers_tag_and_replaces_the_previous_one(db_session, emulator):
    menus.save_draft("default", [TIPS, SERVICES])
    menus.publish_draft("default")
    buttons, _ = menus.editor_buttons(MenuKind.CONDITIONAL)
    menus.save_draft("conditional", buttons)
    first = menus.publish_draft("conditional")
    state = emulator.state()
    tag = next(t for t in state["tags"] if t["name"] == "一线队员")
    assert first.matchrule == {"tag_id": tag["id"]}
    assert state["conditional_menus"] == [
        {"button": wechat_shape(buttons), "matchrule": {"tag_id": tag["id"]}, "menuid": int(first.wechat_menuid)}
    ]
    assert state["menu"]["button"] == wechat_shape([TIPS, SERVICES])  # the default menu untouched
    edited = [*buttons[:2], {"type": "view", "name": "现场上传", "url": "https://example.gov.cn/m/upload"}]
    menus.save_draft("conditional", edited)
    second = menus.publish_draft("conditional")
    state = emulator.state()
    assert [m["menuid"] for m in state["conditional_menus"]] == [int(second.wechat_menuid)]  # old one deleted
    assert state["conditional_menus"][0]["button"] == wechat_shape(edited)
    assert [t["name"] for t in state["tags"]].count("一线队员") == 1  # the tag is reused, not created again
    entry = db_session.scalars(
        sa.select(AuditLog).filter_by(action="menu.publish").order_by(AuditLog.id.desc())
    ).first()
    assert entry.before["wechat_menuid"] == first.wechat_menuid and entry.after["wechat_menuid"] == second.wechat_menuid


def test_an_existing_officers_tag_is_used(db_session, emulator):
    created = menus.get_client().tag.create("一线队员")
    assert menus.officer_tag_id() == created["id"]


def test_conditional_menu_needs_a_default_menu_first(db_session, emulator):
    menus.save_draft("conditional", [TIPS, menus.OFFICER_UPLOAD])
    with pytest.raises(MenuError, match="65303"):
        menus.publish_draft("conditional")
    assert emulator.state()["conditional_menus"] == [] and menus.live(MenuKind.CONDITIONAL) is None


def test_pull_of_the_officers_menu(db_session, emulator):
    menus.save_draft("default", [TIPS])
    menus.publish_draft("default")
    with pytest.raises(MenuError, match="没有面向「一线队员」"):
        menus.pull_from_wechat("conditional")
    menus.save_draft("conditional", [TIPS, menus.OFFICER_UPLOAD])
    menus.publish_draft("conditional")
    menus.discard_draft("conditional")
    pulled = menus.pull_from_wechat("conditional")
    assert pulled.buttons == [TIPS, menus.OFFICER_UPLOAD] and pulled.kind is MenuKind.CONDITIONAL


def _officers_menu_published_and_edited() -> None:
    """A default menu and the officers' conditional one live, and a changed conditional draft saved."""
    menus.save_draft("default", [TIPS, SERVICES])
    menus.publish_draft("default")
    buttons, _ = menus.editor_buttons(MenuKind.CONDITIONAL)
    menus.save_draft("conditional", buttons)
    menus.publish_draft("conditional")
    menus.save_draft(
        "conditional", [*buttons[:2], {"type": "view", "name": "现场上传", "url": "https://example.gov.cn/u"}]
    )


def test_a_conditional_menu_whose_answer_was_lost_is_removed_by_the_next_publish(db_session, emulator):
    _officers_menu_published_and_edited()
    emulator.hook("garble", {"path": "cgi-bin/menu/addconditional"})  # WeChat made it; the menuid never came back
    with pytest.raises(MenuError):
        menus.publish_draft("conditional")
    assert len(emulator.state()["conditional_menus"]) == 2
    published = menus.publish_draft("conditional")
    # officers see one menu for their tag: the one recorded, not an unknown one left behind
    assert [m["menuid"] for m in emulator.state()["conditional_menus"]] == [int(published.wechat_menuid)]


def test_other_tags_conditional_menus_are_left_alone(db_session, emulator):
    menus.save_draft("default", [TIPS, SERVICES])
    menus.publish_draft("default")
    other = menus.get_client().tag.create("志愿者")["id"]
    theirs = menus.get_client().post(
        "menu/addconditional", data={"button": wechat_shape([TIPS]), "matchrule": {"tag_id": str(other)}}
    )["menuid"]
    buttons, _ = menus.editor_buttons(MenuKind.CONDITIONAL)
    menus.save_draft("conditional", buttons)
    ours = menus.publish_draft("conditional")
    assert sorted(m["menuid"] for m in emulator.state()["conditional_menus"]) == sorted(
        [int(theirs), int(ours.wechat_menuid)]
    )


def test_the_previous_conditional_menu_goes_even_when_wechat_cannot_list_them(db_session, emulator):
    _officers_menu_published_and_edited()
    emulator.hook("fail", {"path": "cgi-bin/menu/get", "errcode": -1})
    second = menus.publish_draft("conditional")
    assert [m["menuid"] for m in emulator.state()["conditional_menus"]] == [int(second.wechat_menuid)]
