"""Typed models, one module per capability; importing this package registers every table."""

# Feature modules export their models through __all__ (one module per capability).
from models.alert import *  # noqa: E402,F403
from models.article import *  # noqa: E402,F403
from models.audit import AuditKind, AuditLog
from models.base import utcnow
from models.channel import *  # noqa: E402,F403
from models.contact import *  # noqa: E402,F403
from models.event import *  # noqa: E402,F403
from models.follower import Follower
from models.material import *  # noqa: E402,F403
from models.menu import MenuKind, MenuVersion
from models.open311 import *  # noqa: E402,F403
from models.reply import MatchType, ReplyRule, ReplyType, SiteSetting
from models.staff import BindingCode, Role, Staff, Unit, UnitKind
from models.stats import *  # noqa: E402,F403
from models.submit import *  # noqa: E402,F403
from models.tip import *  # noqa: E402,F403
from models.vote import *  # noqa: E402,F403
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
