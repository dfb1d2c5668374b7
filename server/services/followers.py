"""Followers: who subscribed, when, and which QR scene brought them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from models import Follower
from server.extensions import db


def _get_or_create(openid: str) -> Follower:
    follower = db.session.scalar(sa.select(Follower).filter_by(openid=openid))
    if follower is not None:
        return follower
    follower = Follower(openid=openid, subscribed=False)
    try:
        with db.session.begin_nested():  # two first events of one user at once: the unique openid decides
            db.session.add(follower)
    except IntegrityError:
        follower = db.session.scalars(sa.select(Follower).filter_by(openid=openid)).one()
    return follower


def subscribe(openid: str, at: datetime, scene: str | None = None) -> Follower:
    """A (re)subscribe: resubscribing keeps the first date and the first source scene."""
    follower = _get_or_create(openid)
    follower.subscribed, follower.subscribed_at, follower.unsubscribed_at = True, at, None
    follower.first_subscribed_at = follower.first_subscribed_at or at
    if scene:
        follower.source_scene = follower.source_scene or scene[:64]
        follower.last_scene = scene[:64]
    db.session.commit()
    return follower


def unsubscribe(openid: str, at: datetime) -> Follower:
    follower = _get_or_create(openid)
    follower.subscribed, follower.unsubscribed_at = False, at
    db.session.commit()
    return follower


def scan(openid: str, scene: str) -> Follower:
    """A follower scanned a parametric QR code; the scene feeds the source statistics."""
    follower = _get_or_create(openid)
    follower.last_scene = scene[:64]
    db.session.commit()
    return follower


def record_location(openid: str, latitude: float, longitude: float, precision: float | None, at: datetime) -> None:
    """Keep the latest reported position (LOCATION events, sent when the user allows it)."""
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return  # malformed coordinates are kept in the message log only
    follower = _get_or_create(openid)
    follower.latitude, follower.longitude, follower.location_precision = latitude, longitude, precision
    follower.located_at = at
    db.session.commit()
