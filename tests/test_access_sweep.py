"""Who may reach what, over every route: the console's role matrix as declared here, refused live; a liaison of
another unit against every unit-scoped record; every state-changing request without its form token; every GET
against a write; every page against being framed by another site.

The per-feature tests (tests/console/test_tips.py, test_materials.py, …) check the rules where they are made; this
is the net under them, as tests/test_route_sweep.py is for hostile input, and it reuses that sweep's data set. A route
added to the console must be declared below for the roles it is for: the matrix test names it until it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.routing import Rule

import models
from server.extensions import db
from tests import factories
from tests import test_route_sweep as sweep
from tests.test_route_sweep import (
    RAW_TOKEN,
    ROLES,
    build_url,
    fill,
    request_as,
    routes,
    session_cookie,
    signed_in,
    view_of,
)

# The sweep's data set (built once for this module too) and its per-test rollback, as fixtures here.
world, sandbox = sweep.world, sweep.sandbox

# -- the console's role matrix ---------------------------------------------------------------------------------------

# Reachable by anyone signed in (officers too): the view decides for itself (the home page gives officers theirs).
OPEN = {"console.login", "console.logout", "console.logout_everywhere", "console.password_change", "console.home"}
# Accounts, units, WeChat bindings, partner keys, the audit log, the statistics sync: admins (the audit log: reviewers
# too, who check what others did).
ADMIN_ONLY = {
    "console.staff_list", "console.staff_edit", "console.staff_unlock", "console.staff_phone_reveal",
    "console.unit_list", "console.unit_edit",
    "console.binding_list", "console.binding_create", "console.binding_detail", "console.binding_qr",
    "console.binding_qr_renew", "console.binding_revoke", "console.binding_unbind", "console.binding_tag_sync",
    "console.open311_key_list", "console.open311_key_create", "console.open311_key_revoke",
    "console.stats_sync", "console.audit_list",
}  # fmt: skip
# Reviewers (审核/领导) read everything, approve articles, review vote brushing, handle 舆情 on duty, export results
# without personal data; they publish nothing and change no settings.
REVIEWER_MAY = {
    "console.alert_list", "console.alert_feed", "console.alert_detail", "console.alert_ack", "console.alert_close",
    "console.article_calendar", "console.article_list", "console.article_detail", "console.article_action",
    "console.article_preview",
    "console.article_media", "console.article_numbers", "console.article_push_detail", "console.article_push_list",
    "console.audit_list",
    "console.event_list", "console.event_detail", "console.event_public_key",
    "console.follower_list", "console.follower_detail",
    "console.material_list", "console.material_feed", "console.material_detail", "console.material_file",
    "console.material_stats",
    "console.stats_dashboard", "console.stats_plan", "console.stats_records", "console.stats_scoreboard",
    "console.stats_reports", "console.stats_report_generate", "console.stats_report_download",
    "console.stats_report_export", "console.stats_report_print",
    "console.survey_results", "console.survey_export",
    "console.tip_list", "console.tip_detail", "console.tip_action", "console.tip_export", "console.tip_photo",
    "console.vote_list", "console.vote_detail", "console.vote_review", "console.vote_cluster", "console.vote_void",
    "console.vote_rebuild", "console.vote_export",
}  # fmt: skip
# Liaisons (宣传联络员) work for their unit: its tips, photos, articles and records (each view checks the unit), and
# the gate at events. No publishing, menus, replies, settings, 舆情, people or exports of personal data (their tip
# export masks phones, as their tip pages do).
LIAISON_MAY = {
    "console.article_calendar", "console.article_list", "console.article_detail", "console.article_action",
    "console.article_preview",
    "console.article_new", "console.article_edit", "console.article_media_upload", "console.article_media",
    "console.article_library", "console.article_library_body", "console.article_numbers",
    "console.article_push_detail", "console.article_push_list",
    "console.event_list", "console.event_detail", "console.event_public_key", "console.event_scan",
    "console.event_scan_check", "console.event_walk_in", "console.event_jssdk_config",
    "console.follower_list", "console.follower_detail",
    "console.material_list", "console.material_feed", "console.material_detail", "console.material_file",
    "console.material_stats", "console.material_edit", "console.material_process", "console.material_star",
    "console.material_delete", "console.material_upload_retry",
    "console.stats_dashboard", "console.stats_plan", "console.stats_records", "console.stats_record_delete",
    "console.stats_scoreboard", "console.stats_reports", "console.stats_report_download",
    "console.stats_report_export", "console.stats_report_print",
    "console.survey_results",
    "console.tip_list", "console.tip_detail", "console.tip_action", "console.tip_export", "console.tip_photo",
    "console.vote_list", "console.vote_detail",
}  # fmt: skip


def console_endpoints(app: Flask) -> set[str]:
    return {r.endpoint for r in app.url_map.iter_rules() if r.rule.startswith("/admin/")}


def allowed(app: Flask, endpoint: str) -> set[str] | None:
    """The roles a view's decorator lets through; None: no role check."""
    roles = getattr(app.view_functions[endpoint], "allowed_roles", None)
    return None if roles is None else {str(r) for r in roles}


def expected(app: Flask, role: str) -> set[str]:
    guarded = console_endpoints(app) - OPEN
    return {
        "admin": guarded,
        "editor": guarded - ADMIN_ONLY,
        "reviewer": REVIEWER_MAY,
        "liaison": LIAISON_MAY,
        "officer": set(),
    }[role]


def test_every_console_view_checks_a_role_except_the_open_ones(app):
    unguarded = {ep for ep in console_endpoints(app) if allowed(app, ep) is None}
    assert unguarded == OPEN


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_the_console_views_it_is_for(app, role):
    reached = {ep for ep in console_endpoints(app) - OPEN if role in allowed(app, ep)}  # type: ignore[operator]
    want = expected(app, role)
    assert reached == want, (
        f"{role} reaches views not declared for it: {sorted(reached - want)}; "
        f"declared but refused: {sorted(want - reached)}"
    )


def test_no_action_lets_in_a_role_its_page_refuses(app):
    """A POST on the same URL as a page (the form's target) admits no role that the page itself refuses."""
    pages: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin/") and "GET" in rule.methods and (roles := allowed(app, rule.endpoint)):
            pages[rule.rule] = roles
    wider = [
        (rule.rule, rule.endpoint, sorted(roles - pages[rule.rule]))
        for rule in app.url_map.iter_rules()
        if "POST" in rule.methods
        and rule.rule in pages
        and (roles := allowed(app, rule.endpoint)) is not None
        and roles - pages[rule.rule]
    ]
    assert not wider


def console_rules(app: Flask) -> list[Rule]:
    return [r for r in routes(app) if r.rule.startswith("/admin/")]


def test_refused_roles_get_403_and_strangers_the_login_page(app, sandbox):
    """The matrix above, live: the decorators are in force on every rule, for every method."""
    wrong = []
    for rule in console_rules(app):
        roles = allowed(app, rule.endpoint)
        for values in fill(rule, sandbox, view_of(app, rule.endpoint))[:1]:
            url = build_url(rule, values)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                data = {"csrf_token": sandbox.form_token}
                if rule.endpoint != "console.login":
                    res = request_as(app, sandbox, "anonymous", method, url, data=data)
                    if res.status_code != 302 or "/admin/login" not in res.headers.get("Location", ""):
                        wrong.append(f"anonymous {method} {url} -> {res.status_code}")
                for role in ROLES:
                    if roles is None or role in roles:
                        continue
                    status = request_as(app, sandbox, role, method, url, data=data).status_code
                    if status != 403:
                        wrong.append(f"{role} {method} {url} -> {status}")
    assert not wrong, "\n".join(wrong)


# -- a liaison of another unit ---------------------------------------------------------------------------------------

# URL values naming a record that belongs to a unit: the data set's are all the liaison's unit's (浦东分局).
UNIT_SCOPED = {"tip_id", "photo_id", "item_id", "article_id", "push_id", "record_id"}


@pytest.fixture
def outsider(app, sandbox) -> Iterator[str]:
    """A liaison of another unit, signed in: the identity name request_as knows the cookie by."""
    with app.app_context():
        other = factories.unit("黄浦分局")
        person = factories.staff("sweep-outsider", "liaison", unit=other)
        sandbox.cookies["outsider"] = session_cookie(
            app, {"csrf_token": RAW_TOKEN, "_user_id": person.get_id(), "_fresh": True, **signed_in()}
        )
        db.session.commit()
    yield "outsider"
    sandbox.cookies.pop("outsider", None)


def test_a_liaison_of_another_unit_is_refused_every_record_of_this_one(app, sandbox, outsider):
    reached = []
    for rule in console_rules(app):
        if not UNIT_SCOPED & set(rule.arguments) or "liaison" not in (allowed(app, rule.endpoint) or ()):
            continue
        for values in fill(rule, sandbox, view_of(app, rule.endpoint)):
            url = build_url(rule, values)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                res = request_as(app, sandbox, outsider, method, url, data={"csrf_token": sandbox.form_token})
                if res.status_code not in (403, 404):
                    reached.append(f"{method} {url} -> {res.status_code}")
    assert not reached, "\n".join(reached)


def test_a_liaison_of_another_unit_lists_none_of_this_ones_records(app, sandbox, outsider):
    with app.app_context():
        tip = db.session.get(models.Tip, sandbox.ids["tip_id"])
        article = db.session.get(models.Article, sandbox.ids["article_id"])
        shown = (tip.display_no, article.title)
    for path in (
        "/admin/tips",
        "/admin/tips?view=map",
        "/admin/articles/list",
        "/admin/articles/pushes",
        "/admin/materials",
    ):
        page = request_as(app, sandbox, outsider, "GET", path).get_data(as_text=True)
        assert not [s for s in shown if s in page], path
    feed = request_as(app, sandbox, outsider, "GET", "/admin/materials/feed.json?after=0").json
    assert feed["items"] == []
    library = request_as(app, sandbox, outsider, "GET", "/admin/articles/library").json
    assert library["items"] == []
    # and the owner's liaison does see them: the checks above are not passing on an empty data set
    assert tip.display_no in request_as(app, sandbox, "liaison", "GET", "/admin/tips").get_data(as_text=True)
    assert request_as(app, sandbox, "liaison", "GET", "/admin/materials/feed.json?after=0").json["items"]


# -- request forgery -------------------------------------------------------------------------------------------------

# Exempt from the form token, and why: WeChat signs its POSTs; Open311 partners send an api_key, no cookie.
CSRF_EXEMPT = {"wechat.wechat_receive", "open311.request_create"}


def _who(rule: Rule) -> str:
    """An identity that gets past the view's own gate, so that only the token stands in the way."""
    if rule.rule.startswith("/m/upload"):
        return "officer_wechat"
    if rule.rule.startswith("/m/"):
        return "citizen"
    return "admin"


FORGED = ({"data": {"x": "1"}}, {"data": "{}", "content_type": "application/json"})  # a form; a page script's JSON


def test_every_state_changing_request_needs_the_form_token(app, sandbox):
    let_through = []
    for rule in routes(app):
        methods = sorted(rule.methods - {"GET", "HEAD", "OPTIONS"})
        if not methods or rule.endpoint in CSRF_EXEMPT:
            continue
        for values in fill(rule, sandbox, view_of(app, rule.endpoint)):
            url = build_url(rule, values)
            for method in methods:
                for sent in FORGED:
                    res = request_as(app, sandbox, _who(rule), method, url, headers={"X-CSRFToken": ""}, **sent)
                    if res.status_code != 400 or "页面已过期" not in res.get_data(as_text=True):
                        let_through.append(f"{method} {url} -> {res.status_code}")
    assert not let_through, "\n".join(let_through)


def test_csrf_exempt_routes_are_the_declared_ones(app):
    csrf = app.extensions["csrf"]
    exempt = csrf._exempt_views | {f"{bp.name}.*" for bp in csrf._exempt_blueprints}
    assert exempt == {
        "server.citizen.tips.tip_create",  # checked in the view, after the body's size limit is set
        "server.citizen.votes.survey_form",  # checked in the view: an expired page keeps the answers given
        "wechat.*",
        "open311.*",
    }


WRITES = ("INSERT", "UPDATE", "DELETE")


def test_no_get_request_changes_anything_but_the_audit_log(app, sandbox):
    """GETs read: a link, a prefetch or an <img> from another site must not change state. Viewing personal data and
    exports are audited, which is the one write a GET may make."""
    writes: list[str] = []
    current: dict[str, str] = {}

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if current and verb in WRITES and not statement.lstrip().upper().startswith("INSERT INTO AUDIT_LOG"):
            writes.append(f"{current['who']} GET {current['url']}: {statement.strip()[:100]}")

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", listen)
    try:
        for rule in routes(app):
            if "GET" not in rule.methods:
                continue
            view = view_of(app, rule.endpoint)
            who = ("admin", "liaison") if rule.rule.startswith("/admin/") else ("anonymous", _who(rule))
            for identity in who:
                for values in fill(rule, sandbox, view):
                    current.update(who=identity, url=build_url(rule, values))
                    request_as(app, sandbox, identity, "GET", current["url"]).close()
                    current.clear()
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", listen)
    assert not writes, "\n".join(dict.fromkeys(writes))


def test_no_page_can_be_framed_by_another_site(app, sandbox):
    """Clickjacking: a page of ours in an invisible frame on another site turns a click there into 发布菜单, 吊销密钥 or
    a vote here. Every HTML answer forbids framing, the error pages and redirects included."""
    framable = []
    for rule in routes(app):
        if "GET" not in rule.methods:
            continue
        who = "admin" if rule.rule.startswith("/admin/") else _who(rule)
        for values in fill(rule, sandbox, view_of(app, rule.endpoint))[:1]:
            url = build_url(rule, values)
            res = request_as(app, sandbox, who, "GET", url)
            res.close()  # a photo's file
            if res.mimetype == "text/html" and (
                res.headers.get("X-Frame-Options") != "DENY"
                or "frame-ancestors 'none'" not in res.headers.get("Content-Security-Policy", "")
            ):
                framable.append(f"{who} GET {url} -> {res.status_code}")
    assert not framable, "\n".join(framable)
    for path in ("/admin/no-such-page", "/m/no-such-page"):  # error pages too
        assert request_as(app, sandbox, "admin", "GET", path).headers.get("X-Frame-Options") == "DENY"


def test_identities_used_here_are_the_sweeps(app, sandbox):
    """The cookies this module leans on still open the pages they are meant to (else every check above is vacuous)."""
    assert request_as(app, sandbox, "citizen", "GET", "/m/tips").status_code == 200
    assert request_as(app, sandbox, "officer_wechat", "GET", "/m/upload").status_code == 200
    assert request_as(app, sandbox, "admin", "GET", "/admin/staff").status_code == 200
