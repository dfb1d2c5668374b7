"""Celery tasks: thin wrappers that take ids and call one service function. Import every task module here."""

from server.tasks import (  # noqa: F401  (registration by import)
    alerts,
    articles,
    binding,
    events,
    followers,
    materials,
    retention,
    stats,
    tips,
    votes,
)
