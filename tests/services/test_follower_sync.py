"""Followers from WeChat's own list: those from before go-live, missed follows and unfollows, cheap re-runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from wechatpy.exceptions import WeChatClientException

from models import Follower
from server.extensions import db, get_redis
from server.services import follower_sync, followers

LONG_AGO = int(datetime(2024, 3, 1, 8, 0, tzinfo=UTC).timestamp())


def rows() -> dict[str, Follower]:
    db.session.expire_all()
    return {f.openid: f for f in db.session.scalars(sa.select(Follower))}


def calls(emulator, path: str) -> int:
    return sum(1 for c in emulator.state()["calls"] if c["path"] == path)


def test_followers_from_before_go_live_are_added_with_their_time_scene_and_remark(emulator, db_session):
    emulator.hook(
        "users",
        {
            "users": [
                {"openid": "o-old-1", "subscribe_time": LONG_AGO, "remark": "老粉丝"},
                {
                    "openid": "o-old-2",
                    "subscribe_time": LONG_AGO + 60,
                    "subscribe_scene": "ADD_SCENE_QR_CODE",
                    "qr_scene_str": "poster",
                },
                {"openid": "o-gone", "subscribe": 0},
            ]
        },
    )
    result = follower_sync.sync_from_wechat()
    assert result is not None and (result.total, result.seen, result.added, result.left) == (2, 2, 2, 0)
    held = rows()
    assert set(held) == {"o-old-1", "o-old-2"}
    assert held["o-old-1"].subscribed and held["o-old-1"].subscribed_at == datetime.fromtimestamp(LONG_AGO, UTC)
    assert held["o-old-1"].first_subscribed_at == held["o-old-1"].subscribed_at and held["o-old-1"].remark == "老粉丝"
    assert held["o-old-2"].source_scene == "poster" and held["o-old-1"].source_scene is None
    state = follower_sync.state()
    assert state is not None and state.added == 2 and not follower_sync.running(state) and state.finished


def test_a_staff_binding_qr_is_not_taken_for_a_source_scene(emulator, db_session):
    # As the subscribe event has it (handlers/binding.py): a bind_<token> QR brings staff, not an audience.
    bound = {"subscribe_scene": "ADD_SCENE_QR_CODE", "qr_scene_str": "bind_5Kx9TqLw2m"}
    emulator.hook("users", {"users": [{"openid": "o-officer", **bound}, {"openid": "o-back", **bound}]})
    followers.subscribe("o-back", datetime.now(UTC) - timedelta(days=9))
    followers.unsubscribe("o-back", datetime.now(UTC) - timedelta(days=5))
    assert follower_sync.sync_from_wechat().added == 1
    assert {f.openid: f.source_scene for f in rows().values()} == {"o-officer": None, "o-back": None}


def test_pages_are_followed_and_a_second_run_looks_up_nobody(emulator, db_session):
    emulator.hook("user-page-size", {"size": 2})
    emulator.hook("users", {"openids": [f"o-p{i}" for i in range(5)]})
    followers.subscribe("o-p0", datetime.now(UTC))  # known and subscribed: never looked up
    assert follower_sync.sync_from_wechat().added == 4
    assert len(rows()) == 5
    assert calls(emulator, "cgi-bin/user/get") == 4  # 2 + 2 + 1, then the empty page WeChat ends the list with
    looked_up = [
        u["openid"]
        for c in emulator.state()["calls"]
        if c["path"] == "cgi-bin/user/info/batchget"
        for u in c["body"]["user_list"]
    ]
    assert sorted(looked_up) == [f"o-p{i}" for i in range(1, 5)]
    emulator.hook("clear-calls")
    again = follower_sync.sync_from_wechat()
    assert (again.seen, again.added, again.back, again.left) == (5, 0, 0, 0)
    assert calls(emulator, "cgi-bin/user/info/batchget") == 0 and calls(emulator, "cgi-bin/user/get") == 4


def test_a_missed_unfollow_and_a_missed_follow_again_are_set_right(emulator, db_session):
    now = datetime.now(UTC)
    followers.subscribe("o-left", now - timedelta(days=3))  # left while the server was down: not on the list
    followers.subscribe("o-back", now - timedelta(days=9))
    followers.unsubscribe("o-back", now - timedelta(days=5))  # followed again while the server was down
    followers.subscribe("o-stays", now - timedelta(days=2))
    back_at = int((now - timedelta(days=1)).timestamp())
    emulator.hook("users", {"users": [{"openid": "o-back", "subscribe_time": back_at}, {"openid": "o-stays"}]})
    result = follower_sync.sync_from_wechat()
    assert (result.added, result.back, result.left) == (0, 1, 1)
    held = rows()
    assert not held["o-left"].subscribed and held["o-left"].unsubscribed_at is not None
    assert held["o-back"].subscribed and held["o-back"].unsubscribed_at is None
    assert held["o-back"].subscribed_at == datetime.fromtimestamp(back_at, UTC)
    assert held["o-back"].first_subscribed_at == now - timedelta(days=9)  # the first follow stays the first
    assert held["o-stays"].subscribed


def test_a_follow_recorded_during_the_run_is_not_taken_for_an_unfollow(emulator, db_session):
    # Its subscribe event is newer than the run's start: the pages already read cannot have listed it.
    followers.subscribe("o-just-now", datetime.now(UTC) + timedelta(seconds=30))
    emulator.hook("users", {"openids": ["o-other"]})
    assert follower_sync.sync_from_wechat().left == 0
    assert rows()["o-just-now"].subscribed


def test_a_failed_page_marks_nobody_as_gone_and_the_page_says_why(emulator, db_session):
    followers.subscribe("o-local", datetime.now(UTC) - timedelta(days=1))
    emulator.hook("user-page-size", {"size": 1})
    emulator.hook("users", {"openids": ["o-a", "o-b"]})
    emulator.hook("fail", {"path": "cgi-bin/user/info/batchget", "errcode": 45009, "times": 1})
    with pytest.raises(WeChatClientException):
        follower_sync.sync_from_wechat()
    assert rows()["o-local"].subscribed
    state = follower_sync.state()
    assert state is not None and "45009" in state.error and not follower_sync.running(state)


def test_a_list_much_shorter_than_wechats_count_marks_nobody_as_gone(emulator, db_session, monkeypatch):
    followers.subscribe("o-local", datetime.now(UTC) - timedelta(days=1))
    emulator.hook("users", {"openids": ["o-a"]})
    monkeypatch.setattr(follower_sync, "COMPLETE", 1.5)  # as if the pages had held a third of WeChat's count
    result = follower_sync.sync_from_wechat()
    assert result.left == 0 and "不完整" in result.error and rows()["o-local"].subscribed


def test_a_second_worker_finds_the_run_taken(emulator, db_session):
    lock = get_redis().lock(follower_sync.LOCK_NAME, timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert follower_sync.sync_from_wechat() is None
    finally:
        lock.release()


def test_a_follow_stamped_a_moment_before_the_run_is_not_taken_for_an_unfollow(emulator, db_session):
    # CreateTime is in whole seconds (and WeChat's clock is not ours): a follow made as the run started, after the
    # page that would list it was read, carries a time just before the start.
    followers.subscribe("o-a-moment-ago", datetime.now(UTC).replace(microsecond=0))
    emulator.hook("users", {"openids": ["o-other"]})
    assert follower_sync.sync_from_wechat().left == 0
    assert rows()["o-a-moment-ago"].subscribed


def test_an_unfollow_stamped_a_moment_before_the_run_stands(emulator, db_session):
    # The page was read before WeChat dropped them from its list; their unsubscribe event is the newer word.
    followers.subscribe("o-leaving", datetime.now(UTC) - timedelta(days=3))
    followers.unsubscribe("o-leaving", datetime.now(UTC).replace(microsecond=0))
    emulator.hook("users", {"openids": ["o-leaving"]})
    assert follower_sync.sync_from_wechat().back == 0
    assert not rows()["o-leaving"].subscribed


def test_a_page_with_openids_left_out_marks_nobody_as_gone(emulator, db_session):
    # 1 of 300 missing passes the 99 % count, but a short page before the last gives the gap away.
    followers.subscribe("o-local", datetime.now(UTC) - timedelta(days=1))
    emulator.hook("user-page-size", {"size": 100})
    emulator.hook("users", {"openids": [f"o-{i:03d}" for i in range(300)]})
    emulator.hook("user-page-gap", {"missing": 1})
    result = follower_sync.sync_from_wechat()
    assert (result.seen, result.left) == (299, 0) and "不完整" in result.error
    assert rows()["o-local"].subscribed
    again = follower_sync.sync_from_wechat()  # the list whole again: the absence counts
    assert (again.seen, again.left) == (300, 1) and not again.error and not rows()["o-local"].subscribed


def test_one_known_only_from_a_scan_gets_the_time_wechat_has(emulator, db_session):
    # Followed before go-live, then scanned the poster: held as following, with no date, until WeChat's list says.
    followers.scan("o-scanned", "open_day", datetime.now(UTC))
    assert rows()["o-scanned"].subscribed and rows()["o-scanned"].subscribed_at is None
    emulator.hook("users", {"users": [{"openid": "o-scanned", "subscribe_time": LONG_AGO}]})
    result = follower_sync.sync_from_wechat()
    assert (result.added, result.back, result.left) == (1, 0, 0)
    assert (
        rows()["o-scanned"].subscribed_at
        == rows()["o-scanned"].first_subscribed_at
        == datetime.fromtimestamp(LONG_AGO, UTC)
    )
