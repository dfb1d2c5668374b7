"""Violation tips (违法线索 / 随手拍). Filled in by the tips feature; the chat hooks below are wired already."""

from __future__ import annotations

from datetime import datetime


def reply_to_chat_text(openid: str, text: str, at: datetime) -> str | None:
    """A text sent while the citizen is assembling a tip in chat; None when no tip is being assembled."""
    return None


def attach_chat_location(openid: str, latitude: float, longitude: float, label: str | None, at: datetime) -> str | None:
    """A location sent while a tip is being assembled in chat; None when none is."""
    return None
