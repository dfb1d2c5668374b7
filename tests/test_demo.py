"""The demo's in-process beat and emulator followers (server/demo.py)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from celery.schedules import crontab

from models import Follower
from server import demo
from server.wechat.emulator import create_emulator
from tests.conftest import APPID, SECRET

ran: list[str] = []


def _record(label: str) -> None:
    ran.append(label)


def _fail() -> None:
    raise RuntimeError("a job that breaks")


@pytest.fixture
def beat_tasks(app):
    """Two throwaway tasks on the app's (eager) Celery: one records its call, one fails."""
    celery = app.extensions["celery"]
    for name, fun in (("tests.demo.record", _record), ("tests.demo.fail", _fail)):
        if name not in celery.tasks:  # once per session: Celery warns on a second registration
            celery.task(name=name)(fun)
    ran.clear()
    yield celery
    ran.clear()


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 3, 2, 8, 0, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def test_due_jobs_run_at_their_schedule_and_undue_ones_do_not(beat_tasks, caplog):
    clock = Clock()
    schedule = {
        "broken": {"task": "tests.demo.fail", "schedule": 60.0},  # first: its failure must not stop the others
        "every-minute": {"task": "tests.demo.record", "schedule": 60.0, "args": ("interval",)},
        "hourly": {"task": "tests.demo.record", "schedule": 3600.0, "args": ("hourly",)},
        "minute-start": {"task": "tests.demo.record", "schedule": crontab(), "args": ("crontab",)},
    }
    beat = demo.DemoBeat(beat_tasks, schedule, now=clock)
    assert beat.tick() == pytest.approx(30) and ran == []  # the crontab's next slot, 08:01:00
    clock.advance(31)
    beat.tick()
    assert ran == ["crontab"]  # at the minute, not 60 s after start
    clock.advance(30)  # 61 s after start
    beat.tick()
    assert ran == ["crontab", "interval"]
    assert "broken (tests.demo.fail) failed" in caplog.text  # logged, and the loop went on
    beat.tick()
    assert ran == ["crontab", "interval"]  # nothing twice
    clock.advance(60)
    beat.tick()
    assert sorted(ran) == ["crontab", "crontab", "interval", "interval"]  # still no "hourly"


def test_the_thread_keeps_running_jobs_on_a_real_clock(beat_tasks):
    schedule = {
        "broken": {"task": "tests.demo.fail", "schedule": 0.02},
        "often": {"task": "tests.demo.record", "schedule": 0.02, "args": ("often",)},
        "rarely": {"task": "tests.demo.record", "schedule": 3600.0, "args": ("rarely",)},
    }
    beat, stop = demo.DemoBeat(beat_tasks, schedule), threading.Event()
    thread = threading.Thread(target=beat.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if ran.count("often") >= 3:
                break
            stop.wait(0.02)
    finally:
        stop.set()
        thread.join(5)
    assert ran.count("often") >= 3 and "rarely" not in ran
    assert not thread.is_alive()


def test_the_app_schedule_is_taken_as_configured(app):
    beat = demo.DemoBeat(app.extensions["celery"], app.config["CELERY"]["beat_schedule"])
    celery = app.extensions["celery"]
    assert {e.name for e in beat.entries} == set(app.config["CELERY"]["beat_schedule"])
    assert all(e.task in celery.tasks for e in beat.entries)  # every scheduled task exists
    assert app.config["CELERY"]["beat_schedule"]["articles-publish"]["schedule"].nowfun is None  # left as it was


@pytest.fixture
def demo_server(app, monkeypatch):
    """The settings scripts/run.sh's `flask run` has, on the test app."""
    for name, value in {"DEMO": True, "DEMO_BEAT": True, "TESTING": False, "PRODUCTION": False}.items():
        monkeypatch.setitem(app.config, name, value)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    return app


def test_only_the_demo_server_process_starts_the_beat(demo_server, monkeypatch):
    assert demo.should_start(demo_server)
    monkeypatch.setenv("FLASK_DEBUG", "1")  # the reloader's parent loads the app too, and serves nothing
    assert not demo.should_start(demo_server)
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")  # its child serves
    assert demo.should_start(demo_server)
    for name, value in {"DEMO_BEAT": False, "DEMO": False, "TESTING": True, "PRODUCTION": True}.items():
        with monkeypatch.context() as m:
            m.setitem(demo_server.config, name, value)
            assert not demo.should_start(demo_server), name
    monkeypatch.setitem(demo_server.extensions["celery"].conf, "task_always_eager", False)  # a broker: real beat
    assert not demo.should_start(demo_server)


def test_tests_and_cli_commands_do_not_start_it(app):
    assert not app.config["DEMO_BEAT"]  # only scripts/run.sh sets it, on `flask run`
    assert demo.start(app) is None
    assert not any(t.name == "demo-beat" for t in threading.enumerate())


def test_known_followers_are_registered_with_the_demo_emulator(app, db_session, monkeypatch):
    emulator = create_emulator(APPID, SECRET)
    monkeypatch.setitem(app.extensions, "wechat_emulator_app", emulator)
    at = datetime.now(UTC)
    db_session.add_all(
        [
            Follower(openid="o-demo-a", subscribed=True, subscribed_at=at, first_subscribed_at=at),
            Follower(openid="o-demo-gone", subscribed=False, subscribed_at=at, first_subscribed_at=at),
        ]
    )
    db_session.commit()
    assert demo.register_known_users(app) == 2
    users = {u["openid"]: u["subscribe"] for u in emulator.extensions["wechat_emulator"].snapshot()["users"]}
    assert users == {"o-demo-a": 1, "o-demo-gone": 0}


def test_events_the_emulated_wechat_pushes_reach_wechat_once(app, db_session, monkeypatch):
    import sqlalchemy as sa

    from models import InboundMessage

    emulator = create_emulator(APPID, SECRET)
    monkeypatch.setitem(app.extensions, "wechat_emulator_app", emulator)
    state = emulator.extensions["wechat_emulator"]
    event = {
        "ToUserName": state.gh_id,
        "FromUserName": "o-publisher",
        "CreateTime": int(datetime.now(UTC).timestamp()),
        "MsgType": "event",
        "Event": "PUBLISHJOBFINISH",
        "PublishEventInfo": {"publish_id": "100000001", "publish_status": 0},
    }
    state._push(event)
    forward = demo.PushForwarder(app)
    assert forward() == 1 and forward() == 0  # each event once
    logged = db_session.scalars(sa.select(InboundMessage.event).where(InboundMessage.openid == "o-publisher")).all()
    assert [e.lower() for e in logged] == ["publishjobfinish"]


def test_the_seeded_menu_is_published_to_the_demo_emulator_once(app, db_session, emulator, monkeypatch):
    from server.cli import demo_menu
    from server.services import menus

    monkeypatch.setitem(app.extensions, "wechat_emulator_app", emulator.app)  # the one the client calls over HTTP
    menus.save_draft("default", demo_menu("http://127.0.0.1:5000/"))
    assert demo.publish_menu(app) is True
    live = emulator.state()["menu"]
    assert [b["name"] for b in live["button"]] == ["随手拍", "活动报名", "联系我们"]
    assert demo.publish_menu(app) is False  # already live: once


def _ran() -> str:
    return "ran"


def test_without_redis_eager_tasks_run_on_a_broker_url_that_names_its_host(tmp_path):
    # The demo has no Redis: Celery still acquires a producer for an eager call, and a bare memory:// made kombu
    # log "No hostname was supplied" at the first call, a WARNING a newcomer reads as a fault.
    from celery import _state
    from flask import Flask
    from kombu import Connection

    from server.config import load_settings
    from server.extensions import init_celery

    bare = Flask(__name__)
    bare.config.update(load_settings(tmp_path, environ={}))
    assert bare.config["REDIS_URL"] == ""
    previous, current = _state.default_app, _state.get_current_app()
    celery = init_celery(bare)
    try:
        assert Connection(celery.conf.broker_url).hostname
        assert celery.task(name="tests.demo.no_broker", shared=False)(_ran).apply_async().get() == "ran"
    finally:  # a new Celery app becomes the current and default one: shared tasks would run in `bare` from now on
        _state._set_current_app(current)
        _state.set_default_app(previous)
