"""Charts rendered on the server as inline SVG: nothing to load, and they print and export as they are."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from markupsafe import Markup, escape

from server.filters import figure

LABEL_SIZE = 11  # axis text, in viewBox units
LABELLED_BARS = 12  # up to this many bars carry their value


def _text_width(text: str, size: float = LABEL_SIZE) -> float:
    """A rough advance width: CJK and fullwidth glyphs are about 1 em, Latin letters and digits about 0.6 em."""
    return sum(size if unicodedata.east_asian_width(ch) in "WFA" else size * 0.6 for ch in text)


def _axis_room(*labels: str) -> int:
    """The left margin that fits the y-axis figures (a fixed one cut the first digit off large ones)."""
    return max(36, round(max(_text_width(label) for label in labels)) + 12)


def _axis_label(x: float, y: float, label: str, max_width: float) -> str:
    """An x-axis label centred on `x` and cut with an ellipsis to `max_width`; a cut label keeps the full text as its
    tooltip."""
    text = label
    if _text_width(label) > max_width:
        room, text = max_width - LABEL_SIZE, ""  # the ellipsis is as wide as a CJK glyph in CJK fonts
        for ch in label:
            if _text_width(text + ch) > room:
                break
            text += ch
        text = text.rstrip() + "…"
    tooltip = f"<title>{escape(label)}</title>" if text != label else ""
    return (
        f'<text x="{x:.1f}" y="{y}" text-anchor="middle" font-size="{LABEL_SIZE}" fill="#6b7280">'
        f"{tooltip}{escape(text)}</text>"
    )


def bar_chart(points: Sequence[tuple[str, float]], *, width: int = 720, height: int = 200, title: str = "") -> Markup:
    """Bars with a label under every few bars and the maximum on the axis; values may be fractional (scores), and
    print as the tables print them. Negative values (a day of net follower loss) hang below a labelled zero line."""
    if not points:
        return Markup('<p class="hint">暂无数据</p>')
    low = min(min(v for _, v in points), 0)
    top = max(max(v for _, v in points), 0 if low < 0 else 1)
    pad_b, pad_t = 24, 12
    pad_l = _axis_room(figure(top), figure(low))
    inner_w, inner_h = width - pad_l - 8, height - pad_b - pad_t
    scale = inner_h / (top - low)
    zero = pad_t + top * scale  # the y of the zero line: the plot's bottom when nothing is negative
    step = inner_w / len(points)
    every = max(1, len(points) // 8)
    axis = 'text-anchor="end" font-size="11" fill="#6b7280"'
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<line class="zero" x1="{pad_l}" y1="{zero:.1f}" x2="{width - 8}" y2="{zero:.1f}" stroke="#d1d5db"/>',
    ]
    if top > 0:
        parts.append(f'<text x="{pad_l - 6}" y="{pad_t + 8}" {axis}>{figure(top)}</text>')
    parts.append(f'<text x="{pad_l - 6}" y="{zero + (4 if 0 < top and low < 0 else 0):.1f}" {axis}>0</text>')
    if low < 0:
        parts.append(f'<text class="low" x="{pad_l - 6}" y="{pad_t + inner_h}" {axis}>{figure(low)}</text>')
    for i, (label, value) in enumerate(points):
        h = abs(value) * scale
        y = zero - h if value >= 0 else zero
        x = pad_l + i * step + step * 0.15
        colour = "#0b5cad" if value >= 0 else "#b91c1c"
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{colour}"><title>{escape(label)}：{figure(value)}</title></rect>'
        )
        if len(points) <= LABELLED_BARS:  # few bars: each says its value (a 0 is then a 0, not a missing bar)
            at = max(zero - h - 3, 10) if value >= 0 else min(zero + h + 11, pad_t + inner_h + 10)
            parts.append(
                f'<text class="value" x="{x + step * 0.35:.1f}" y="{at:.1f}" '
                f'text-anchor="middle" font-size="10" fill="#374151">{figure(value)}</text>'
            )
        if i % every == 0:
            centre = x + step * 0.35
            # The width of `every` bars, and no further than the chart's edges: neighbours don't overlap and the
            # last label doesn't run off.
            room = min(step * every - 6, 2 * (width - centre) - 2)
            parts.append(_axis_label(centre, height - 6, label, room))
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    points: Sequence[tuple[str, float | None]], *, width: int = 720, height: int = 200, title: str = ""
) -> Markup:
    """One line through the known values (None is skipped); the axis runs from the minimum to the maximum, so
    growth on a large total stays visible."""
    values = [v for _, v in points if v is not None]
    if not values:
        return Markup('<p class="hint">暂无数据</p>')
    low, top = min(values), max(values)
    pad_b, pad_t = 24, 12
    pad_l = _axis_room(f"{top:,.0f}", f"{low:,.0f}")
    inner_w, inner_h = width - pad_l - 8, height - pad_b - pad_t
    span = (top - low) or 1
    step = inner_w / max(len(points) - 1, 1)
    every = max(1, len(points) // 8)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<line x1="{pad_l}" y1="{pad_t + inner_h}" x2="{width - 8}" y2="{pad_t + inner_h}" stroke="#d1d5db"/>',
        f'<text x="{pad_l - 6}" y="{pad_t + 8}" text-anchor="end" font-size="11" fill="#6b7280">{top:,.0f}</text>',
        f'<text x="{pad_l - 6}" y="{pad_t + inner_h}" text-anchor="end" font-size="11" fill="#6b7280">'
        f"{low:,.0f}</text>",
    ]
    path: list[str] = []
    for i, (label, value) in enumerate(points):
        x = pad_l + i * step
        if value is not None:
            y = pad_t + inner_h - inner_h * (value - low) / span
            path.append(f"{'L' if path else 'M'}{x:.1f},{y:.1f}")
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="transparent"><title>{escape(label)}：{value:,.0f}'
                "</title></circle>"
            )
        if i % every == 0:
            parts.append(_axis_label(x, height - 6, label, step * every - 6))
    parts.insert(4, f'<path d="{" ".join(path)}" fill="none" stroke="#0b5cad" stroke-width="2"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
