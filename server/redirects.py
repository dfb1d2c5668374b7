"""Where a form may send the browser back to: only a path on this site (under `prefix`), never another host.

An open redirect would hand a logged-in session, or a citizen's trust in the account, to a phishing page.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def local_path(target: str | None, default: str, prefix: str = "/") -> str:
    if (
        target
        and target.startswith(prefix)
        and not target.startswith("//")
        and "\\" not in target
        and not urlsplit(target).netloc
        and not any(ord(c) < 32 for c in target)
    ):
        return target
    return default
