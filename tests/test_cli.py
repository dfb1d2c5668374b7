"""The simulator and the demo seed, as a newcomer runs them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from models import Event, Follower, InboundMessage, MaterialItem, MaterialState, ReplyRule, Staff
from server import demo
from server.cli import DEMO_OFFICER_OPENID, DEMO_PASSWORD
from server.services import staff as staff_service
from server.wechat.emulator import create_emulator
from tests.conftest import APPID, SECRET
from tests.services.test_images import jpeg_bytes


@pytest.mark.smoke
def test_seed_demo_then_simulated_conversation(app, db_session):
    runner = app.test_cli_runner()
    assert "seeded" in runner.invoke(args=["seed-demo"]).output
    assert "already" in runner.invoke(args=["seed-demo"]).output
    assert db_session.scalar(sa.select(sa.func.count()).select_from(ReplyRule)) == 7  # 6 and the channel QR's
    demo_admin = staff_service.authenticate("admin", DEMO_PASSWORD, "127.0.0.1")
    assert demo_admin.role.value == "admin" and not demo_admin.must_change_password

    result = runner.invoke(args=["wechat", "send", "你好", "--from", "o-newcomer"])
    assert result.exit_code == 0, result.output
    assert "← 您好！这里是城管执法局官方公众号" in result.output

    result = runner.invoke(
        args=["wechat", "send", "--aes", "--event", "subscribe", "--key", "qrscene_poster", "--from", "o-newcomer"]
    )
    assert result.exit_code == 0, result.output
    assert "欢迎关注城管执法局" in result.output
    follower = db_session.scalars(sa.select(Follower).filter_by(openid="o-newcomer")).one()
    assert follower.source_scene == "poster"

    result = runner.invoke(args=["wechat", "send", "--location", "31.2304,121.4737", "--from", "o-newcomer"])
    assert result.exit_code == 0 and "离您最近的城管执法社区联络点" in result.output  # the seeded points
    assert "人民广场城管执法社区工作室" in result.output
    result = runner.invoke(args=["wechat", "send", "--event", "CLICK", "--key", "EVENTS_LIST", "--from", "o-newcomer"])
    assert "7·15 公众开放日" in result.output  # the menu's 活动报名 lists the seeded open day
    assert db_session.scalar(sa.select(sa.func.count()).select_from(InboundMessage)) == 4

    # The open-day poster's channel QR, scanned by a follower: its reply leads to the seeded open day's page.
    open_day = db_session.scalars(sa.select(Event).filter_by(title="7·15 公众开放日")).one()
    result = runner.invoke(args=["wechat", "send", "--event", "SCAN", "--key", "open_day", "--from", "o-newcomer"])
    assert result.exit_code == 0, result.output
    assert "← 7·15 公众开放日正在报名" in result.output and f"/m/events/{open_day.id}" in result.output


def test_the_demo_officer_is_bound_and_the_simulators_photo_from_it_reaches_the_library(
    app, db_session, emulator, monkeypatch, tmp_path
):
    runner = app.test_cli_runner()
    for _ in range(2):  # scripts/run.sh may be run twice
        assert runner.invoke(args=["seed-demo"]).exit_code == 0
    [officer] = db_session.scalars(sa.select(Staff).where(Staff.openid == DEMO_OFFICER_OPENID)).all()
    assert officer.username == "officer" and officer.unit.name == "陆家嘴中队"

    # The demo server, once listening, tags the bound officer as binding would: the officers' menu applies to it.
    monkeypatch.setitem(app.extensions, "wechat_emulator_app", emulator.app)  # the one the client calls over HTTP
    demo.register_known_users(app)
    assert demo.tag_bound_officers(app) == 1 and demo.tag_bound_officers(app) == 1  # each start: harmless again
    tags = {t["name"]: t["id"] for t in emulator.state()["tags"]}
    [user] = [u for u in emulator.state()["users"] if u["openid"] == DEMO_OFFICER_OPENID]
    assert user["tagid_list"] == [tags["一线队员"]]
    monkeypatch.delitem(app.extensions, "wechat_emulator_app")  # the simulator then uses WECHAT_API_BASE's emulator

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes())
    result = runner.invoke(args=["wechat", "send", "--from", DEMO_OFFICER_OPENID, "--image", str(photo)])
    assert result.exit_code == 0 and "已收到 1 张现场照片，已存入素材库" in result.output, result.output
    result = runner.invoke(args=["wechat", "send", "陆家嘴环路占道经营整治", "--from", DEMO_OFFICER_OPENID])
    assert "1 张照片添加说明：「陆家嘴环路占道经营整治」" in result.output, result.output
    [item] = db_session.scalars(sa.select(MaterialItem)).all()
    assert (item.uploader_id, item.state, item.caption) == (officer.id, MaterialState.READY, "陆家嘴环路占道经营整治")


def test_simulated_senders_become_followers_of_the_demo_emulator_only(app, db_session, emulator, monkeypatch):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["wechat", "send", "你好", "--from", "o-stranger"]).exit_code == 0
    assert "o-stranger" not in {u["openid"] for u in emulator.state()["users"]}  # the tests' emulator stays strict

    demo_emulator = create_emulator(APPID, SECRET)  # what DEMO=1 mounts at /wechat-emulator
    monkeypatch.setitem(app.extensions, "wechat_emulator_app", demo_emulator)

    def known() -> dict[str, int]:
        return {u["openid"]: u["subscribe"] for u in demo_emulator.extensions["wechat_emulator"].snapshot()["users"]}

    assert runner.invoke(args=["wechat", "send", "你好"]).exit_code == 0
    assert known() == {"o-simulator-0001": 1}  # only followers can chat: the default sender works from the start
    runner.invoke(args=["wechat", "send", "--event", "unsubscribe", "--from", "o-demo-b"])
    assert known()["o-demo-b"] == 0
    runner.invoke(args=["wechat", "send", "--event", "subscribe", "--from", "o-demo-b"])
    assert known()["o-demo-b"] == 1

    # What the sender wrote opens WeChat's 48 hours for customer-service messages (an unsubscribe does not).
    def wrote() -> set[str]:
        return set(demo_emulator.extensions["wechat_emulator"].snapshot()["interactions"])

    assert wrote() == {"o-simulator-0001", "o-demo-b"}
    runner.invoke(args=["wechat", "send", "--event", "unsubscribe", "--from", "o-demo-c"])
    assert "o-demo-c" not in wrote()


def test_simulator_refuses_a_bad_location(app, db_session):
    result = app.test_cli_runner().invoke(args=["wechat", "send", "--location", "north"])
    assert result.exit_code != 0
    assert "LAT,LNG" in result.output
