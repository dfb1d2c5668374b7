from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

# BIGINT on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store UTC-aware values")
        # As UTC: SQLite keeps the wall time and drops the offset, so a Beijing-time value would be stored 8 hours off
        # and compared as text against UTC ones.
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def migration_filter(dialect: str) -> Any:
    """Alembic's include_object for a database: an index the models build on another database only (`ddl_if`, as
    PostgreSQL's NULLS LAST) is not missing from this one."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        only = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        return not (type_ == "index" and only and only != dialect)

    return include
