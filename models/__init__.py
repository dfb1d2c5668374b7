"""Typed models, one module per capability; importing this package registers every table."""

from models.base import utcnow
from models.follower import Follower
from models.reply import MatchType, ReplyRule, ReplyType, SiteSetting
from models.wechat import InboundMessage, MessageStatus

__all__ = [
    "Follower",
    "InboundMessage",
    "MatchType",
    "MessageStatus",
    "ReplyRule",
    "ReplyType",
    "SiteSetting",
    "utcnow",
]
