"""The embedded demo (scripts/run.sh) is one process: no worker, no beat, WeChat emulated in-process. What a
deployment's other processes and WeChat itself would do for it is done here, in the demo server only."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from celery import Celery
from celery.schedules import BaseSchedule, maybe_schedule
from flask import Flask
from flask.helpers import get_debug_flag
from werkzeug.serving import is_running_from_reloader

log = logging.getLogger(__name__)

MAX_SLEEP = 30.0  # seconds between looks at the schedule at most, as beat's own max loop interval
PUSH_EVERY = 2.0  # seconds between looks at the events the emulated WeChat has to push

_started = False
_start_lock = threading.Lock()


def should_start(app: Flask) -> bool:
    """Only in the demo's serving process: DEMO_BEAT (set by scripts/run.sh on `flask run` alone, so not for
    `db upgrade` or `seed-demo`), Celery eager (with a broker, a real `celery beat` does this), never in production
    or tests, and not in the reloader's watching parent (it loads the app too but serves nothing)."""
    config = app.config
    if not (config["DEMO"] and config["DEMO_BEAT"]) or config["PRODUCTION"] or app.testing:
        return False
    if not app.extensions["celery"].conf.task_always_eager:
        return False
    return is_running_from_reloader() or not get_debug_flag()  # FLASK_DEBUG / --debug turn the reloader on


def start(app: Flask) -> threading.Thread | None:
    """Start the demo's background thread once per process: known followers to the emulator, then the beat loop."""
    global _started
    if not should_start(app):
        return None
    with _start_lock:
        if _started:
            return None
        _started = True
    beat = DemoBeat(app.extensions["celery"], app.config["CELERY"]["beat_schedule"])
    push = PushForwarder(app)

    def run() -> None:
        try:
            register_known_users(app)
        except Exception:  # the schedule matters more than the emulator's user list
            log.exception("demo: could not register known followers with the WeChat emulator")
        for attempt in range(5):  # the server may not be listening yet: it calls itself over HTTP
            try:
                publish_menu(app)
                tag_bound_officers(app)
                break
            except Exception:
                if attempt == 4:
                    log.exception("demo: could not publish the seeded menu or tag officers in the WeChat emulator")
                time.sleep(1 + attempt)
        beat.run_forever(threading.Event(), also=push)

    thread = threading.Thread(target=run, name="demo-beat", daemon=True)
    thread.start()
    log.info("demo: running the Celery beat schedule in-process (%d jobs)", len(beat.entries))
    return thread


@dataclass
class Entry:
    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    last_run_at: datetime


class DemoBeat:
    """Celery's `beat_schedule` run by one thread with Celery's own schedule objects (interval and crontab): each
    task is applied when its schedule says it is due, which with eager Celery runs it right here. A failing job is
    logged and the loop goes on."""

    def __init__(
        self,
        celery: Celery,
        beat_schedule: Mapping[str, Mapping[str, Any]],
        *,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        import server.tasks  # noqa: F401  (registers every task, as `include` does for a worker)

        self.celery = celery
        self.now = now or celery.now
        start = self.now()
        self.entries = []
        for name, spec in beat_schedule.items():
            # A copy: bound to this app and clock here, the settings' object stays as configured.
            schedule = maybe_schedule(copy.copy(spec["schedule"]), spec.get("relative", False), app=celery)
            schedule.nowfun = now
            self.entries.append(
                Entry(
                    name,
                    spec["task"],
                    schedule,
                    tuple(spec.get("args", ())),
                    dict(spec.get("kwargs", {})),
                    dict(spec.get("options", {})),
                    start,  # as beat: the first run comes one interval (or the next crontab slot) after start
                )
            )

    def tick(self) -> float:
        """Apply every due task; return the seconds until one may be due next."""
        wait = MAX_SLEEP
        for entry in self.entries:
            due, next_s = entry.schedule.is_due(entry.last_run_at)
            if due:
                entry.last_run_at = self.now()
                self._apply(entry)
            wait = min(wait, next_s)
        return max(wait, 0.01)

    def _apply(self, entry: Entry) -> None:
        try:
            self.celery.tasks[entry.task].apply_async(entry.args, entry.kwargs, **entry.options)
        except Exception:
            log.exception("demo beat: %s (%s) failed", entry.name, entry.task)
        else:
            log.debug("demo beat: ran %s", entry.name)

    def run_forever(self, stop: threading.Event, also: Callable[[], object] | None = None) -> None:
        """Tick until `stop`; `also` (the push forwarder) runs every PUSH_EVERY seconds in between."""
        while not stop.is_set():
            try:
                wait = self.tick()
            except Exception:  # a bad schedule entry, say: keep the others going
                log.exception("demo beat: tick failed")
                wait = MAX_SLEEP
            if also is not None:
                try:
                    also()
                except Exception:
                    log.exception("demo: push forwarding failed")
                wait = min(wait, PUSH_EVERY)
            stop.wait(wait)


class PushForwarder:
    """WeChat pushes some events to the server by itself (PUBLISHJOBFINISH when a publish settles,
    TEMPLATESENDJOBFINISH); the emulator only records them. Deliver each once to /wechat, signed (and encrypted in
    safe mode) as WeChat would, so that a scheduled article reads 已发布 within seconds, not at the status poll."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.delivered = 0

    def __call__(self) -> int:
        from server.wechat import simulator

        emulator = self.app.extensions.get("wechat_emulator_app")
        if emulator is None:
            return 0
        state = emulator.extensions["wechat_emulator"]
        with state.lock:
            if self.delivered > len(state.push_events):  # the emulator was reset
                self.delivered = 0
            pending = [p["xml"] for p in state.push_events[self.delivered :]]
        config = self.app.config
        account = simulator.Account(config["WECHAT_TOKEN"], config["WECHAT_APPID"], config["WECHAT_AES_KEY"])
        client = self.app.test_client()
        for xml in pending:
            params, body = simulator.signed_request(account, xml, aes=bool(account.aes_key))
            res = client.post("/wechat", query_string=params, data=body)
            self.delivered += 1  # once, as WeChat retries only on a missing answer: a 5xx is logged, not resent
            if res.status_code != 200:
                log.warning("demo: /wechat answered %s to a pushed event", res.status_code)
        return len(pending)


def publish_menu(app: Flask) -> bool:
    """The seeded menu draft, published to the emulated WeChat when nothing is live yet (the seed runs before the
    server, so it cannot reach the emulator); the emulator forgets it on restart, as the database does not."""
    from server.services import menus

    if app.extensions.get("wechat_emulator_app") is None:
        return False
    with app.app_context():
        try:
            emulated = app.extensions["wechat_emulator_app"].extensions["wechat_emulator"].snapshot().get("menu")
            draft = menus.draft("default")
            version = menus.live("default")
            if emulated is None and (draft is not None or version is not None):
                if draft is not None:
                    menus.publish_draft("default")
                else:
                    menus.restore_version(version.id)
                return True
            return False
        finally:
            from server.extensions import db

            db.session.remove()


def tag_bound_officers(app: Flask) -> int:
    """Bound officers get the 一线队员 tag again, as binding gave it (the seed binds one before the server, so it
    cannot reach the emulator, which also forgets tags on restart): the officers' conditional menu applies to them.
    Returns how many were tagged."""
    from models import Role, Staff
    from server.extensions import db
    from server.services import binding

    if app.extensions.get("wechat_emulator_app") is None:
        return 0
    with app.app_context():
        try:
            ids = db.session.scalars(
                sa.select(Staff.id).where(Staff.openid.is_not(None), Staff.role == Role.OFFICER, Staff.active)
            ).all()
            for staff_id in ids:
                binding.tag_officer(staff_id)  # idempotent; raises while the server is not listening yet
            return len(ids)
        finally:
            db.session.remove()


def register_known_users(app: Flask) -> int:
    """Tell the in-process emulator about everyone the database knows: the seed's followers, staff bound to WeChat,
    anyone who chatted (only followers can). The emulator forgets on restart; WeChat would not. Returns the count."""
    from models import Follower, InboundMessage, Staff
    from server.extensions import db

    emulator = app.extensions.get("wechat_emulator_app")
    if emulator is None:
        return 0
    with app.app_context():
        subscribed: dict[str, int] = {}
        for (openid,) in db.session.execute(sa.select(InboundMessage.openid).distinct()):
            subscribed[openid] = 1
        for (openid,) in db.session.execute(sa.select(Staff.openid).where(Staff.openid.is_not(None))):
            subscribed[openid] = 1
        for openid, is_subscribed in db.session.execute(sa.select(Follower.openid, Follower.subscribed)):
            subscribed[openid] = int(is_subscribed)
        db.session.remove()
    emulator.extensions["wechat_emulator"].add_users([{"openid": o, "subscribe": s} for o, s in subscribed.items()])
    log.info("demo: %d known followers registered with the WeChat emulator", len(subscribed))
    return len(subscribed)
