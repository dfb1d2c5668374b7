"""An allow-list HTML cleaner for article bodies: what WeChat's editor accepts, nothing that runs.

Built on the standard library's tokenizer (no bleach/nh3 in the tree): every tag, attribute and style property not
listed is dropped; the contents of script/style/iframe-like elements go with them; hrefs must be http(s).
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

ALLOWED_TAGS = {
    "p",
    "br",
    "strong",
    "b",
    "em",
    "i",
    "u",
    "span",
    "section",
    "img",
    "h1",
    "h2",
    "h3",
    "h4",
    "ul",
    "ol",
    "li",
    "blockquote",
    "a",
}
VOID_TAGS = {"br", "img"}
# Dropped together with everything inside them.
DROP_CONTENT = {"script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math", "frame", "head"}
ALLOWED_ATTRS = {"a": {"href", "title"}, "img": {"src", "alt", "data-src"}}
ALLOWED_STYLES = {
    "color",
    "background-color",
    "font-size",
    "font-weight",
    "font-style",
    "text-align",
    "text-decoration",
    "line-height",
    "letter-spacing",
    "margin",
    "margin-top",
    "margin-bottom",
    "padding",
    "text-indent",
    "width",
    "max-width",
}
_SAFE_VALUE = re.compile(r"^[#(),.%\w\s-]{1,64}$")
_BAD_VALUE = re.compile(r"expression|javascript|url\s*\(|behavior|@import|\\", re.I)
_SAFE_URL = re.compile(r"^https?://", re.I)
# Images uploaded in the console (replaced at publish): our own file names, no dot-segments.
_LOCAL_SRC = re.compile(r"^/admin/articles/media/articles/(?:[\w-]+/)*[\w-]+\.jpg$")


def _clean_style(value: str) -> str:
    kept = []
    for declaration in value.split(";"):
        name, sep, val = declaration.partition(":")
        name, val = name.strip().lower(), val.strip()
        if not sep or name not in ALLOWED_STYLES or not _SAFE_VALUE.match(val) or _BAD_VALUE.search(val):
            continue
        kept.append(f"{name}: {val}")
    return "; ".join(kept)


def _safe_url(value: str, *, allow_local: bool = False) -> str | None:
    value = value.strip()
    compact = re.sub(r"[\x00-\x20]", "", value)  # "java\tscript:" tricks
    if _SAFE_URL.match(compact) and compact == value:
        return value
    if allow_local and _LOCAL_SRC.match(value):
        return value
    return None


class _Cleaner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROP_CONTENT:
            if tag not in VOID_TAGS:
                self.skip_depth += 1
            return
        if self.skip_depth or tag not in ALLOWED_TAGS:
            return
        kept: list[str] = []
        for name, value in attrs:
            name, value = name.lower(), value or ""
            if name == "style":
                if style := _clean_style(value):
                    kept.append(f'style="{html.escape(style)}"')
            elif name in ALLOWED_ATTRS.get(tag, ()):
                if name in ("href", "src", "data-src"):
                    url = _safe_url(value, allow_local=tag == "img")
                    if url is None:
                        continue
                    value = url
                kept.append(f'{name}="{html.escape(value)}"')
        if tag == "img" and not any(k.startswith(("src=", "data-src=")) for k in kept):
            return  # an image with no usable source is nothing
        self.out.append(f"<{tag}{''.join(' ' + k for k in kept)}>")
        if tag not in VOID_TAGS:
            self.open.append(tag)
        elif tag == "br":
            self.text.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS and tag in self.open and not self.skip_depth:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROP_CONTENT:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if self.skip_depth or tag not in self.open:
            return
        while self.open:  # close what was left open inside it
            inner = self.open.pop()
            self.out.append(f"</{inner}>")
            if inner == tag:
                break
        if tag in ("p", "h1", "h2", "h3", "h4", "li", "blockquote", "section"):
            self.text.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        self.out.append(html.escape(data, quote=False))
        self.text.append(data)

    def result(self) -> str:
        while self.open:
            self.out.append(f"</{self.open.pop()}>")
        return "".join(self.out)


def clean_html(raw: str) -> str:
    """Return `raw` reduced to the allow-list: WeChat-safe markup, no scripts, frames, handlers or javascript:."""
    parser = _Cleaner()
    parser.feed(raw or "")
    parser.close()
    return parser.result()


def html_to_text(cleaned: str) -> str:
    """Plain text of a body, one block per line: what the reviewer's diff compares."""
    parser = _Cleaner()
    parser.feed(cleaned or "")
    parser.close()
    lines = (line.strip() for line in "".join(parser.text).splitlines())
    return "\n".join(line for line in lines if line)


def image_sources(cleaned: str) -> list[str]:
    return re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', cleaned)
