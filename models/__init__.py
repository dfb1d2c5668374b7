"""Typed models, one module per capability; importing this package registers every table."""

from models.audit import AuditKind, AuditLog
from models.base import utcnow
from models.follower import Follower
from models.menu import MenuKind, MenuVersion
from models.reply import MatchType, ReplyRule, ReplyType, SiteSetting
from models.staff import BindingCode, Role, Staff, Unit, UnitKind
from models.wechat import InboundMessage, MessageStatus

__all__ = [
    "AuditKind",
    "AuditLog",
    "BindingCode",
    "MenuKind",
    "MenuVersion",
    "Role",
    "Staff",
    "Unit",
    "UnitKind",
    "Follower",
    "InboundMessage",
    "MatchType",
    "MessageStatus",
    "ReplyRule",
    "ReplyType",
    "SiteSetting",
    "utcnow",
]
