"""Filled in by its feature."""

from server.citizen import bp  # noqa: F401
