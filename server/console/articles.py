"""Filled in by its feature."""

from server.console import bp  # noqa: F401
