"""The server's SVG charts as a browser lays them out: no axis figure is cut off at the left edge."""

from __future__ import annotations

from server.console.charts import bar_chart, line_chart


def test_y_axis_figures_are_drawn_inside_the_chart(browser):
    page = browser.new_page()
    charts = (
        bar_chart([("一月", 57_415), ("二月", 3)]),
        line_chart([("一月", 1_016_686.0), ("二月", 986_000.0)]),
        bar_chart([("一月", 9_999_999), ("二月", 1)], width=480),
    )
    for chart in charts:
        page.set_content(f'<html><body style="margin:0;font-family:sans-serif">{chart}</body></html>')
        lefts = page.evaluate("() => [...document.querySelectorAll('svg text')].map(t => t.getBBox().x)")
        assert lefts and min(lefts) >= 0, lefts
    page.close()
