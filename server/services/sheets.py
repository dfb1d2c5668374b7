"""Spreadsheet cells (Excel, CSV) from text that people typed."""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text(value: str | None) -> str:
    """The text as a cell that stays text: one starting like a formula would run when the file is opened in Excel or
    WPS (formula injection: a HYPERLINK that sends a neighbouring phone number away, say)."""
    value = value or ""
    return "'" + value if value.startswith(FORMULA_STARTS) else value
