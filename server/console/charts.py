"""Charts rendered on the server as inline SVG: nothing to load, and they print and export as they are."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape


def bar_chart(points: Sequence[tuple[str, int]], *, width: int = 720, height: int = 200, title: str = "") -> Markup:
    """Bars with a label under every few bars and the maximum on the axis."""
    if not points:
        return Markup('<p class="hint">暂无数据</p>')
    pad_l, pad_b, pad_t = 36, 24, 12
    inner_w, inner_h = width - pad_l - 8, height - pad_b - pad_t
    top = max(max(v for _, v in points), 1)
    step = inner_w / len(points)
    every = max(1, len(points) // 8)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<line x1="{pad_l}" y1="{pad_t + inner_h}" x2="{width - 8}" y2="{pad_t + inner_h}" stroke="#d1d5db"/>',
        f'<text x="{pad_l - 6}" y="{pad_t + 8}" text-anchor="end" font-size="11" fill="#6b7280">{top}</text>',
        f'<text x="{pad_l - 6}" y="{pad_t + inner_h}" text-anchor="end" font-size="11" fill="#6b7280">0</text>',
    ]
    for i, (label, value) in enumerate(points):
        h = inner_h * value / top
        x = pad_l + i * step + step * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{pad_t + inner_h - h:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
            f'fill="#0b5cad"><title>{escape(label)}：{value}</title></rect>'
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + step * 0.35:.1f}" y="{height - 6}" text-anchor="middle" font-size="11" '
                f'fill="#6b7280">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
