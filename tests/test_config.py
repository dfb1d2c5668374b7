"""Settings: production refuses to start on a missing or malformed one, and names it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from server.config import SettingsError, check_settings, load_settings

GOOD = {
    "APP_ENV": "production",
    "DATABASE_URL": "postgresql://u:p@db/app",
    "REDIS_URL": "redis://cache:6379/0",
    "SECRET_KEY": "x" * 40,
    "PII_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "CHECKIN_SIGNING_KEY": "Y2hlY2tpbi1zaWduaW5nLWtleS0wMTIzNDU2Nzg5YWI=",
    "WECHAT_TOKEN": "token123",
    "WECHAT_APPID": "wx1234567890abcdef",
    "WECHAT_SECRET": "s3cret",
}


def _check(tmp_path, **changes):
    env = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    settings = load_settings(tmp_path, env)
    check_settings(settings)
    return settings


def test_a_complete_production_environment_passes(tmp_path):
    settings = _check(tmp_path)
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db/app"
    assert settings["CELERY"]["broker_url"] == "redis://cache:6379/0"
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert not (tmp_path / "secret_key").exists()  # production never invents secrets
    assert settings["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"] == 10  # a connection per gunicorn thread, and more
    assert _check(tmp_path, DB_POOL_SIZE="24")["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"] == 24
    settings = _check(tmp_path, WECHAT_HANDLER_TIMEOUT="2.5", OPEN311_POSTS_PER_MINUTE="5", OPEN311_CONTACT="热线科")
    assert (settings["WECHAT_HANDLER_TIMEOUT"], settings["OPEN311_POSTS_PER_MINUTE"]) == (2.5, 5)
    assert settings["OPEN311_CONTACT"] == "热线科"


@pytest.mark.parametrize(
    "name,value",
    [
        ("SECRET_KEY", None),
        ("SECRET_KEY", "short"),
        ("PII_KEY", None),
        ("PII_KEY", "not-base64-of-32-bytes"),
        ("CHECKIN_SIGNING_KEY", None),
        ("REDIS_URL", None),
        ("REDIS_URL", "http://cache"),
        ("DATABASE_URL", "sqlite:///app.db"),
        ("WECHAT_TOKEN", None),
        ("WECHAT_TOKEN", "bad token!"),
        ("WECHAT_APPID", None),
        ("WECHAT_SECRET", None),
        ("WECHAT_AES_KEY", "too-short"),
        ("WECHAT_API_BASE", "ftp://x/"),
        ("WECHAT_API_BASE", "https://api.weixin.qq.com"),
        ("DB_POOL_SIZE", "ten"),
        ("TRUSTED_PROXIES", "-1"),
        ("TIP_DAILY_LIMIT", "²"),
        ("WECHAT_HANDLER_TIMEOUT", "abc"),
        ("WECHAT_HANDLER_TIMEOUT", "nan"),
        ("WECHAT_HANDLER_TIMEOUT", "0"),
        ("OPEN311_POSTS_PER_MINUTE", "many"),
    ],
)
def test_missing_or_malformed_setting_is_named(tmp_path, name, value):
    with pytest.raises(SettingsError, match=name.split("_URL")[0]):
        _check(tmp_path, **{name: value})


@pytest.mark.smoke
def test_development_defaults_need_nothing(tmp_path):
    settings = load_settings(tmp_path, {})
    check_settings(settings)
    assert settings["SQLALCHEMY_DATABASE_URI"] == "sqlite:///app.db"
    assert settings["REDIS_URL"] == ""
    assert "pool_size" not in settings["SQLALCHEMY_ENGINE_OPTIONS"]  # SQLite's pools take no size
    assert (tmp_path / "secret_key").exists() and (tmp_path / "pii_key").exists()
    assert load_settings(tmp_path, {})["SECRET_KEY"] == settings["SECRET_KEY"]  # kept across restarts


def test_a_pooled_connection_the_database_dropped_is_replaced_on_checkout(app):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL restart")
    engine = sa.create_engine(url, **app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    try:
        with engine.connect() as other:
            with engine.connect() as conn:
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            other.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,))  # as a restart or failover would
            for _ in range(100):  # it returns at once; the backend closes its socket when it has exited
                gone = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)"
                if other.exec_driver_sql(gone, (pid,)).scalar():
                    break
                time.sleep(0.05)
            with engine.connect() as conn:  # the pooled, now dead, connection is checked out again
                assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
    finally:
        engine.dispose()


def test_a_failed_statement_logs_no_parameters(app):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("SQLite divides by zero without an error")
    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"], **app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as raised:
            conn.execute(sa.text("SELECT CAST(:message AS text), 1 / 0"), {"message": "我叫王小明 手机13700002222"})
        assert "13700002222" not in str(raised.value)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"APP_ENV": "prod"}, "APP_ENV"),
        ({"APP_ENV": "Production"}, "APP_ENV"),
        ({"DEMO": "1"}, "DEMO"),
        ({"MEDIA_ROOT": "media"}, "MEDIA_ROOT"),
    ],
)
def test_production_never_falls_back_to_a_development_default(tmp_path, changes, named):
    with pytest.raises(SettingsError, match=named):
        _check(tmp_path, **changes)
    assert _check(tmp_path, MEDIA_ROOT="/srv/media")["MEDIA_ROOT"] == "/srv/media"


def test_demo_data_is_refused_in_production(app, monkeypatch):
    monkeypatch.setitem(app.config, "PRODUCTION", True)
    result = app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code != 0 and "not APP_ENV=production" in result.output


def test_a_body_beyond_any_upload_is_refused_while_read(client, db_session):
    res = client.post("/admin/login", data=b"x" * (26 * 1024 * 1024), content_type="application/octet-stream")
    assert res.status_code == 413 and "上传内容过大" in res.get_data(as_text=True)


def test_a_forwarded_request_without_trusted_proxies_is_said_once_in_the_log(caplog):
    from server import warn_on_proxy_headers

    app = warn_on_proxy_headers(lambda environ, start_response: [b"ok"])
    app({"REMOTE_ADDR": "10.0.0.1"}, None)
    assert "TRUSTED_PROXIES" not in caplog.text
    for _ in range(3):
        assert app({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "36.1.2.3"}, None) == [b"ok"]
    assert caplog.text.count("TRUSTED_PROXIES=0") == 1


class _Recording(dict):
    """An environment that remembers every variable asked of it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, name, default=None):  # type: ignore[no-untyped-def,override]
        self.read.add(name)
        return super().get(name, default)


def test_every_setting_read_from_the_environment_is_in_the_readme(tmp_path):
    """The README's settings table and the prose around it name what an operator can set, and nothing else."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    env = _Recording({"DATABASE_URL": "postgresql://u:p@db/app"})  # the pool size is read for PostgreSQL only
    load_settings(tmp_path, env)
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)(?:=[^`]*)?`", readme))  # `DEMO=1` names DEMO
    prefixes = set(re.findall(r"`([A-Z][A-Z0-9_]+_)\*`", readme))
    # WECHAT_TEMPLATE_* lists its suffixes as `_TIP_STATUS` and so on
    suffixes = set(re.findall(r"`(_[A-Z][A-Z0-9_]+)`", readme))
    missing = {
        name
        for name in env.read
        if name not in named and not any(name.startswith(p) and name[len(p) - 1 :] in suffixes for p in prefixes)
    }
    assert not missing, f"read from the environment, not in README.md: {sorted(missing)}"
    table = re.findall(r"^\| ((?:`[A-Z][A-Z0-9_]+`(?:, )?)+) \|", readme, re.MULTILINE)
    in_table = {name for row in table for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}
    assert in_table and not in_table - env.read, f"in README.md's table, never read: {sorted(in_table - env.read)}"
