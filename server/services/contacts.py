"""Community contact points (社区联络点). Filled in by its feature."""

from __future__ import annotations


def nearest_reply(latitude: float, longitude: float) -> str | None:
    """The chat answer listing the three nearest contact points with distances; None when there are none."""
    return None
