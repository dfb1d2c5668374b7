"""Fixtures: the app on the real test PostgreSQL and Redis, the WeChat emulator over HTTP, the simulator."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import g
from flask_migrate import downgrade, upgrade
from werkzeug.serving import make_server

from server import create_app
from server.extensions import db
from server.wechat import simulator
from server.wechat.emulator import create_emulator, opens_window

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SQLITE = TEST_DATABASE_URL.startswith("sqlite")
TOKEN, APPID, SECRET = "testtoken", "wxtest0000000000ab", "testsecret"
AES_KEY = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
ORIGINAL_ID = "gh_test0000000"

# What tried to resolve a real WeChat host during the run; the client tests assert it stays empty.
foreign_lookups: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _no_real_wechat() -> Iterator[None]:
    """Make any attempt to reach *.qq.com fail loudly (and be recorded) instead of leaving the machine."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name == "qq.com" or name.endswith(".qq.com"):
            foreign_lookups.append(name)
            raise OSError(f"test guard: no request may leave for {name}")
        return real(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", guarded)
        yield


@dataclass
class Emulator:
    url: str
    app: Any
    _http: requests.Session = field(default_factory=requests.Session)

    def state(self) -> dict[str, Any]:
        return self._http.get(self.url + "_emulator/state", timeout=5).json()

    def hook(self, name: str, payload: dict[str, Any] | None = None) -> requests.Response:
        res = self._http.post(self.url + f"_emulator/{name}", json=payload or {}, timeout=5)
        res.raise_for_status()
        return res


def serve_in_thread(wsgi_app: Any) -> tuple[str, Any]:
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/", server


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """WeChat's API, emulated, on a local port: the app's client talks to it over real HTTP."""
    app = create_emulator(APPID, SECRET)
    url, server = serve_in_thread(app)
    yield Emulator(url, app)
    server.shutdown()


@pytest.fixture(autouse=True)
def _fresh_emulator(request: pytest.FixtureRequest) -> None:
    if "emulator" in request.fixturenames:
        request.getfixturevalue("emulator").hook("reset")


def test_config(emulator_url: str) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": TEST_DATABASE_URL,
        "REDIS_URL": "" if SQLITE else TEST_REDIS_URL,
        "WECHAT_TOKEN": TOKEN,
        "WECHAT_APPID": APPID,
        "WECHAT_SECRET": SECRET,
        "WECHAT_AES_KEY": AES_KEY,
        "WECHAT_API_BASE": emulator_url,
        "WECHAT_HANDLER_TIMEOUT": 1.0,
        "WECHAT_LOG_WRITER": "inline",  # through the test's transaction; the live server runs the batch writer
        "DEMO": False,
    }


@pytest.fixture(scope="session")
def app(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory):
    config = test_config(emulator.url)
    config["MEDIA_ROOT"] = str(tmp_path_factory.mktemp("media"))
    app = create_app(config)

    @app.before_request
    def _fresh_g() -> None:
        # A test's requests share the app context its fixtures hold open, and with it `g`, where Flask-Login keeps the
        # user it loaded and Flask-WTF the form token: a second browser would be served as whoever came first. Each
        # request starts with an empty `g`, as it does in production (one app context per request).
        vars(g).clear()

    with app.app_context():
        if SQLITE:
            db.drop_all()
        else:
            with db.engine.begin() as conn:  # a clean slate even after an interrupted run
                conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade(revision="heads")  # "heads": parallel branches of work may each add one until they are merged
        downgrade(revision="base")  # every run proves the migrations in both directions
        upgrade(revision="heads")
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def redis_client(app):
    client = app.extensions["redis"]
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def broker(app, monkeypatch):
    """Tasks go to the app's broker instead of running inline; returns what was queued: (task name, arguments)."""
    celery = app.extensions["celery"]
    monkeypatch.setitem(celery.conf, "task_always_eager", False)
    seen: list[tuple[str, str]] = []

    def queued() -> list[tuple[str, str]]:
        with celery.connection_for_read() as conn:
            while (message := conn.default_channel.basic_get("celery", no_ack=True)) is not None:
                seen.append((message.headers["task"], message.headers["argsrepr"]))
        return seen

    queued()  # whatever an earlier test left
    yield queued
    queued()


@pytest.fixture
def redis_down(app, monkeypatch):
    """Redis stopped (or restarting): a client built as init_redis builds it, on a port that refuses connections."""
    import redis

    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=2, socket_connect_timeout=2)
    monkeypatch.setitem(app.extensions, "redis", dead)
    # The WeChat client keeps its tokens in Redis too: one built now holds the dead Redis, and must not outlive the test
    monkeypatch.setitem(app.extensions, "wechat_client", None)
    return dead


@pytest.fixture
def db_session(app, redis_client, monkeypatch):
    """One transaction per test, rolled back afterwards; the code under test may commit and roll back."""
    with app.app_context():
        if SQLITE:  # pysqlite's savepoints are unreliable: clean up by deleting instead
            yield db.session
            db.session.remove()
            _empty_tables()
            _forget_caches()
            return
        connection = db.engine.connect()
        outer = connection.begin()
        connection.begin_nested()  # sessions joining a SAVEPOINT make their own: commit/rollback stay inside
        monkeypatch.setitem(db.engines, None, connection)  # requests, handler threads and eager tasks use it too
        db.session.remove()
        yield db.session
        db.session.remove()
        outer.rollback()
        connection.close()
        _forget_caches()


def _forget_caches() -> None:
    """Rules and alert terms rolled back with the test: a process cache would still answer with them for a second."""
    from server.services import alerts, replies

    replies._cache.clear()
    alerts._cache.clear()


def _empty_tables() -> None:
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def committed_db(app, redis_client):
    """For tests where several connections or processes must see each other's commits: empty the tables after."""
    with app.app_context():
        _empty_tables()
        yield db.session
        db.session.remove()
        _empty_tables()
        _forget_caches()


@pytest.fixture
def client(app, db_session):
    return app.test_client()


@pytest.fixture
def account() -> simulator.Account:
    return simulator.Account(TOKEN, APPID, AES_KEY, ORIGINAL_ID)


@dataclass
class Sender:
    """Posts simulated WeChat deliveries to the app and decodes the replies. WeChat knows of each message it delivers
    (customer-service messages may follow for 48 hours): the emulator, when given, is told first."""

    client: Any
    account: simulator.Account
    emulator: Emulator | None = None

    def post(self, xml: str, *, aes: bool = False, **kwargs: Any):
        params, body = simulator.signed_request(self.account, xml, aes=aes, **kwargs)
        return self.client.post("/wechat", query_string=params, data=body)

    def send(
        self, openid: str, msg_type: str, fields: dict[str, Any], *, aes: bool = False, **xml_kwargs: Any
    ) -> dict[str, Any] | None:
        xml = simulator.message_xml(openid, msg_type, fields, to=self.account.original_id, **xml_kwargs)
        if self.emulator is not None and opens_window(msg_type, fields.get("Event")):
            self.emulator.hook("interaction", {"openid": openid})
        res = self.post(xml, aes=aes)
        assert res.status_code == 200, res.get_data(as_text=True)
        return simulator.decode_reply(self.account, res.get_data(as_text=True), aes=aes)

    def text(self, openid: str, content: str, **kwargs: Any) -> dict[str, Any] | None:
        return self.send(openid, "text", {"Content": content}, **kwargs)

    def event(self, openid: str, event: str, key: str | None = None, **kwargs: Any) -> dict[str, Any] | None:
        return self.send(openid, "event", simulator.event_fields(event, key), **kwargs)


@pytest.fixture
def wechat(client, account, emulator) -> Sender:
    return Sender(client, account, emulator)


@dataclass
class LiveServer:
    url: str
    process: Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(app, emulator) -> Iterator[LiveServer]:
    """The app under gunicorn with several worker processes, on the test PostgreSQL and Redis."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    if SQLITE:
        pytest.skip("the live server runs on PostgreSQL")
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        "WECHAT_TOKEN": TOKEN,
        "WECHAT_APPID": APPID,
        "WECHAT_SECRET": SECRET,
        "WECHAT_AES_KEY": AES_KEY,
        "WECHAT_API_BASE": emulator.url,
        "SECRET_KEY": "live-test-secret-key-0123456789abcdef",
        "MEDIA_ROOT": app.config["MEDIA_ROOT"],  # what the live server stores, this process's tasks read back
    }
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "wsgi:app",
            "-w",
            "3",
            "-k",
            "gthread",
            "--threads",
            "4",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=root,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(url + "/healthz", timeout=1).ok:
                break
        except requests.RequestException:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("live server did not start")
    yield LiveServer(url, process)
    process.terminate()
    process.wait(10)
