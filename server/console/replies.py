"""Auto-replies: keyword and menu-click rules, the welcome message and the default reply, and a "test a message" box."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from models import MatchType, ReplyRule, ReplyType, Role
from server.console import bp
from server.console.access import require_roles
from server.console.reply_fields import REPLY_LABELS, article_rows, articles_from_form
from server.extensions import db
from server.services import ServiceError, replies

MATCH_LABELS = {"exact": "精确", "contains": "包含", "regex": "正则", "click": "菜单点击", "scene": "渠道二维码"}


def _rule_or_404(rule_id: int) -> ReplyRule:
    rule = db.session.get(ReplyRule, rule_id)
    if rule is None or rule.match_type is MatchType.SCENE:  # a channel's reply: edited on the channel's page
        abort(404)
    return rule


def _page(**context: Any) -> str:
    test_kind = request.args.get("kind", "text")
    test_msg = request.args.get("msg", "")[:2048]
    explanation = None
    if test_msg.strip():
        if test_kind == "click":
            explanation = replies.explain_click(test_msg)
        else:
            explanation = replies.explain_text(test_msg)
    context.setdefault("settings", replies.text_settings())
    context.setdefault("settings_error", None)
    return render_template(
        "console/reply_list.html",
        rules=replies.list_rules(),
        shadowed=replies.shadowed_rules(),
        test_msg=test_msg,
        test_kind="click" if test_kind == "click" else "text",
        explanation=explanation,
        match_labels=MATCH_LABELS,
        reply_labels=REPLY_LABELS,
        welcome_key=replies.WELCOME_KEY,
        default_key=replies.DEFAULT_KEY,
        **context,
    )


@bp.get("/replies")
@require_roles(Role.ADMIN, Role.EDITOR)
def reply_list():  # type: ignore[no-untyped-def]
    return _page()


def _values_from_rule(rule: ReplyRule | None) -> dict[str, Any]:
    if rule is None:
        return {"name": "", "match_type": "contains", "pattern": "", "priority": "0", "enabled": True,
                "reply_type": "text", "reply_text": "", "media_id": "", "articles": []}  # fmt: skip
    return {
        "name": rule.name,
        "match_type": rule.match_type.value,
        "pattern": rule.pattern,
        "priority": str(rule.priority),
        "enabled": rule.enabled,
        "reply_type": rule.reply_type.value,
        "reply_text": rule.reply_text or "",
        "media_id": rule.media_id or "",
        "articles": list(rule.articles or []),
    }


def _values_from_form(form: MultiDict[str, str]) -> dict[str, Any]:
    return {
        "name": form.get("name", ""),
        "match_type": form.get("match_type", ""),
        "pattern": form.get("pattern", "").strip(),
        "priority": form.get("priority", "0").strip(),
        "enabled": form.get("enabled") == "on",
        "reply_type": form.get("reply_type", ""),
        "reply_text": form.get("reply_text", ""),
        "media_id": form.get("media_id", "").strip(),
        "articles": articles_from_form(form),
    }


def _save(values: dict[str, Any], rule: ReplyRule | None) -> ReplyRule:
    try:
        priority = int(values["priority"] or 0)
    except ValueError:
        raise ServiceError("优先级须为整数，数字越大越先匹配") from None
    reply_type = values["reply_type"]
    # Only the fields of the chosen reply type are kept: switching type must not leave a stale reply behind.
    return replies.save_rule(
        name=values["name"],
        match_type=values["match_type"],
        pattern=values["pattern"],
        reply_type=reply_type,
        reply_text=values["reply_text"] if reply_type == ReplyType.TEXT else None,
        media_id=values["media_id"] or None if reply_type == ReplyType.IMAGE else None,
        articles=values["articles"] or None if reply_type == ReplyType.NEWS else None,
        priority=priority,
        enabled=values["enabled"],
        rule=rule,
    )


def _warn_shadows(rule: ReplyRule) -> None:
    """A keyword rule another rule always answers before is dead weight nobody notices: say so at the save."""
    shadowed = replies.shadowed_rules()
    if (first := shadowed.get(rule.id)) is not None:
        flash(
            f"注意：这条规则不会被触发。规则「{first.name}」（{MATCH_LABELS[first.match_type.value]}「{first.pattern}」，"
            f"优先级 {first.priority}）会先回复同样的消息；请调高这条规则的优先级，或修改关键词。",
            "warning",
        )
    hidden = [db.session.get(ReplyRule, rule_id) for rule_id, by in shadowed.items() if by.id == rule.id]
    if hidden:
        names = "、".join(f"「{other.name}」" for other in hidden if other is not None)
        flash(f"注意：这条规则会抢先回复，规则 {names} 不会再被触发。", "warning")


@bp.route("/replies/new", methods=["GET", "POST"], defaults={"rule_id": None})
@bp.route("/replies/<int:rule_id>", methods=["GET", "POST"])
@require_roles(Role.ADMIN, Role.EDITOR)
def reply_edit(rule_id: int | None):  # type: ignore[no-untyped-def]
    rule = _rule_or_404(rule_id) if rule_id else None
    error = None
    if request.method == "POST":
        values = _values_from_form(request.form)
        try:
            rule = _save(values, rule)
        except ServiceError as exc:
            error = str(exc)
        else:
            flash(f"已保存：{rule.name}。公众号收到的消息马上按新规则回复。", "success")
            _warn_shadows(rule)
            return redirect(url_for("console.reply_list"))
    else:
        values = _values_from_rule(rule)
    return render_template(
        "console/reply_form.html",
        rule=rule,
        values=values,
        article_rows=article_rows(values["articles"]),
        error=error,
        match_types=[m for m in MatchType if m is not MatchType.SCENE],
        reply_types=list(ReplyType),
        match_labels=MATCH_LABELS,
        reply_labels=REPLY_LABELS,
    ), 400 if error else 200


@bp.post("/replies/<int:rule_id>/enabled")
@require_roles(Role.ADMIN, Role.EDITOR)
def reply_toggle(rule_id: int):  # type: ignore[no-untyped-def]
    rule = _rule_or_404(rule_id)
    enabled = request.form.get("enabled") == "1"  # the state wanted, not a flip: a double click is harmless
    replies.set_rule_enabled(rule, enabled)
    flash(f"已{'启用' if enabled else '停用'}：{rule.name}", "success")
    return redirect(url_for("console.reply_list"))


@bp.post("/replies/<int:rule_id>/delete")
@require_roles(Role.ADMIN, Role.EDITOR)
def reply_delete(rule_id: int):  # type: ignore[no-untyped-def]
    rule = _rule_or_404(rule_id)
    name = rule.name
    replies.delete_rule(rule)
    flash(f"已删除：{name}", "success")
    return redirect(url_for("console.reply_list"))


@bp.post("/replies/settings")
@require_roles(Role.ADMIN, Role.EDITOR)
def reply_settings():  # type: ignore[no-untyped-def]
    values = {key: request.form.get(key, "").strip() for key in (replies.WELCOME_KEY, replies.DEFAULT_KEY)}
    try:
        replies.set_text_settings(values)
    except ServiceError as exc:
        return _page(settings=values, settings_error=str(exc)), 400
    flash("已保存欢迎语和默认回复", "success")
    return redirect(url_for("console.reply_list"))
