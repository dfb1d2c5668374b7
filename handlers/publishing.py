"""Filled in by its feature."""

from handlers.router import router  # noqa: F401
