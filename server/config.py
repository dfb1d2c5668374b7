"""Settings: read from the environment once, checked, with demo and test defaults."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from celery.schedules import crontab

REAL_WECHAT_API = "https://api.weixin.qq.com/"
DEMO_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 chars, the demo simulator's key


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names it."""


def _instance_secret(instance_path: Path, name: str, make: Any) -> str:
    """A per-install secret kept in instance/ so demo restarts keep sessions and decryptable data."""
    path = instance_path / name
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value)
    path.chmod(0o600)
    return value


def _pii_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _ed25519_key() -> str:
    """A raw Ed25519 private key (32 bytes, urlsafe base64): signs check-in QR codes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _int_setting(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name) or str(default)
    if not (value.isascii() and value.isdigit()):
        raise SettingsError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def _seconds_setting(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name) or str(default)
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 60:  # also refuses nan and inf
        raise SettingsError(f"{name} must be a number of seconds between 0 and 60, not {value!r}")
    return seconds


def engine_options(database_url: str, env: Mapping[str, str]) -> dict[str, Any]:
    # Connections the database closed are dropped on checkout (server.extensions), not pinged: pool_pre_ping's round
    # trip cost every vote 0.13 ms of CPU. hide_parameters: a failed statement's text is logged, and its parameters
    # are citizens' messages, phones and openids.
    options: dict[str, Any] = {"pool_recycle": 300, "hide_parameters": True}
    if database_url.startswith("postgresql"):
        # One connection per request thread (gthread's 8), plus the message-log writer and the handler pool's threads
        # in bursts. SQLAlchemy's default of 5 closed and reopened connections on every burst (a backend fork each).
        options["pool_size"] = _int_setting(env, "DB_POOL_SIZE", 10)
        options["max_overflow"] = 20
    return options


def load_settings(instance_path: Path, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    app_env = env.get("APP_ENV", "development")
    if app_env not in ("production", "development"):  # "prod" or "Production" must not quietly mean development
        raise SettingsError(f"APP_ENV must be production or development, not {app_env!r}")
    production = app_env == "production"
    redis_url = env.get("REDIS_URL", "")
    database_url = env.get("DATABASE_URL", "sqlite:///app.db")
    if database_url.startswith(("postgres://", "postgresql://")):  # Heroku-style URLs: use psycopg 3
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
    settings: dict[str, Any] = {
        "PRODUCTION": production,
        "SECRET_KEY": env.get("SECRET_KEY")
        or ("" if production else _instance_secret(instance_path, "secret_key", lambda: secrets.token_hex(32))),
        "PII_KEY": env.get("PII_KEY") or ("" if production else _instance_secret(instance_path, "pii_key", _pii_key)),
        # Events: signs check-in QR codes (Ed25519); the public key verifies them, offline too.
        "CHECKIN_SIGNING_KEY": env.get("CHECKIN_SIGNING_KEY")
        or ("" if production else _instance_secret(instance_path, "checkin_signing_key", _ed25519_key)),
        "WECHAT_TEMPLATE_EVENT_NOTICE": env.get("WECHAT_TEMPLATE_EVENT_NOTICE", "demo-event-notice-template"),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url, env),
        "WECHAT_LOG_WRITER": env.get("WECHAT_LOG_WRITER", "batch"),  # "inline" writes in the request (tests)
        "REDIS_URL": redis_url,
        "WECHAT_TOKEN": env.get("WECHAT_TOKEN", "" if production else "demotoken"),
        "WECHAT_APPID": env.get("WECHAT_APPID", "" if production else "wxd000000000000000"),
        "WECHAT_SECRET": env.get("WECHAT_SECRET", "" if production else "demosecret"),
        "WECHAT_AES_KEY": env.get("WECHAT_AES_KEY", "" if production else DEMO_AES_KEY),
        "WECHAT_API_BASE": env.get("WECHAT_API_BASE", REAL_WECHAT_API),
        # Our share of WeChat's 5 s: handlers get this long, then the default reply goes out.
        "WECHAT_HANDLER_TIMEOUT": _seconds_setting(env, "WECHAT_HANDLER_TIMEOUT", 3.0),
        # Where citizens reach the site (https://wx.example.gov.cn/): the links in template messages sent by workers.
        "PUBLIC_BASE_URL": env.get("PUBLIC_BASE_URL", ""),
        "WECHAT_MAX_BODY": 64 * 1024,
        # Any request body: one photo (images.MAX_BYTES) and its form; the tip form raises it for its nine photos.
        "MAX_CONTENT_LENGTH": 25 * 1024 * 1024,
        "WECHAT_MAX_CLOCK_SKEW": 300,
        "MEDIA_ROOT": env.get("MEDIA_ROOT", str(instance_path / "media")),
        "DEMO": env.get("DEMO", "") == "1",
        # The demo server runs the beat schedule in-process (server/demo.py); scripts/run.sh sets it on `flask run`.
        "DEMO_BEAT": env.get("DEMO_BEAT", "") == "1",
        # Tips: template ids from the WeChat console (status notices to citizens, dispatch requests to units).
        "WECHAT_TEMPLATE_TIP_STATUS": env.get("WECHAT_TEMPLATE_TIP_STATUS", "demo-tip-status-template"),
        "WECHAT_TEMPLATE_TIP_DISPATCH": env.get("WECHAT_TEMPLATE_TIP_DISPATCH", "demo-tip-dispatch-template"),
        # Publishing: failed or uncertain pushes, to the duty editors.
        "WECHAT_TEMPLATE_PUBLISH_FAILED": env.get("WECHAT_TEMPLATE_PUBLISH_FAILED", "demo-publish-failed-template"),
        "TIP_DAILY_LIMIT": _int_setting(env, "TIP_DAILY_LIMIT", 10),  # per openid per day
        "TIP_DAILY_LIMIT_IP": _int_setting(env, "TIP_DAILY_LIMIT_IP", 30),  # per IP per day (H5 form)
        # Open311: partners' filing limit per key and minute, and what discovery tells them.
        "OPEN311_POSTS_PER_MINUTE": _int_setting(env, "OPEN311_POSTS_PER_MINUTE", 30),
        "OPEN311_READS_PER_MINUTE": _int_setting(env, "OPEN311_READS_PER_MINUTE", 120),
        "OPEN311_CONTACT": env.get("OPEN311_CONTACT", ""),
        "OPEN311_KEY_SERVICE": env.get("OPEN311_KEY_SERVICE", ""),
        # Days the message log keeps what followers wrote (and our replies); after that only who, what and when.
        "MESSAGE_RETENTION_DAYS": _int_setting(env, "MESSAGE_RETENTION_DAYS", 180),
        # Days a closed tip keeps the citizen's phone number and IP address.
        "TIP_CONTACT_RETENTION_DAYS": _int_setting(env, "TIP_CONTACT_RETENTION_DAYS", 365),
        "TRUSTED_PROXIES": _int_setting(env, "TRUSTED_PROXIES", 0),  # reverse proxies in front (X-Forwarded-*)
        # Hours a console sign-in lasts, however busy (a copied cookie is good for no longer); no idle limit: an
        # editor writes an article for an hour without a request, and the save must not meet a login page.
        "STAFF_SESSION_HOURS": _int_setting(env, "STAFF_SESSION_HOURS", 12),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        # A citizen's cookie lasts 31 days from the (silent) OAuth login; re-signing it on every answer cost the
        # registration surge and the vote ~7 % of their CPU.
        "SESSION_REFRESH_EACH_REQUEST": False,
        # Form tokens live as long as the session they are bound to: with Flask-WTF's default hour, an editor who
        # wrote an article for longer lost it on saving, and a citizen who left the tip form open did too.
        "WTF_CSRF_TIME_LIMIT": None,
        "CELERY": {
            "broker_url": redis_url or "memory://localhost/",
            "task_ignore_result": True,
            "task_acks_late": True,  # a worker killed mid-task leaves the task to another
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "timezone": "UTC",
            "beat_schedule": {
                # Retries due tip notices; sends are claimed row by row, so overlapping runs are harmless.
                "tip-notices": {"task": "server.tasks.tips.deliver_tip_notices", "schedule": 60.0},
                # Chat photos and material items whose download or derivation outlived its task (an outage, a
                # broker down when queued): queued again while WeChat still has the media.
                "tip-photos": {"task": "server.tasks.tips.requeue_stalled_photos", "schedule": 300.0},
                "material-items": {"task": "server.tasks.materials.requeue_stalled_items", "schedule": 300.0},
                # Officers told in chat of their photos not saved, once their burst is over; each photo told once.
                "material-lost": {"task": "server.tasks.materials.tell_lost_photos", "schedule": 60.0},
                # Escalates alerts unacknowledged past their SLA; the conditional UPDATE claims each one once.
                "alerts-sweep": {"task": "server.tasks.alerts.sweep_alerts", "schedule": 60.0},
                # Events: reminders (claimed by a unique row each), expired waiting-list holds, counter repair,
                # personal data past its retention.
                "event-reminders": {"task": "server.tasks.events.send_event_reminders", "schedule": 60.0},
                # Event notices whose attempt failed (with backoff), or whose task was lost; each row claimed once.
                "event-notices": {"task": "server.tasks.events.retry_event_notices", "schedule": 60.0},
                "event-holds": {"task": "server.tasks.events.expire_event_holds", "schedule": 60.0},
                "event-anonymise": {"task": "server.tasks.events.anonymise_old_events", "schedule": 3600.0},
                "message-contents": {"task": "server.tasks.retention.forget_old_message_contents", "schedule": 3600.0},
                "tip-contacts": {"task": "server.tasks.retention.forget_old_tip_contacts", "schedule": 3600.0},
                "submit-keys": {"task": "server.tasks.retention.forget_old_submit_keys", "schedule": 3600.0},
                # Stats (UTC times): datacube after WeChat publishes yesterday (~10:00 Beijing), again at 15:30
                # Beijing for is_delay days; last month's report at 16:30 Beijing on the 1st, once both runs have
                # fetched the month's last day (a report built in the morning ended a day short), and again on the
                # next two days (reports.generate_scheduled: a failed sync on the 1st, WeChat's late corrections).
                "stats-datacube": {
                    "task": "server.tasks.stats.sync_datacube",
                    "schedule": crontab(minute=30, hour="2,7"),
                },
                # Articles: due pushes at the start of every minute, the second they are scheduled at (an interval
                # of 60 s would run at whatever second beat started: up to 59 s late), claimed once each; requests
                # for empty column slots daily.
                "articles-publish": {"task": "server.tasks.articles.publish_due_pushes", "schedule": crontab()},
                "articles-reminders": {
                    "task": "server.tasks.articles.send_column_reminders",
                    "schedule": crontab(minute=0, hour=1),
                },
                # Followers from WeChat's own list (missed events, those from before go-live): Mondays 03:00 Beijing.
                "followers-sync": {
                    "task": "server.tasks.followers.sync_followers",
                    "schedule": crontab(minute=0, hour=19, day_of_week=0),
                },
                "stats-reports": {
                    "task": "server.tasks.stats.generate_scheduled_reports",
                    "schedule": crontab(minute=30, hour=8, day_of_month="1-3"),
                },
            },
        },
    }
    return settings


def check_settings(config: Mapping[str, Any]) -> None:
    """Refuse to start on a setting that would fail later, naming it; stricter in production."""
    aes_key = config.get("WECHAT_AES_KEY") or ""
    if aes_key:
        try:
            ok = len(aes_key) == 43 and len(base64.b64decode(aes_key + "=", validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            raise SettingsError("WECHAT_AES_KEY must be the 43-character EncodingAESKey from the WeChat console")
    base = config.get("WECHAT_API_BASE") or ""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or not base.endswith("/"):
        raise SettingsError("WECHAT_API_BASE must be an http(s) URL ending in '/', e.g. https://api.weixin.qq.com/")
    public = config.get("PUBLIC_BASE_URL") or ""
    if public and (urlsplit(public).scheme not in ("http", "https") or not urlsplit(public).netloc):
        raise SettingsError("PUBLIC_BASE_URL must be an http(s) URL, e.g. https://wx.example.gov.cn/")
    signing_key = config.get("CHECKIN_SIGNING_KEY") or ""
    if signing_key:
        try:
            if len(base64.urlsafe_b64decode(signing_key)) != 32:
                raise ValueError
        except (binascii.Error, ValueError):
            raise SettingsError("CHECKIN_SIGNING_KEY must be 32 bytes in urlsafe base64 (an Ed25519 seed)") from None
    if not config.get("PRODUCTION"):
        return
    for name in (
        "SECRET_KEY",
        "PII_KEY",
        "CHECKIN_SIGNING_KEY",
        "REDIS_URL",
        "WECHAT_TOKEN",
        "WECHAT_APPID",
        "WECHAT_SECRET",
    ):
        if not config.get(name):
            raise SettingsError(f"{name} is required in production (APP_ENV=production)")
    if not str(config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        raise SettingsError("DATABASE_URL must be a PostgreSQL URL in production")
    if config.get("DEMO"):
        raise SettingsError("DEMO=1 mounts the WeChat emulator: not in production")
    if not Path(config["MEDIA_ROOT"]).is_absolute():  # a relative path would differ between web and worker processes
        raise SettingsError("MEDIA_ROOT must be an absolute path (a folder every web and worker process shares)")
    if not str(config["REDIS_URL"]).startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("REDIS_URL must be a redis:// or rediss:// URL")
    if len(config["SECRET_KEY"]) < 32:
        raise SettingsError("SECRET_KEY must be at least 32 characters")
    try:
        if len(base64.urlsafe_b64decode(config["PII_KEY"])) != 32:
            raise ValueError
    except (binascii.Error, ValueError):
        raise SettingsError(
            "PII_KEY must be 32 bytes in urlsafe base64: python -c "
            "'import secrets, base64; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())'"
        ) from None
    token = config["WECHAT_TOKEN"]
    if not (3 <= len(token) <= 32 and token.isalnum()):
        raise SettingsError("WECHAT_TOKEN must be 3 to 32 letters or digits, as set in the WeChat console")
