"""The audit log: who changed what (before/after), and every view or export of personal data.

The acting staff member and their IP come from a context variable set by the console for each request, so that
services need no request object; entries join the caller's transaction and commit with the change itself.
"""

from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass
from typing import Any

from models import AuditKind, AuditLog
from server.extensions import db

ACTION_LABELS = {
    "binding.issue": "生成绑定码",
    "binding.revoke": "撤销绑定码",
    "staff.bind": "绑定微信",
    "staff.unbind": "解除绑定",
    "follower.export": "导出粉丝",
    "follower.remark": "修改粉丝备注",
    "follower.sync": "与微信同步粉丝名单",
    "menu.draft_save": "保存菜单草稿",
    "menu.draft_discard": "放弃菜单草稿",
    "menu.publish": "发布菜单",
    "menu.restore": "恢复历史菜单",
    "rule.create": "新增自动回复",
    "rule.update": "修改自动回复",
    "rule.delete": "删除自动回复",
    "rule.enable": "启用自动回复",
    "rule.disable": "停用自动回复",
    "reply_setting.update": "修改欢迎语/默认回复",
    "channel.create": "新增渠道二维码",
    "channel.update": "修改渠道二维码",
    "channel.qr": "生成渠道二维码",
    "staff.create": "新增人员",
    "staff.update": "修改人员",
    "staff.login": "登录",
    "staff.unlock": "解除登录锁定",
    "staff.password_change": "修改密码",
    "staff.logout_everywhere": "退出所有设备",
    "staff.phone_view": "查看手机号",
    "unit.create": "新增单位",
    "unit.update": "修改单位",
}


# The fields that recur in before/after snapshots, named as the console's forms name them.
FIELD_LABELS = {
    "active": "启用",
    "away": "外出",
    "role": "角色",
    "unit_id": "单位",
    "username": "用户名",
    "name": "姓名",
    "phone": "手机号",
    "title": "标题",
    "status": "状态",
    "caption": "说明",
    "tags": "标签",
    "address": "地址",
    "reason": "原因",
    "note": "备注",
    "quota": "名额",
    "venue": "地点",
    "starts_at": "开始",
    "ends_at": "结束",
    "enabled": "启用",
    "priority": "优先级",
    "pattern": "关键词",
    "scene": "场景值",
    "reply_text": "回复内容",
    "version": "版本",
    "cover": "封面",
    "crop": "裁剪",
    "blur": "遮挡",
    "watermark": "水印",
    "purpose": "用途",
}


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action, action)


def actions_labelled(text: str) -> list[str]:
    """The action codes whose Chinese name contains `text`: the log is searched as it is read."""
    return [code for code, label in ACTION_LABELS.items() if text in label]


def readable(value: object) -> str:
    """A before/after snapshot for people: fields by their Chinese names, Chinese as itself (not \\u escapes)."""
    if isinstance(value, dict):
        value = {f"{FIELD_LABELS[k]}（{k}）" if k in FIELD_LABELS else k: v for k, v in value.items()}
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


@dataclass(frozen=True)
class Actor:
    staff_id: int | None
    name: str | None
    ip: str | None


_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("audit_actor", default=None)


def set_actor(actor: Actor | None) -> contextvars.Token[Actor | None]:
    return _actor.set(actor)


def reset_actor(token: contextvars.Token[Actor | None]) -> None:
    _actor.reset(token)


def current_actor() -> Actor | None:
    return _actor.get()


def record(
    action: str,
    *,
    kind: AuditKind = AuditKind.CHANGE,
    target: Any = None,
    target_type: str | None = None,
    target_id: Any = None,
    before: Any = None,
    after: Any = None,
    note: str | None = None,
    actor: Actor | None = None,
) -> AuditLog:
    """Add an entry to the session; the caller's commit writes it together with the change."""
    actor = actor or _actor.get() or Actor(None, "系统", None)
    if target is not None:
        target_type = target_type or getattr(target, "__tablename__", type(target).__name__)
        target_id = target_id if target_id is not None else getattr(target, "id", None)
    entry = AuditLog(
        staff_id=actor.staff_id,
        staff_name=actor.name,
        ip=actor.ip,
        kind=kind,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        before=before,
        after=after,
        note=note,
    )
    db.session.add(entry)
    return entry


def snapshot(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    """A JSON-able before/after picture of some fields of an object."""
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(obj, name, None)
        out[name] = value if value is None or isinstance(value, str | int | float | bool | list | dict) else str(value)
    return out
