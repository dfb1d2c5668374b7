"""Urgent-opinion alerts (舆情). Filled in by its feature."""

from __future__ import annotations


def scan_text(openid: str, text: str, *, source: str, ref: str | None = None) -> None:
    """Match text against the sensitive terms; a hit creates an alert for the duty editors. Cheap on a miss."""
    return None
