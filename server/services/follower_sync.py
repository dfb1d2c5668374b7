"""Followers from WeChat's own list (user/get + user/info/batchget): those who followed before this server took the
account, and subscribe or unsubscribe events it missed while it was down.

A page of user/get (up to 10,000 openids) is compared with the follower table first; only openids the table does not
hold as subscribed are looked up (100 per batchget), so a weekly re-run costs one call per 10,000 followers plus
whatever changed. Progress is kept in a site setting the followers page shows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from models import Follower, SiteSetting, utcnow
from server.extensions import db, dialect_insert, get_redis
from server.services import binding
from server.wechat.client import get_client

log = logging.getLogger(__name__)

STATE_KEY = "followers.sync"
LOCK_NAME = "followers:sync"
LOCK_TTL = 600  # seconds; extended after every page, so only a dead worker's lock runs out
BATCH = 100  # user/info/batchget's limit
QR_SCENE = "ADD_SCENE_QR_CODE"
# The share of WeChat's first count a pass must read before absences count as unsubscribes: some leave meanwhile,
# but a silently missing page (10,000 of them) must not unsubscribe anyone.
COMPLETE = 0.99
# Events stamped this little before the run may be newer than the pages it reads: CreateTime is in whole seconds,
# WeChat's clock is not ours, and its list lags a follow or an unfollow a moment. Such events stand.
SETTLE = timedelta(minutes=2)


@dataclass
class SyncState:
    """What the followers page shows about the latest run."""

    started_at: str = ""
    finished_at: str = ""
    total: int = 0  # WeChat's follower count at the first page
    seen: int = 0
    added: int = 0  # unknown here: followed before this server, or their event was lost
    back: int = 0  # held as unsubscribed here, followed again on WeChat
    left: int = 0  # held as subscribed here, not on WeChat's list any more
    error: str = ""
    running: bool = False

    @property
    def finished(self) -> datetime | None:
        return datetime.fromisoformat(self.finished_at) if self.finished_at else None


def state() -> SyncState | None:
    row = db.session.get(SiteSetting, STATE_KEY)
    if row is None or not isinstance(row.value, dict):
        return None
    known = SyncState.__dataclass_fields__
    return SyncState(**{k: v for k, v in row.value.items() if k in known})


def running(current: SyncState | None) -> bool:
    """A run in progress: its state says so and its lock is held (a killed worker leaves the first, not the second)."""
    if current is None or not current.running:
        return False
    try:
        return bool(get_redis().exists(LOCK_NAME))
    except Exception:  # Redis down: the state is all there is
        return True


def _save(current: SyncState) -> None:
    row = db.session.get(SiteSetting, STATE_KEY)
    if row is None:
        db.session.add(SiteSetting(key=STATE_KEY, value=asdict(current)))
    else:
        row.value = asdict(current)
    db.session.commit()


def _pages() -> Iterator[tuple[int, list[str]]]:
    """(WeChat's total, one page of openids) until the list ends."""
    client = get_client()
    after: str | None = None
    while True:
        answer = client.user.get_followers(after)
        openids = list((answer.get("data") or {}).get("openid") or [])
        if not openids:  # WeChat sends a next_openid even after the last page
            return
        yield int(answer.get("total") or 0), openids
        after = answer.get("next_openid") or None
        if not after:
            return


def _subscribed_here(openids: list[str]) -> set[str]:
    held: set[str] = set()
    for i in range(0, len(openids), 1000):  # a page is up to 10,000: keep each IN list modest
        query = sa.select(Follower.openid).where(
            Follower.openid.in_(openids[i : i + 1000]),
            Follower.subscribed,
            Follower.subscribed_at.is_not(None),  # held as following from a scan, when unknown: looked up
        )
        held.update(db.session.scalars(query))
    return held


def _at(info: dict[str, Any]) -> datetime:
    stamp = info.get("subscribe_time")
    return datetime.fromtimestamp(int(stamp), UTC) if isinstance(stamp, int) and stamp > 0 else utcnow()


def _scene(info: dict[str, Any]) -> str | None:
    if info.get("subscribe_scene") != QR_SCENE:
        return None
    scene = info.get("qr_scene_str") or (str(info["qr_scene"]) if info.get("qr_scene") else "")
    if binding.is_bind_scene(scene):  # a staff binding QR, not a source scene: as its subscribe event is recorded
        return None
    return scene[:64] or None


def _apply(infos: list[dict[str, Any]], started: datetime, current: SyncState) -> None:
    """Insert the followers unknown here in one statement; the few known ones go through the event logic."""
    infos = [i for i in infos if i.get("subscribe") == 1 and isinstance(i.get("openid"), str)]
    known = set(db.session.scalars(sa.select(Follower.openid).where(Follower.openid.in_([i["openid"] for i in infos]))))
    fresh = [
        {
            "openid": i["openid"],
            "subscribed": True,
            "subscribed_at": _at(i),
            "first_subscribed_at": _at(i),  # the latest follow is all WeChat tells; earlier ones are lost
            "source_scene": _scene(i),
            "remark": str(i.get("remark") or "")[:30] or None,
            "created_at": utcnow(),
        }
        for i in infos
        if i["openid"] not in known
    ]
    if fresh:
        # a subscribe event arriving meanwhile made the row: it wins, it knows as much
        inserted = dialect_insert(Follower).values(fresh).on_conflict_do_nothing().returning(Follower.openid)
        current.added += len(db.session.scalars(inserted).all())
    for info in infos:
        if info["openid"] in known:
            # WeChat's list is what is true now, whatever this table believed; an unsubscribe that arrived during
            # the run (or just before it: SETTLE) may be newer than the list and stands.
            at = _at(info)
            result = db.session.execute(
                sa.update(Follower)
                .where(
                    Follower.openid == info["openid"],
                    sa.not_(Follower.subscribed),
                    sa.or_(Follower.unsubscribed_at.is_(None), Follower.unsubscribed_at < started - SETTLE),
                )
                .values(
                    subscribed=True,
                    subscribed_at=at,
                    unsubscribed_at=None,
                    first_subscribed_at=sa.func.coalesce(Follower.first_subscribed_at, at),
                    source_scene=sa.func.coalesce(Follower.source_scene, _scene(info)),
                )
            )
            current.back += max(result.rowcount, 0)
            # Held as following from a SCAN or LOCATION event alone: WeChat tells when they followed.
            result = db.session.execute(
                sa.update(Follower)
                .where(Follower.openid == info["openid"], Follower.subscribed, Follower.subscribed_at.is_(None))
                .values(
                    subscribed_at=at,
                    first_subscribed_at=sa.func.coalesce(Follower.first_subscribed_at, at),
                    source_scene=sa.func.coalesce(Follower.source_scene, _scene(info)),
                )
            )
            current.added += max(result.rowcount, 0)
    db.session.commit()


def _mark_left(seen: set[str], started: datetime, current: SyncState) -> None:
    """Held as subscribed here but absent from WeChat's complete list: they left while we were not told.
    Only rows older than the run (by SETTLE): a follow that arrived during it is not on the pages already read."""
    before_run = sa.and_(
        Follower.subscribed, sa.or_(Follower.subscribed_at.is_(None), Follower.subscribed_at < started - SETTLE)
    )
    held = db.session.scalars(sa.select(Follower.openid).where(before_run).execution_options(yield_per=5000))
    gone = [openid for openid in held if openid not in seen]  # streamed: only `seen` is held whole
    for i in range(0, len(gone), 1000):
        result = db.session.execute(
            sa.update(Follower)
            .where(Follower.openid.in_(gone[i : i + 1000]), before_run)  # rechecked: an event may have landed since
            .values(subscribed=False, unsubscribed_at=started)
        )
        current.left += max(result.rowcount, 0)
    db.session.commit()


def sync_from_wechat() -> SyncState | None:
    """One full pass over WeChat's follower list; None if another worker is running one."""
    lock = get_redis().lock(LOCK_NAME, timeout=LOCK_TTL, blocking=False)
    if not lock.acquire():
        return None
    started = utcnow()
    current = SyncState(started_at=started.isoformat(), running=True)
    _save(current)
    seen: set[str] = set()  # ~100 bytes a follower: 50 MB for half a million
    sizes: list[int] = []
    try:
        for total, openids in _pages():
            current.total = current.total or total
            seen.update(openids)
            sizes.append(len(openids))
            held = _subscribed_here(openids)
            missing = [o for o in openids if o not in held]
            for i in range(0, len(missing), BATCH):
                _apply(get_client().user.get_batch(missing[i : i + BATCH]), started, current)
            current.seen = len(seen)
            _save(current)
            lock.extend(LOCK_TTL, replace_ttl=True)
        # Every page but the last is full: a short one in between means WeChat left part of the list out.
        whole = all(n == sizes[0] for n in sizes[:-1])
        if seen and whole and len(seen) >= COMPLETE * current.total:
            _mark_left(seen, started, current)
        else:  # a short list (WeChat's glitch, a permission change) must not unsubscribe everyone
            current.error = f"微信返回的名单不完整（{len(seen)} / {current.total}），未据此标记取消关注"
    except Exception as exc:
        db.session.rollback()
        current.error = f"{type(exc).__name__}: {exc}"[:300]
        log.exception("follower sync stopped after %s followers", current.seen)
        raise
    finally:
        current.running = False
        current.finished_at = utcnow().isoformat()
        _save(current)
        try:
            lock.release()
        except Exception:  # expired and maybe taken over: nothing of ours to release
            pass
    return current
