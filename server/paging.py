"""Page-numbered lists: one page of a statement's rows, and the page count for the pager (console/_pager.html)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from server.extensions import db


@dataclass
class Page:
    items: list[Any]
    page: int  # clamped: a page past the end shows the last one
    pages: int
    first: int  # the position of the page's first row, counted from 1


def paginate(stmt: sa.Select[Any], page: int, per_page: int) -> Page:
    """`stmt` (ordered) cut to `page`; counted in SQL, so only the page's rows are loaded."""
    counted = sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())
    pages = max(1, -(-(db.session.scalar(counted) or 0) // per_page))
    page = min(max(page, 1), pages)
    items = list(db.session.scalars(stmt.offset((page - 1) * per_page).limit(per_page)))
    return Page(items, page, pages, (page - 1) * per_page + 1)
