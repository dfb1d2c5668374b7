"""The least a citizen's registration or vote can be, for the surge and vote benches to measure beside the app.

Flask with the same signed cookie session and Flask-WTF form token as the app, one Redis round trip and one
autocommit INSERT on a per-thread connection; no rules, audit, personal-data encryption, notices, rate limits,
brushing analysis or error handling. Served by the same gunicorn configuration and sent the same request bytes, it
tells how much of the floor is left once a request has to store anything at all.

    register: POST /m/events/<id>/register -> a place taken (Lua, bounded by BENCH_QUOTA) or the waiting list
    vote:     POST /m/vote/<id>/cast      -> one row per citizen, candidate and day (unique key), then ZINCRBY
"""

import functools
import os
import threading
from datetime import date

import psycopg
import redis
from flask import Flask, request, session
from flask_wtf.csrf import CSRFProtect

TABLES = """
CREATE TABLE IF NOT EXISTS bench_minimal_registration (session_id integer NOT NULL, openid varchar(64) NOT NULL,
    status varchar(16) NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (session_id, openid));
CREATE TABLE IF NOT EXISTS bench_minimal_vote (campaign_id integer NOT NULL, openid varchar(64) NOT NULL,
    candidate_id integer NOT NULL, day date NOT NULL, ip varchar(64), user_agent text,
    created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (campaign_id, openid, candidate_id, day));
TRUNCATE bench_minimal_registration, bench_minimal_vote;
"""
_TAKE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
return 1
"""

_local = threading.local()


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def _conn() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:  # gunicorn's threads start after the fork: each has its own
        dsn = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        conn = _local.conn = psycopg.connect(dsn, autocommit=True)
    return conn


def _app() -> Flask:
    app = Flask(__name__)
    app.secret_key = os.environ.get("SECRET_KEY")  # set in gunicorn's environment; the benches import TABLES only
    CSRFProtect(app)
    app.add_url_rule("/", "ready", lambda: "ok")
    return app


register = _app()
vote = _app()


@register.post("/m/events/<int:event_id>/register")
def take_place(event_id: int) -> dict:
    session_id = int(request.form["session_id"])
    took = _redis().eval(_TAKE, 1, f"minimal:taken:{session_id}", int(os.environ["BENCH_QUOTA"]))
    status = "confirmed" if took else "waiting"
    _conn().execute(
        "INSERT INTO bench_minimal_registration (session_id, openid, status) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (session_id, session["openid"], status),
    )
    return {"status": status}


@vote.post("/m/vote/<int:campaign_id>/cast")
def cast(campaign_id: int) -> dict:
    candidate_id = int(request.form["candidate_id"])
    inserted = (
        _conn()
        .execute(
            "INSERT INTO bench_minimal_vote (campaign_id, openid, candidate_id, day, ip, user_agent)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                campaign_id,
                session["openid"],
                candidate_id,
                date.today(),
                request.remote_addr,
                request.user_agent.string,
            ),
        )
        .rowcount
    )
    if inserted:
        _redis().zincrby(f"minimal:rank:{campaign_id}", 1, candidate_id)
    return {"ok": bool(inserted)}
