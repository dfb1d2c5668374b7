"""Static files carry a hash of their content in their URL (`?v=`): phones keep them for a year instead of asking
again on every page, and a deploy's new file is a new URL, seen at once."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from flask import Flask, has_request_context, request
from werkzeug.security import safe_join

YEAR = 365 * 24 * 3600


class App(Flask):
    def get_send_file_max_age(self, filename: str | None) -> int | None:
        # Only the version this process would link: in a rolling deploy an old instance may be asked for a new
        # version's URL, and what it holds under that name must not be kept for a year.
        if has_request_context() and request.endpoint == "static" and filename:
            wanted = request.args.get("v")
            if wanted and wanted == self.extensions["static_version"](filename):
                return YEAR
        return super().get_send_file_max_age(filename)  # revalidated each time


def init_static(app: Flask) -> None:
    folder = app.static_folder or ""

    @cache  # a process serves one release: its files do not change under it
    def version(filename: str) -> str | None:
        path = safe_join(folder, filename)
        if path is None or not Path(path).is_file():
            return None
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]

    app.extensions["static_version"] = version

    @app.url_defaults
    def add_version(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint == "static" and "v" not in values and (v := version(values.get("filename", ""))):
            values["v"] = v
