"""The migrations build exactly the schema the models describe (and the app fixture ran them down and up)."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from models.base import migration_filter
from server.extensions import db


def test_models_match_the_migrated_schema(app):
    with app.app_context(), db.engine.connect() as conn:
        opts = {"compare_type": True, "include_object": migration_filter(conn.dialect.name)}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), db.metadata)
    assert diff == []
