"""Extension objects, created unbound; `create_app` binds them."""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis as redis_lib
import sqlalchemy as sa
from celery import Celery, Task
from flask import Flask, current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Named constraints let Alembic alter and drop them; no type_annotation_map (flask-sqlalchemy#1361).
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})  # results stay readable after commit
migrate = Migrate()
csrf = CSRFProtect()


@sa.event.listens_for(sa.orm.Session, "do_orm_execute")
def _reread_locked_rows(state: sa.orm.ORMExecuteState) -> None:
    """A row read FOR UPDATE is taken from the database, not from the session's identity map: a view that loaded it
    before asking for the lock would otherwise check the state it saw before waiting, and two editors acting on one
    tip at once would both pass the check."""
    if state.is_select and getattr(state.statement, "_for_update_arg", None) is not None:
        state.update_execution_options(populate_existing=True)


@sa.event.listens_for(sa.pool.Pool, "checkout")
def _drop_closed_connections(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection whose server went away (restart, failover, a terminated backend) is replaced before a
    request gets it, instead of failing that request with a 500. An idle connection has nothing to read: a readable
    socket means the server sent its goodbye and closed. A poll of the socket, not pool_pre_ping's round trip
    (0.13 ms of CPU on every vote)."""
    fileno = getattr(dbapi_connection, "fileno", None)  # psycopg; SQLite has no socket
    if fileno is None:
        return
    try:
        poller = select.poll()  # not select(): it refuses descriptors above 1024, which a busy worker reaches
        poller.register(fileno(), select.POLLIN)
        closed = bool(poller.poll(0))
    except Exception:  # psycopg raises its own error for a connection it has closed
        closed = True
    if closed:
        raise sa.exc.DisconnectionError("the database closed this connection")  # the pool tries another


login = LoginManager()
login.login_view = "console.login"
login.login_message = "请先登录"
login.login_message_category = "info"
login.session_protection = "basic"


def init_redis(app: Flask) -> Any:
    """The real Redis when REDIS_URL is set; an in-process one for the embedded demo (no server to install)."""
    url = app.config["REDIS_URL"]
    if url:
        client = redis_lib.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)
    else:
        import fakeredis  # demo only: same commands and Lua, nothing to run

        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    app.extensions["redis"] = client
    return client


def get_redis() -> redis_lib.Redis:
    return current_app.extensions["redis"]


@contextmanager
def exclusive(key: str, seconds: int = 120) -> Iterator[bool]:
    """Whether this process holds `key` (Redis SET NX, released on exit) for work that is idempotent but costly to do
    twice at once. Redis down: True, so the work goes on (at worst done twice)."""
    name = f"exclusive:{key}"
    try:
        mine = bool(get_redis().set(name, 1, nx=True, ex=seconds))
    except redis_lib.RedisError:
        yield True
        return
    try:
        yield mine
    finally:
        if mine:
            try:
                get_redis().delete(name)
            except redis_lib.RedisError:
                pass  # its TTL frees it


def dialect_insert(target: Any) -> Any:
    """An INSERT with the backend's ON CONFLICT clauses: PostgreSQL in production, SQLite in the demo."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert)(target)


def autocommit_session() -> bool:
    """Let the session's next statements run without BEGIN/COMMIT, each its own transaction, where that is safe:
    on PostgreSQL with no transaction begun yet. For hot paths whose write is one atomic statement anyway: it saves
    two round trips. The pool restores the isolation level when the connection goes back. Returns whether it did."""
    session = db.session()  # the request's Session behind the scoped proxy
    if session.in_transaction():
        return False
    bind = session.get_bind()
    if not isinstance(bind, sa.Engine) or bind.dialect.name != "postgresql":
        return False  # SQLite, or a test's outer transaction: keep BEGIN/COMMIT
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True


def init_celery(app: Flask) -> Celery:
    """One Celery app per Flask app (the shape of Flask's examples/celery); task bodies run in its context."""

    class AppContextTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.import_name, task_cls=AppContextTask, include=["server.tasks"])  # worker imports them
    celery.conf.update(app.config["CELERY"])
    if app.testing or not app.config["REDIS_URL"]:
        celery.conf.update(task_always_eager=True, task_eager_propagates=True)  # no broker: run inline
    if not app.config["REDIS_URL"]:
        celery.conf.update(broker_url="memory://localhost/")  # nothing is sent; bare memory:// warns of its host
    celery.set_default()  # `@shared_task` resolves to this app
    app.extensions["celery"] = celery
    return celery
