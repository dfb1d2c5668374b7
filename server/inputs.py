"""Numbers and text from query strings, forms and URLs, checked before they reach the database.

PostgreSQL refuses integers beyond its 32-bit `integer` columns and NUL characters in text with an error that would
be a 500; `str.isdigit()` and `int()` accept digits such as "²" or "١٢". Every id, page and count goes through here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import overload

import flask
from flask import Flask, abort, request
from werkzeug.routing import IntegerConverter

DB_INT_MAX = 2**31 - 1  # PostgreSQL `integer`, the type of every id column
_INT = re.compile(r"-?[0-9]{1,10}")


@overload
def to_int(value: str | None, default: int, *, lo: int = ..., hi: int = ...) -> int: ...
@overload
def to_int(value: str | None, default: None = None, *, lo: int = ..., hi: int = ...) -> int | None: ...
def to_int(value: str | None, default: int | None = None, *, lo: int = -DB_INT_MAX, hi: int = DB_INT_MAX) -> int | None:
    """The integer written in ASCII digits in `value` if it lies in [lo, hi], else `default`."""
    if value is None or not _INT.fullmatch(value := value.strip()):
        return default
    number = int(value)
    return number if lo <= number <= hi else default


def to_ids(values: Iterable[str]) -> list[int]:
    """The valid row ids among `values` (a form's repeated field), in order; the rest are dropped."""
    return [n for v in values if (n := to_int(v, lo=1)) is not None]


class IdConverter(IntegerConverter):
    """`<int:…>` in routes: beyond a 32-bit id nothing can exist, so 404 rather than the database's range error."""

    def __init__(self, map, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]  # noqa: A002 (werkzeug's name)
        kwargs.setdefault("max", DB_INT_MAX)
        super().__init__(map, *args, **kwargs)


NUL_REFUSED = "输入包含无效字符（NUL），请检查后重试"


def _refuse_nul_in_url() -> None:
    # Browsers never send NUL; PostgreSQL refuses it in text columns and in queries alike. The path too: its string
    # parts (a tip's tracking number, an Open311 request id) are looked up.
    if request.path == "/wechat":
        return
    if "\x00" in request.path or any("\x00" in v for _, v in request.args.items(multi=True)):
        abort(400, description=NUL_REFUSED)


class Request(flask.Request):
    """Form fields are checked for NUL as they are parsed: whenever a view (or CSRF) first reads them, after the view
    has set its own body limit, so no body is parsed earlier than it would be."""

    def _load_form_data(self) -> None:
        super()._load_form_data()
        if any("\x00" in v for _, v in self.form.items(multi=True)):
            abort(400, description=NUL_REFUSED)


def init_inputs(app: Flask) -> None:
    app.url_map.converters["int"] = IdConverter
    app.request_class = Request
    app.before_request(_refuse_nul_in_url)
