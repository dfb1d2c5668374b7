"""The reply editor the auto-replies and the channel QR codes share: text, an image, or news of up to 8 articles."""

from __future__ import annotations

from typing import Any

from werkzeug.datastructures import MultiDict

REPLY_LABELS = {"text": "文本", "image": "图片", "news": "图文"}
ARTICLE_FIELDS = ("title", "description", "image", "url")
MAX_ARTICLES = 8  # WeChat's limit for a news reply


def articles_from_form(form: MultiDict[str, str]) -> list[dict[str, str]]:
    columns = [form.getlist(f"article_{field}") for field in ARTICLE_FIELDS]
    articles = []
    for cells in zip(*columns, strict=False):
        article = {field: cell.strip() for field, cell in zip(ARTICLE_FIELDS, cells, strict=True)}
        if any(article.values()):  # blank rows of the form are not articles
            articles.append(article)
    return articles


def article_rows(articles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The form's table: the articles, then blank rows up to the limit."""
    blank = dict.fromkeys(ARTICLE_FIELDS, "")
    return (articles + [blank] * MAX_ARTICLES)[:MAX_ARTICLES]
