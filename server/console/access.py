"""Role and unit checks for console views: a refusal is a 403, not a hidden link."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app
from flask_login import current_user

from models import Role
from server.services import staff as staff_service

F = TypeVar("F", bound=Callable[..., Any])

CONSOLE_ROLES = (Role.ADMIN, Role.EDITOR, Role.REVIEWER, Role.LIAISON)


def require_roles(*roles: Role) -> Callable[[F], F]:
    allowed = set(roles)

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in allowed:
                abort(403)
            return view(*args, **kwargs)

        wrapper.allowed_roles = allowed  # type: ignore[attr-defined]  (read by may_open for the menu)
        return wrapper  # type: ignore[return-value]

    return decorate


def may_open(endpoint: str) -> bool:
    """Whether the signed-in person's role may open a view: the menu offers no link that answers 403."""
    view = current_app.view_functions.get(endpoint)
    allowed = getattr(view, "allowed_roles", None)
    return view is not None and (allowed is None or current_user.role in allowed)


def visible_unit_ids() -> list[int] | None:
    """None: every unit; otherwise the liaison's unit and those below it."""
    return staff_service.visible_units(current_user)


def require_unit(unit_id: int | None) -> None:
    ids = visible_unit_ids()
    if ids is not None and unit_id not in ids:
        abort(403)
