"""Server-side SVG charts: axis labels stay inside their slot and keep the full text as a tooltip."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from server.console.charts import _text_width, bar_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"
LONG = "欧阳王建国同志（浦东新区城市管理行政执法局陆家嘴中队）"


def axis_labels(svg: str) -> list[tuple[float, str, str | None]]:
    """(x, shown text, tooltip) of each x-axis label: the <text> elements below the plot."""
    root = ET.fromstring(re.sub(r"<svg ", f'<svg xmlns="{SVG[1:-1]}" ', svg, count=1))
    height = float(root.get("viewBox").split()[3])
    out = []
    for el in root.iter(f"{SVG}text"):
        if float(el.get("y")) == height - 6:
            tooltip = el.find(f"{SVG}title")
            shown = (tooltip.tail if tooltip is not None else el.text) or ""
            out.append((float(el.get("x")), shown, tooltip.text if tooltip is not None else None))
    return out


def test_a_long_bar_label_is_cut_with_the_full_name_as_tooltip():
    svg = str(bar_chart([("李娜", 2), ("张伟", 1), ("赵敏", 1), (LONG, 0)], title="得票"))
    labels = axis_labels(svg)
    assert [shown for _, shown, _ in labels[:3]] == ["李娜", "张伟", "赵敏"]
    assert all(tooltip is None for _, _, tooltip in labels[:3])  # short labels are left alone
    x, shown, tooltip = labels[3]
    assert shown.endswith("…") and LONG.startswith(shown[:-1]) and len(shown) < len(LONG)
    assert tooltip == LONG
    step = (720 - 36 - 8) / 4
    assert _text_width(shown) <= step - 6 and x + _text_width(shown) / 2 <= 720  # in its slot, inside the chart
    assert f"<title>{LONG}：0</title>" in svg  # the bar's own tooltip names it in full too


def test_every_other_label_gets_the_room_of_two_bars_and_stays_inside():
    names = [f"浦东新区城市管理行政执法局第{i}中队" for i in range(17)]  # 17 bars: every 2nd labelled, the last too
    labels = axis_labels(str(bar_chart([(n, i) for i, n in enumerate(names)])))
    assert len(labels) == 9 and all(tooltip in names for _, _, tooltip in labels)
    spans = [(x - _text_width(shown) / 2, x + _text_width(shown) / 2) for x, shown, _ in labels]
    assert all(left_end < right_start for (_, left_end), (right_start, _) in zip(spans, spans[1:], strict=False))
    assert spans[-1][1] <= 720


def test_short_labels_are_unchanged():
    days = [(f"12-{d:02d}", d) for d in range(1, 31)]
    bars = axis_labels(str(bar_chart(days)))
    assert [shown for _, shown, _ in bars] == [f"12-{d:02d}" for d in range(1, 31, 3)]
    assert "<title>12-01</title>" not in str(bar_chart(days))
    months = axis_labels(str(line_chart([(f"{m}月", m * 10.0) for m in range(1, 13)])))
    assert [shown for _, shown, _ in months] == [f"{m}月" for m in range(1, 13)]


def test_the_y_axis_figures_fit_left_of_the_plot():
    for chart in (bar_chart([("一月", 57_415), ("二月", 3)]), line_chart([("一月", 1_016_686.0), ("二月", 986_000.0)])):
        root = ET.fromstring(re.sub(r"<svg ", f'<svg xmlns="{SVG[1:-1]}" ', str(chart), count=1))
        height = float(root.get("viewBox").split()[3])
        for el in root.iter(f"{SVG}text"):
            if float(el.get("y")) != height - 6:  # a y-axis figure, right-aligned at x
                assert float(el.get("x")) - _text_width(el.text) >= 0, el.text
        assert "57,415" in str(chart) or "1,016,686" in str(chart)


def test_a_few_bars_say_their_values_zero_included_and_many_do_not():
    few = str(bar_chart([("浦东", 67), ("静安", 0), ("黄浦", 1_250)]))
    assert re.findall(r'<text class="value"[^>]*>([^<]*)</text>', few) == ["67", "0", "1,250"]
    many = str(bar_chart([(f"{d:02d}", d) for d in range(30)]))
    assert 'class="value"' not in many


def _rects_and_axis(svg: str):
    root = ET.fromstring(re.sub(r"<svg ", f'<svg xmlns="{SVG[1:-1]}" ', svg, count=1))
    rects = {el.find(f"{SVG}title").text: el for el in root.iter(f"{SVG}rect")}
    zero = float(root.find(f"{SVG}line").get("y1"))
    axis = {el.text: float(el.get("y")) for el in root.iter(f"{SVG}text") if el.get("text-anchor") == "end"}
    return rects, zero, axis


def test_a_net_loss_hangs_below_a_labelled_zero_line():
    svg = str(bar_chart([("03-01", 8), ("03-02", -4), ("03-03", 0)], title="净增粉丝"))
    rects, zero, axis = _rects_and_axis(svg)
    gain, loss = rects["03-01：8"], rects["03-02：-4"]
    assert float(loss.get("height")) > 0 and float(loss.get("y")) == zero  # from the zero line downwards
    assert abs(float(gain.get("y")) + float(gain.get("height")) - zero) < 0.1  # upwards from it
    assert abs(float(loss.get("height")) - float(gain.get("height")) / 2) < 0.1  # one scale both ways
    assert loss.get("fill") == "#b91c1c" and gain.get("fill") == "#0b5cad"
    assert set(axis) == {"8", "0", "-4"} and axis["8"] < axis["0"] < axis["-4"]  # the axis names both ends and 0
    assert abs(axis["0"] - zero) <= 4
    assert re.findall(r'<text class="value"[^>]*>([^<]*)</text>', svg) == ["8", "-4", "0"]


def test_only_losses_put_the_zero_line_on_top():
    rects, zero, axis = _rects_and_axis(str(bar_chart([("03-01", -2), ("03-02", -6)])))
    assert set(axis) == {"0", "-6"} and zero == 12  # the plot's top
    assert all(float(r.get("y")) == zero for r in rects.values())
