"""Builders for test data."""

from __future__ import annotations

from typing import Any

from models import ReplyRule
from server.services import replies


def rule(pattern: str, text: str, *, match_type: str = "contains", priority: int = 0, **kwargs: Any) -> ReplyRule:
    return replies.save_rule(
        name=pattern, match_type=match_type, pattern=pattern, reply_text=text, priority=priority, **kwargs
    )
