"""Builders for test data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from models import MaterialItem, MaterialSource, MaterialState, ReplyRule, Staff, Unit, utcnow
from server.extensions import db
from server.services import replies
from server.services import staff as staff_service


def rule(pattern: str, text: str, *, match_type: str = "contains", priority: int = 0, **kwargs: Any) -> ReplyRule:
    return replies.save_rule(
        name=pattern, match_type=match_type, pattern=pattern, reply_text=text, priority=priority, **kwargs
    )


PASSWORD = "Passw0rd-1234"


def unit(name: str = "浦东分局", kind: str = "district", parent: Unit | None = None) -> Unit:
    return staff_service.save_unit(name=name, kind=kind, parent_id=parent.id if parent else None)


def staff(
    username: str = "editor1",
    role: str = "editor",
    *,
    unit: Unit | None = None,
    password: str = PASSWORD,
    must_change: bool = False,
    name: str | None = None,
    phone: str | None = None,
) -> Staff:
    person = staff_service.save_staff(
        username=username,
        name=name or username,
        role=role,
        unit_id=unit.id if unit else None,
        password=password,
        phone=phone,
    )
    person.must_change_password = must_change
    db.session.commit()
    return person


def newsroom() -> dict:
    """An editor, a reviewer and a unit's liaison (ed1, rv1, li1): the people the article workflow needs."""
    office = unit("浦东分局")
    return {
        "editor": staff("ed1", "editor"),
        "reviewer": staff("rv1", "reviewer"),
        "liaison": staff("li1", "liaison", unit=office),
        "unit": office,
    }


def photo_library(officer: Staff, count: int, tagged: set[int]) -> list[MaterialItem]:
    """`count` ready photos by `officer`, oldest first; those at the positions in `tagged` also carry the tag 夜查."""
    start = utcnow() - timedelta(days=1)
    items = [
        MaterialItem(
            key=f"upload:library-{i:04d}",
            source=MaterialSource.UPLOAD,
            state=MaterialState.READY,
            uploader_id=officer.id,
            unit_id=officer.unit_id,
            received_at=start + timedelta(seconds=i),
            tags=["占道", "夜查"] if i in tagged else ["占道"],
        )
        for i in range(count)
    ]
    db.session.add_all(items)
    db.session.commit()
    return items
