"""Keyword rules: match types, priority, enabled flag, validation, and other processes seeing edits."""

from __future__ import annotations

import pytest

from server.services import ServiceError, replies
from tests.factories import rule


def _answer(text: str) -> str | None:
    spec = replies.match_keyword(text)
    return spec.text if spec else None


def test_exact_contains_and_regex(db_session):
    rule("开放日", "exact!", match_type="exact")
    rule("报名", "contains!")
    rule(r"^\d{11}$", "phone!", match_type="regex")
    assert _answer(" 开放日 ") == "exact!"
    assert _answer("开放日怎么报名") == "contains!"
    assert _answer("13800000000") == "phone!"
    assert _answer("138000000001") is None


def test_keywords_match_what_phone_keyboards_type(db_session):
    # Citizens' IMEs send full-width letters, digits and spaces, any case, and a question mark or full stop after
    # the word; the editor wrote the keyword once, plainly, and expects all of these to be answered by it.
    rule("随手拍", "exact!", match_type="exact")
    rule("WiFi", "contains!")
    rule(r"^[A-Z0-9]{4}[- ]?[A-Z0-9]{4}$", "regex!", match_type="regex")
    assert _answer("随手拍。") == "exact!"
    assert _answer("随手拍？") == "exact!"
    assert _answer("随 手 拍") == "exact!"
    assert _answer("随\u3000手拍") == "exact!"
    assert _answer("大厅有没有wifi") == "contains!"
    assert _answer("ＷＩＦＩ密码") == "contains!"
    assert _answer("ＡＢＣＤ１２３４") == "regex!"
    assert _answer("ＡＢＣＤ－１２３４") == "regex!"
    assert _answer("随手拍了一张") is None  # exact still means the whole message


def test_keyword_rules_written_before_still_match_and_latin_words_do_not_match_inside_others(db_session):
    # Regexes with full-width forms of their own (editors type （）：？ in patterns) match as they did.
    rule("投诉（.*）", "brackets", match_type="regex", priority=5)
    rule("查询：(\\d+)", "colon", match_type="regex", priority=5)
    assert _answer("投诉（占道）") == "brackets"
    assert _answer("查询：123") == "colon"
    # A Latin keyword is a word in any case, and still anything it was a part of as written.
    rule("AI", "ai", priority=1)
    assert _answer("想问问ai的事") == "ai" and _answer("AIGC 是什么") == "ai" and _answer("ＡＩ") == "ai"
    assert _answer("please email me") is None and _answer("mail") is None
    rule("ok", "ok", priority=1)
    assert _answer("go kart") is None  # no match across words


def test_higher_priority_wins_then_older_rule(db_session):
    rule("城管", "low", priority=1)
    rule("城管执法", "high", priority=9)
    rule("城管", "same priority, newer", priority=1)
    assert _answer("城管执法局") == "high"
    assert _answer("城管") == "low"


def test_rules_that_can_never_answer_are_found_with_the_rule_that_answers_first(db_session):
    wifi = rule("WiFi", "first", match_type="exact", priority=5)
    same_key = rule("ｗｉｆｉ？", "never", match_type="exact", priority=1)  # folds to the same key: never reached
    assert _answer("wifi") == "first"
    garbage = rule("垃圾", "garbage", priority=3)
    sorting = rule("垃圾分类", "never either", priority=2)  # every message holding 垃圾分类 holds 垃圾
    bin_exact = rule("垃圾桶", "exact under contains", match_type="exact", priority=0)
    newer_tie = rule("垃 圾", "tie, newer", priority=3)
    assert _answer("垃圾分类怎么做") == "garbage" and _answer("垃圾桶") == "garbage"
    # Rules that still answer some messages are not listed: a higher-priority longer keyword, a regex, a Latin word.
    rule("垃圾分类指南", "reached", priority=9)
    rule("^垃圾$", "regex", match_type="regex", priority=8)
    rule("ai", "latin word", priority=7)
    rule("ai助手", "latin, judged by word rules", priority=0)
    shadowed = replies.shadowed_rules()
    assert {rule_id: by.id for rule_id, by in shadowed.items()} == {
        same_key.id: wifi.id,
        sorting.id: garbage.id,
        bin_exact.id: garbage.id,
        newer_tie.id: garbage.id,
    }
    # Raising the shadowed rule's priority frees it; a disabled rule shadows nothing.
    replies.save_rule(name="垃圾分类", match_type="contains", pattern="垃圾分类", reply_text="now first", priority=4,
                      rule=sorting)  # fmt: skip
    replies.set_rule_enabled(wifi, False)
    assert sorting.id not in replies.shadowed_rules() and same_key.id not in replies.shadowed_rules()
    assert _answer("垃圾分类") == "now first"


def test_disabled_rules_do_not_answer(db_session):
    r = rule("投诉", "x")
    replies.save_rule(name="投诉", match_type="contains", pattern="投诉", reply_text="x", enabled=False, rule=r)
    assert _answer("我要投诉") is None


def test_an_edit_in_another_process_is_seen_within_the_cache_window(db_session, redis_client, monkeypatch):
    rule("你好", "v1")
    assert _answer("你好") == "v1"
    r = rule("你好", "v2", priority=5)
    monkeypatch.setattr(replies, "CACHE_SECONDS", 0.0)
    # As if this process had not made the edit: its cache still holds v1 under the version it last saw.
    replies._cache._loaded, replies._cache._version = True, redis_client.get(replies.VERSION_KEY)
    assert _answer("你好") == "v1"
    redis_client.set(replies.VERSION_KEY, "changed-elsewhere")
    assert _answer("你好") == "v2"
    assert r.priority == 5


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"match_type": "regex", "pattern": "(unclosed", "reply_type": "text", "reply_text": "x"}, "正则表达式"),
        ({"match_type": "contains", "pattern": "", "reply_type": "text", "reply_text": "x"}, "关键词"),
        ({"match_type": "contains", "pattern": "a", "reply_type": "text", "reply_text": " "}, "内容"),
        ({"match_type": "contains", "pattern": "a", "reply_type": "image", "reply_text": None}, "media_id"),
        ({"match_type": "contains", "pattern": "a", "reply_type": "news", "reply_text": None}, "1 到 8"),
        ({"match_type": "fuzzy", "pattern": "a", "reply_type": "text", "reply_text": "x"}, "匹配方式"),
    ],
)
def test_invalid_rules_are_refused_with_a_message(db_session, kwargs, message):
    with pytest.raises(ServiceError, match=message):
        replies.validate_rule(media_id=None, articles=None, **kwargs)


def test_image_and_news_replies(wechat, db_session):
    replies.save_rule(name="img", match_type="exact", pattern="海报", reply_type="image", media_id="MEDIA1")
    replies.save_rule(
        name="news",
        match_type="exact",
        pattern="新闻",
        reply_type="news",
        articles=[{"title": "开放日", "description": "报名", "image": "https://e/x.jpg", "url": "https://e/a"}],
    )
    image = wechat.text("o-1", "海报")
    assert image["MsgType"] == "image" and image["Image"]["MediaId"] == "MEDIA1"
    news = wechat.text("o-1", "新闻")
    assert news["MsgType"] == "news" and news["Articles"]["item"]["Title"] == "开放日"


def test_a_keyword_rule_saved_with_several_articles_before_the_check_answers_with_its_first(wechat, db_session):
    from models import MatchType, ReplyRule, ReplyType

    article = {"description": "", "image": "https://e/x.jpg", "url": "https://e/a"}
    db_session.add(
        ReplyRule(
            name="old",
            match_type=MatchType.EXACT,
            pattern="旧图文",
            reply_type=ReplyType.NEWS,
            articles=[{**article, "title": "第一篇"}, {**article, "title": "第二篇"}],
            enabled=True,
            priority=0,
        )
    )
    db_session.commit()
    replies.rules_changed()
    news = wechat.text("o-1", "旧图文")  # WeChat takes one article in reply to a message
    assert news["ArticleCount"] == "1" and news["Articles"]["item"]["Title"] == "第一篇"
