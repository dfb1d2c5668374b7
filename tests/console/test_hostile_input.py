"""Hostile or odd input anywhere: a clear Chinese answer with a 4xx, never a 500 or a database error."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
import sqlalchemy as sa
from PIL import Image

from models import Article, ReplyRule, Tip
from server.inputs import DB_INT_MAX, to_ids, to_int
from server.services import articles, replies, votes
from tests import factories
from tests.services.test_publishing import approved, jpeg


def test_to_int_takes_ascii_digits_within_the_database_range_only():
    assert to_int("42") == 42 and to_int(" -7 ") == -7 and to_int(str(DB_INT_MAX)) == DB_INT_MAX
    for bad in ("²", "١٢", "1_000", "1.5", "", "abc", str(DB_INT_MAX + 1), "9" * 30, None):
        assert to_int(bad) is None, bad
    assert to_int("0", 1, lo=1) == 1 and to_int("13", hi=12) is None
    assert to_ids(["3", "x", "0", "²", "99999999999", "5"]) == [3, 5]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/tips/99999999999999999999",
        "/m/events/99999999999999999999",
        f"/m/vote/{DB_INT_MAX + 1}/c/1/share",
    ],
)
def test_an_id_beyond_any_row_is_404_not_a_database_error(client, db_session, path):
    res = client.get(path)
    assert res.status_code == 404


def test_nul_in_a_query_or_form_is_refused_in_chinese(as_admin):
    res = as_admin.get("/admin/staff?q=a%00b")
    assert res.status_code == 400 and "无效字符" in res.get_data(as_text=True)
    res = as_admin.post("/admin/contacts/new", {"name": "联络点\x00"})
    assert res.status_code == 400 and "无效字符" in res.get_data(as_text=True)
    res = as_admin.get("/m/tips/A%00B")  # a path part that is looked up, as a tracking number is
    assert res.status_code == 400 and "无效字符" in res.get_data(as_text=True)


@pytest.mark.parametrize(
    "path", ["/admin/followers?page=²", "/admin/tips?page=١٢&unit=²", "/admin/materials?before=²&officer=²"]
)
def test_unicode_digits_in_numbers_fall_back_to_defaults(as_admin, path):
    assert as_admin.get(path).status_code == 200


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/admin/alerts/feed?after=" + "9" * 30, None),
        ("/admin/audit?before=99999999999", None),
        ("/admin/binding", {"staff_id": "99999999999", "hours": "24"}),
    ],
)
def test_a_number_beyond_the_id_range_is_stopped_before_the_database(as_admin, caplog, path, form):
    # Not left to the DataError net below: on the embedded SQLite the same value is an OverflowError, a 500.
    res = as_admin.post(path, form) if form else as_admin.get(path)
    assert res.status_code in (200, 400)
    assert "input refused by the database" not in caplog.text


def test_a_value_the_database_refuses_is_a_400_and_the_session_is_usable_again(app, db_session):
    # The safety net for a field no check knows: PostgreSQL's range error is the input's fault, not a 500.
    with app.test_request_context("/admin/x", method="POST"):
        try:
            db_session.execute(sa.text("SELECT CAST(:n AS integer)"), {"n": "99999999999"})
        except sa.exc.DataError as exc:
            res = app.make_response(app.handle_user_exception(exc))
        assert res.status_code == 400 and "超出允许范围" in res.get_data(as_text=True)
        assert db_session.execute(sa.text("SELECT 1")).scalar() == 1  # rolled back, not left aborted


def test_error_pages_speak_chinese_and_lead_home_on_their_own_side(client, db_session):
    res = client.post("/m/tips", data={"description": "x"})  # no citizen session: WeChat dropped the cookie
    page = res.get_data(as_text=True)
    assert res.status_code == 401 and "请从公众号菜单重新进入" in page and "authorized" not in page
    page = client.get("/m/no-such-page").get_data(as_text=True)
    assert 'href="/m/"' in page and "citizen.css" in page
    assert 'href="/admin/"' in client.get("/admin/no-such-page").get_data(as_text=True)
    res = client.post("/m/tips", data={}, headers={"Accept": "application/json"})
    assert res.status_code == 401 and "公众号菜单" in res.get_json()["error"]


@pytest.mark.parametrize(
    ("path", "accept", "home"),
    [
        ("/m/tips/new", "text/html", 'href="/m/"'),
        ("/admin/tips", "text/html", 'href="/admin/"'),
        ("/m/x", "application/json", None),
    ],
)
def test_an_unexpected_error_is_answered_like_the_others_on_its_own_side(app, db_session, path, accept, home):
    with app.test_request_context(path, headers={"Accept": accept}):
        res = app.make_response(app.handle_user_exception(RuntimeError("boom")))
    assert res.status_code == 500
    if home:
        assert "系统繁忙" in res.get_data(as_text=True) and home in res.get_data(as_text=True)
    else:
        assert res.get_json() == {"error": "系统繁忙，请稍后再试", "status": 500}


def test_an_expired_form_token_says_what_to_do_and_tokens_do_not_expire_by_the_clock(app, as_admin):
    assert app.config["WTF_CSRF_TIME_LIMIT"] is None  # bound to the session, not to an hour of writing
    as_admin.token = "stale"
    res = as_admin.post("/admin/articles/new", {"title": "标题", "body_html": "<p>正文</p>"})
    assert res.status_code == 400 and "页面已过期" in res.get_data(as_text=True)


def test_an_article_names_a_missing_column_or_unit_instead_of_failing(as_admin, db_session):
    for field, value, message in (
        ("column_id", "abc", "栏目不存在"),
        ("column_id", "999", "栏目不存在"),
        ("unit_id", "-1", "单位不存在"),
        ("unit_id", "1.0", "单位不存在"),
    ):
        res = as_admin.post("/admin/articles/new", {"title": "标题", "body_html": "<p>正文</p>", field: value})
        assert res.status_code == 400 and message in res.get_data(as_text=True), (field, value)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Article)) == 0


def test_an_article_form_with_fields_named_like_the_services_arguments_saves_only_its_own(as_admin, db_session):
    # The form was once spread into save_article(**form): a field "cover" or "article_id" was a TypeError (500).
    form = {
        "title": "标题",
        "body_html": "<p>正文</p>",
        "cover": "x",
        "article_id": "7",
        "by": "1",
        "status": "approved",
    }
    res = as_admin.post("/admin/articles/new", form)
    assert res.status_code == 302
    article = db_session.scalar(sa.select(Article))
    assert article.title == "标题" and article.status == "draft" and article.cover_path is None


def test_a_push_in_year_one_is_a_form_error(as_admin, db_session):
    article = approved(factories.newsroom(), "年份")
    res = as_admin.post("/admin/articles/pushes/new", {"scheduled_at": "0001-01-01T00:00", "article_id": article.id})
    assert res.status_code == 400 and "请填写有效的发布时间" in res.get_data(as_text=True)


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("size", [(1, 1), (1, 60000), (400, 20)])
def test_a_cover_too_small_or_too_narrow_is_refused_with_a_reason(size):
    with pytest.raises(articles.images.ImageRejected, match="封面图片太小或过于狭长"):
        articles.cover_jpeg(_png(*size))


def test_a_cover_of_a_normal_photo_still_works():
    with Image.open(io.BytesIO(articles.cover_jpeg(jpeg(1200, 700)))) as img:
        assert img.width == 900 and abs(img.width / img.height - articles.COVER_RATIO) < 0.01


def test_a_candidate_photo_with_a_broken_checksum_is_refused_not_a_500(app):
    data = bytearray(_png(64, 64))
    ihdr_crc = 8 + 4 + 4 + 13  # signature, IHDR length and type, 13 bytes of IHDR
    data[ihdr_crc : ihdr_crc + 4] = struct.pack(">I", zlib.crc32(b"broken") & 0xFFFFFFFF)
    with app.test_request_context(), pytest.raises(votes.ServiceError, match="图片"):
        votes.store_photo(bytes(data))


def test_a_candidate_photo_is_stored_upright_without_metadata(app, tmp_path):
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° to show
    Image.new("RGB", (300, 100), (10, 20, 30)).save(out, "JPEG", exif=exif)
    with app.test_request_context():
        path = votes.store_photo(out.getvalue())
        with Image.open(votes.images.media_path(path)) as img:
            assert img.size == (100, 300) and not img.getexif()


@pytest.mark.parametrize(
    "payload",
    [
        '{"buttons":[],"replies":[1]}',
        '{"buttons":[],"replies":"abc"}',
        '{"buttons":[{"name":"a","type":["click"]}]}',
        '{"buttons":[{"name":"\\ud800","type":"click","key":"K"}]}',
        '{"buttons":[{"name":"a\\u0000","type":"click","key":"K"}]}',
        '{"buttons":' + "[" * 3000 + "]" * 3000 + "}",
    ],
)
def test_the_menu_editor_refuses_shapes_it_never_sends(as_admin, db_session, payload):
    res = as_admin.post("/admin/menu/draft", {"kind": "default", "payload": payload})
    assert res.status_code == 400
    page = res.get_data(as_text=True)
    assert "菜单" in page and ("格式不正确" in page or "无效字符" in page or "菜单类型" in page)


def test_a_regex_rule_cannot_stall_a_citizen_message(wechat, db_session):
    # Under Python's backtracking `re` this message takes hours (2^33 paths); pytest-timeout would fail the test.
    factories.rule(r"^(a+)+$", "全是 a", match_type="regex")
    assert wechat.text("o-redos", "a" * 33 + "!") is None  # no match, no default reply: "success"
    assert wechat.text("o-redos", "aaaa")["Content"] == "全是 a"


def test_regex_rules_refuse_what_re2_cannot_match_in_linear_time(db_session):
    for pattern in (r"(a)\1", r"foo(?=bar)", "a{1001}"):
        with pytest.raises(replies.ServiceError, match="正则表达式有误或用了不支持的写法"):
            replies.validate_rule("regex", pattern, "text", "x", None, None)


def test_an_old_rule_re2_cannot_compile_is_skipped_and_the_others_still_answer(wechat, db_session):
    db_session.add(ReplyRule(name="old", match_type="regex", pattern=r"(a)\1", reply_type="text", reply_text="x"))
    db_session.commit()
    factories.rule("你好", "您好！")  # saving it also tells the rule cache to reload
    assert wechat.text("o-old", "aa") is None  # the broken rule matches nothing
    assert wechat.text("o-old", "你好")["Content"] == "您好！"


def test_a_tip_that_fails_to_commit_returns_its_quota_and_leaves_no_files(app, db_session, redis_client, monkeypatch):
    from server.services import images, tips

    photo = jpeg(800, 600)
    keys, _ = tips._quota_keys("o-fail", "10.0.0.9")
    root = images.media_root()
    before = {p for p in root.rglob("*") if p.is_file()}
    real_commit = db_session.commit

    def failing_commit():
        raise sa.exc.OperationalError("COMMIT", {}, Exception("server closed the connection"))

    with app.test_request_context():
        monkeypatch.setattr(db_session, "commit", failing_commit)
        with pytest.raises(sa.exc.OperationalError):
            tips.submit_tip(
                "o-fail",
                category=tips.categories()[0].name,
                description="门口占道经营",
                photos=[photo],
                latitude=31.2,
                longitude=121.4,
                submit_key="k-fail",
                ip="10.0.0.9",
            )
        monkeypatch.setattr(db_session, "commit", real_commit)
    assert all(int(redis_client.get(k) or 0) == 0 for k in keys)  # the quota went back
    left = {p for p in root.rglob("*") if p.is_file()} - before
    assert all("original" in p.as_posix() for p in left), left  # originals are content-addressed evidence
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 0
