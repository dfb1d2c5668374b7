"""Submit keys of the console's create forms: the key is claimed before the write it guards."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import UTCDateTime, utcnow
from server.extensions import db

__all__ = ["FormSubmit"]


class FormSubmit(db.Model):
    """One submission of a create form. Its primary key decides a double submit: the second copy finds the row and
    is sent where the first went, instead of saving a second article, event or campaign."""

    __tablename__ = "form_submit"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    result_url: Mapped[str | None] = mapped_column(sa.String(512))  # where the first copy led; None while it runs
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
