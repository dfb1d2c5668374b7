from server.services.htmlclean import clean_html, html_to_text


def test_keeps_wechat_safe_markup():
    raw = (
        '<section style="text-align: center; color: #333"><h2>案情</h2><p>某<strong>商户</strong><em>占道</em>'
        '<br><span style="font-size: 15px">经营</span></p><ul><li>一</li></ul><blockquote>提示</blockquote>'
        '<a href="https://example.gov.cn/x?a=1">原文</a><img src="https://mmbiz.qpic.cn/a.jpg" alt="图"></section>'
    )
    out = clean_html(raw)
    for piece in (
        '<section style="text-align: center; color: #333">',
        "<h2>案情</h2>",
        "<strong>商户</strong>",
        "<em>占道</em>",
        "<br>",
        '<span style="font-size: 15px">',
        "<li>一</li>",
        "<blockquote>提示</blockquote>",
        '<a href="https://example.gov.cn/x?a=1">原文</a>',
        '<img src="https://mmbiz.qpic.cn/a.jpg" alt="图">',
    ):
        assert piece in out


def test_drops_scripts_iframes_handlers_and_javascript_urls():
    raw = (
        '<p onclick="steal()" onmouseover="x()">正文<script>alert(1)</script></p>'
        '<iframe src="https://evil.example/"><p>inside</p></iframe>'
        '<a href="javascript:alert(1)">点我</a><a href=" JaVaScRiPt:alert(1)">二</a>'
        '<img src="x" onerror="alert(1)"><img src="data:image/png;base64,AAA">'
        '<p style="width: expression(alert(1)); color: red; background: url(javascript:x)">样式</p>'
        "<style>p{}</style><object data=x></object><form><input name=a></form><svg><script>1</script></svg>"
    )
    out = clean_html(raw)
    low = out.lower()
    for bad in (
        "script",
        "iframe",
        "onclick",
        "onmouseover",
        "onerror",
        "javascript",
        "expression",
        "inside",
        "data:",
        "url(",
        "<form",
        "<input",
        "<object",
        "<svg",
        "<style",
    ):
        assert bad not in low, bad
    assert "<p>正文</p>" in out
    assert '<p style="color: red">样式</p>' in out
    assert "<a>点我</a>" in out


def test_escapes_text_and_closes_tags():
    out = clean_html("<p>a < b & <strong>c")
    assert out == "<p>a &lt; b &amp; <strong>c</strong></p>"


def test_text_for_diff():
    assert html_to_text("<h3>案情</h3><p>一</p><p>二<br>三</p>") == "案情\n一\n二\n三"


def test_console_images_only_by_their_own_names():
    kept = '<img src="/admin/articles/media/articles/body/ab12.jpg">'
    assert clean_html(kept) == kept
    for src in ("/admin/articles/media/articles/../originals/a0/x.jpg", "/admin/articles/media/tips/public/x.jpg"):
        assert "src" not in clean_html(f'<img src="{src}">')
