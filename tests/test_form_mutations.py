"""The forms that create or change data, one field at a time: a valid submission first, then each field made hostile
while the others stay valid, a field left out, a key sent twice, and the valid form sent twice.

tests/test_route_sweep.py sends every field the same bad value at once, so a view that refuses its first field never
reaches the code that reads a later one. Here each submission starts from what the page itself renders (its <form>,
parsed as a browser would send it, tests/formscrape.py) completed with valid values, and proves first that the valid
form is accepted and saves something; then every mutation is sent on its own, inside a savepoint rolled back
afterwards, so each starts from the same database. For each one:

- the answer is below 500 and nothing is logged at ERROR (nor the DataError net's warning: an unchecked value);
- a refusal (4xx) says why in Chinese: the form again with its error, an error page, or a JSON `error`;
- a refusal that shows the form again still holds what was typed in the other fields (no lost input);
- a refusal, by a 4xx or by a redirect with an error message, leaves every table as it was (nothing half-saved);
- a double submit of the valid form saves no more rows than one submit (where the feature promises it).

Values are picked by field kind (text, number, date, choice, id) to stay well within a minute on PostgreSQL.
"""

from __future__ import annotations

import html
import io
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.datastructures import MultiDict

import models
from server.extensions import db
from tests import factories, formscrape
from tests.conftest import SQLITE
from tests.test_route_sweep import ErrorLog, World, _describe, request_as
from tests.test_route_sweep import error_log as error_log  # noqa: F401  (a fixture, shared)
from tests.test_route_sweep import sandbox as sandbox  # noqa: F401  (fixtures used here)
from tests.test_route_sweep import world as world  # noqa: F401

HUGE = "x" * 10_000
BAD_UTF8 = "%FF%FE%ED%A0%80"  # invalid UTF-8 (the last three a lone surrogate), sent percent-encoded as it is
NUL = "a\x00b"
TEXT_VALUES = ("", " ", HUGE, NUL, BAD_UTF8, "<script>alert(1)</script>", "²")
NUMBER_VALUES = (str(2**31), str(2**63), "-1", "1e309", "NaN", "1.5")
DATE_VALUES = ("2026-02-30", "0001-01-01", "0001-01-01T00:00", "9999-12-31T23:59", "9999-12-31", "2026-13-45")
ID_VALUES = (str(2**31 - 1), "999999")
NOT_AN_OPTION = "no-such-option"
TEXT_KINDS = {"text", "textarea", "tel", "email", "url", "password", "search"}
DATE_KINDS = {"date", "datetime-local", "time", "month"}
DATEISH = re.compile(r"(^|_)(date|at|on|time|starts?|ends?|since|until|deadline|period|month|day)(_|$)")
CJK = re.compile(r"[\u4e00-\u9fff]")
MAY_CHANGE_ON_REFUSAL: set[str] = set()  # tables a refused request may write by design: none so far
# Create forms with no double-submit guard (a second tap saves a second row); remove a name once its form is guarded.
UNGUARDED: set[str] = set()
# Refusals allowed to show the form again without what was typed in these fields (form id → fields): none left.
LOSES_INPUT: dict[str, tuple[str, ...]] = {}


@dataclass
class Spec:
    """One form: the page that renders it, which <form> on it, who fills it in, and what makes it valid."""

    id: str
    page: str | None  # formatted with the data set's values; None: no page (a JSON API), `fill` is the whole form
    action: str | None = None  # the form's action (formatted like `page`); None: the page itself
    identity: str = "admin"
    fill: dict[str, Any] | str = field(default_factory=dict)  # name -> value(s), None leaves it out; str: a value
    pick: dict[str, str] = field(default_factory=dict)  # fields (hidden, say) that tell one form of the page
    files: dict[str, Callable[[], bytes]] = field(default_factory=dict)
    ids: dict[str, tuple[str, ...]] = field(default_factory=dict)  # field -> extra odd ids (another unit's rows)
    idempotent: bool = True  # a double submit saves no more rows (edits: False, they may add a version row)
    keeps_input: bool = True  # a refusal shows the form again with what was typed
    not_echoed: tuple[str, ...] = ()  # typed fields a refusal deliberately leaves blank (personal data)
    says_why: bool = True  # a refusal's reason is in Chinese (not the Open311 standard's machine answers)


MENU = '{"buttons": [{"type": "click", "name": "随手拍", "key": "TIP_HOWTO"}], "replies": {"TIP_HOWTO": "拍照发来"}}'
SPECS = [
    # Articles, columns, pushes
    Spec("article_new", "/admin/articles/new",
         fill={"title": "劝离占道摊贩", "body_html": "<p>案情经过</p>", "author": "城管"}),
    Spec("article_edit", "/admin/articles/{draft_id}/edit", fill={"title": "劝离占道（修订）"}, idempotent=False),
    Spec(
        "article_column_new", "/admin/articles/columns/new",
        fill={"name": "每周一法", "cadence": "weekly", "weekday": "1", "publish_mode": "publish"},
    ),
    Spec(
        "article_push_new", "/admin/articles/pushes/new",
        fill={"scheduled_at": "{tomorrow}", "article_id": "{ready_id}", "order": "{ready_id}"},
    ),
    Spec(
        "article_push_manual", "/admin/articles/pushes/{push_id}", "/admin/articles/pushes/{push_id}/manual",
        fill={"urls": "https://mp.weixin.qq.com/s/abc"},
    ),
    # Events, sessions, registration, walk-ins
    Spec(
        "event_new", "/admin/events/new",
        fill={
            "title": "秋季开放日", "description": "走进执法局", "registration_opens_at": "{today}",
            "registration_closes_at": "{tomorrow}", "required_fields": ["name", "phone"], "questions": "想看什么？",
        },
    ),
    Spec("event_edit", "/admin/events/{event_id}/edit", fill={"title": "开放日（改期）"}, idempotent=False),
    Spec(
        "event_session_new", "/admin/events/{event_id}", "/admin/events/{event_id}/sessions",
        fill={"starts_at": "{in_5_days}", "ends_at": "{in_5_days_late}", "quota": "20", "venue": "北广场"},
    ),
    Spec(
        "event_session_edit", "/admin/events/{event_id}", "/admin/events/{event_id}/sessions/{session_id}",
        fill={"venue": "南广场", "quota": "30"}, idempotent=False,
    ),
    Spec(
        "event_session_cancel", "/admin/events/{event_id}", "/admin/events/{event_id}/sessions/{session_id}/cancel",
        fill={"reason": "暴雨预警"},
    ),
    Spec(
        "event_walk_in", "/admin/events/{event_id}", "/admin/events/{event_id}/walk-in",
        fill={"name": "李四", "phone": "13900139000", "companions": "1"}, idempotent=False,
    ),
    Spec(
        "event_register", "/m/events/{event_id}", "/m/events/{event_id}/register", identity="stranger",
        fill={"name": "王五", "phone": "13700137000", "companions": "1", "answer_0": "执法流程"},
    ),
    # Tips: the console's status changes, dispatch and settings (the citizen's form needs a photo: not here yet)
    Spec("tip_accept", "/admin/tips/{tip_id}", "/admin/tips/{tip_id}/action", pick={"action": "accept"},
         fill={"note": "已受理，尽快处理"}),
    Spec("tip_dispatch", "/admin/tips/{tip_id}", "/admin/tips/{tip_id}/action", pick={"action": "dispatch"},
         fill={"note": "请浦东中队处理"}, ids={"unit_id": ("{other_unit_id}",)}),
    Spec("tip_reject", "/admin/tips/{tip_id}", "/admin/tips/{tip_id}/action", pick={"action": "reject"},
         fill={"note": "非本局职责"}),
    Spec("tip_duplicate", "/admin/tips/{tip_id}", "/admin/tips/{tip_id}/action", pick={"action": "duplicate"},
         fill={"duplicate_of": "{other_tracking_no}", "note": "重复"}),
    Spec("tip_bulk_dispatch", "/admin/tips", "/admin/tips/dispatch",
         fill={"tip_id": ["{tip_id}"], "unit_id": "{unit_id}"}, ids={"tip_id": ("{other_tip_id}",)}),
    Spec("tip_category_new", "/admin/tips/settings", "/admin/tips/categories", fill={"name": "共享单车", "sort": "5"}),
    Spec("tip_sla", "/admin/tips/settings", "/admin/tips/sla", fill={"submitted": "12"}, idempotent=False),
    Spec("tip_block", "/admin/tips/settings", "/admin/tips/blocks",
         fill={"openid": "o-spam-0002", "reason": "恶意提交"}),
    # Votes and candidates; the citizen's vote
    Spec(
        "vote_new", "/admin/votes/new",
        fill={"title": "最美执法窗口", "description": "评选", "starts_at": "{today}", "ends_at": "{in_5_days}"},
    ),
    Spec("vote_edit", "/admin/votes/{campaign_id}/edit", fill={"title": "最美城管人（第二届）"}, idempotent=False),
    Spec(
        "vote_candidate_new", "/admin/votes/{campaign_id}/candidates/new",
        fill={"name": "赵六", "unit_name": "浦东中队", "story": "十年如一日", "sort": "3"},
    ),
    Spec("vote_cast", "/m/vote/{campaign_id}", "/m/vote/{campaign_id}/cast", identity="stranger",
         ids={"candidate_id": ("{other_candidate_id}",)}),
    # Surveys and answers
    Spec(
        "survey_new", "/admin/surveys/new",
        fill={"title": "市民满意度", "intro": "请如实填写", "starts_at": "{today}", "ends_at": "{in_5_days}"},
    ),
    Spec("survey_answer", "/m/survey/{open_survey_id}", identity="stranger", fill="survey_answers"),
    # Channels, menus, replies, contacts
    Spec("channel_new", "/admin/channels/new",
         fill={"name": "开放日海报", "reply_type": "text", "reply_text": "欢迎报名开放日"}),
    Spec("menu_draft", "/admin/menu", "/admin/menu/draft", fill={"payload": MENU}, idempotent=False),
    Spec(
        "reply_new", "/admin/replies/new",
        fill={"name": "开放日报名", "pattern": "报名", "reply_type": "text", "reply_text": "欢迎报名"},
    ),
    Spec("reply_settings", "/admin/replies", "/admin/replies/settings",
         fill={"welcome_message": "欢迎关注城管执法局", "default_reply": "收到，稍后回复"}, idempotent=False),
    Spec(
        "contact_new", "/admin/contacts/new",
        fill={"name": "陆家嘴联络点", "address": "陆家嘴环路 1 号", "latitude": "31.24", "longitude": "121.50",
              "hours": "工作日 9:00-17:00", "phone": "021-12345678"},
    ),
    # Staff and units
    Spec(
        "staff_new", "/admin/staff/new", not_echoed=("phone",),  # the phone is personal data: typed again
        fill={"username": "officer42", "name": "钱七", "role": "officer", "unit_id": "{unit_id}",
              "phone": "13600136000", "password": "Str0ng-pass-2026"},
    ),
    Spec("unit_new", "/admin/units/new", fill={"name": "静安中队", "kind": "squad", "parent_id": "{unit_id}"}),
    # Materials: captions, crops, regions
    Spec("material_edit", "/admin/materials/{item_id}", "/admin/materials/{item_id}/edit",
         fill={"caption": "占道经营，已劝离", "address": "世纪大道", "tags": "占道,劝离"}, idempotent=False),
    # Alerts and terms
    Spec("alert_term_new", "/admin/alerts/terms", "/admin/alerts/terms", fill={"term": "乱罚款", "weight": "6"}),
    Spec("alert_term_update", "/admin/alerts/terms", "/admin/alerts/terms/{term_id}",
         fill={"weight": "2", "enabled": "1"}, idempotent=False),
    Spec("alert_settings", "/admin/alerts/terms", "/admin/alerts/settings",
         fill={"threshold": "4", "sla_minutes": "45"}, idempotent=False),
    Spec("alert_ack", "/admin/alerts/{alert_id}", "/admin/alerts/{alert_id}/ack", fill={"note": "已核实"}),
    # Open311: a partner files a request (JSON API, no page; its errors follow the standard, in English)
    Spec(
        "open311_request", None, "/open311/v2/requests.json", identity="partner", keeps_input=False, says_why=False,
        fill={"service_code": "{service_code}", "description": "人行道井盖缺失，夜间危险", "lat": "31.23",
              "long": "121.47", "address_string": "世纪大道 100 号", "email": "a@example.com",
              "client_token": "mutation-token-1"},
    ),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# The data the forms need beyond the route sweep's data set


@pytest.fixture(scope="module")
def extra(app, world) -> dict[str, Any]:  # noqa: F811
    """The route sweep's ids, plus rows of another unit, a draft, an unscheduled approved article, an open survey."""
    from server.services import articles, open311, surveys
    from tests.services.test_publishing import approved
    from tests.services.test_surveys import QUESTIONS
    from tests.services.test_tips import file_tip
    from tests.services.test_votes import make_campaign

    values: dict[str, Any] = {k: str(v) for k, v in world.ids.items()}
    with app.app_context(), app.test_request_context():
        editor = db.session.get(models.Staff, world.staff["editor"].id)
        liaison = db.session.get(models.Staff, world.staff["liaison"].id)
        reviewer = db.session.get(models.Staff, world.staff["reviewer"].id)
        other = factories.unit("黄浦分局")
        theirs = file_tip("o-mutation-other-01", description="黄浦区路口有人乱设摊，影响通行")
        theirs.unit_id = other.id
        db.session.commit()
        draft = articles.save_article(liaison, title="劝离占道", body_html="<p>案情</p>", author="城管")
        ready = approved({"liaison": liaison, "reviewer": reviewer, "editor": editor}, "夜查渣土车")
        now = models.utcnow()
        campaign = make_campaign(candidates=1, starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=3))
        survey = surveys.save_survey(
            title="满意度", intro="", starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=9),
            questions=QUESTIONS,
        )  # fmt: skip
        kinds = {"single": "0", "multiple": "0", "scale": "5", "text": "执法很规范"}
        local = now.astimezone(ZoneInfo("Asia/Shanghai"))
        values.update(
            other_unit_id=str(other.id), other_tip_id=str(theirs.id), other_tracking_no=theirs.tracking_no,
            draft_id=str(draft.id), ready_id=str(ready.id), other_candidate_id=str(campaign.candidates[0].id),
            open_survey_id=str(survey.id), service_code=open311.services()[0]["service_code"],
            survey_answers={f"q{q.id}": kinds[q.kind.value] for q in survey.questions},
            today=(local - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            tomorrow=(local + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
            in_5_days=(local + timedelta(days=5)).strftime("%Y-%m-%dT%H:%M"),
            in_5_days_late=(local + timedelta(days=5, hours=2)).strftime("%Y-%m-%dT%H:%M"),
        )  # fmt: skip
        db.session.remove()
    return values


# ---------------------------------------------------------------------------------------------------------------
# The harness


def fingerprint() -> dict[str, tuple[int, str]]:
    """Each table's row count and a digest of its rows, in one query."""
    parts = [
        f"SELECT '{t.name}', count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM \"{t.name}\" x"
        for t in db.metadata.sorted_tables
    ]
    rows = db.session.execute(sa.text(" UNION ALL ".join(parts))).all()
    db.session.rollback()
    return {name: (count, digest) for name, count, digest in rows}


def changed_tables(before: dict, after: dict) -> list[str]:
    return sorted(t for t in after if after[t] != before.get(t) and t not in MAY_CHANGE_ON_REFUSAL)


def _format(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, list):
        return [_format(v, values) for v in value]
    if not isinstance(value, str):
        return value
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m[1]]) if m[1] in values else m[0], value)


def valid_form(app: Flask, world: World, spec: Spec, values: dict[str, Any]) -> tuple[str, MultiDict, dict, str]:
    """(action URL, the valid fields, each field's kind, enctype): the page's own form plus the spec's values."""
    action = _format(spec.action or spec.page, values)
    kinds: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    enctype = ""
    if spec.page is not None:
        page = _format(spec.page, values)
        res = request_as(app, world, spec.identity, "GET", page)
        assert res.status_code == 200, f"{page}: {res.status_code}"
        candidates = [
            f
            for f in formscrape.forms(res.get_data(as_text=True), "http://localhost" + page)
            if f.method == "post" and f.action == action
            and all((x := f.field(k)) is not None and x.value == v for k, v in spec.pick.items())
        ]  # fmt: skip
        assert candidates, f"no form posting to {action} on {page}"
        form = candidates[0]
        pairs = [(k, v) for k, v in form.payload() if k != "csrf_token"]
        kinds = {f.name: f.kind for f in form.fields if f.name}
        enctype = form.enctype
    data = MultiDict(pairs)
    fill = values[spec.fill] if isinstance(spec.fill, str) else spec.fill
    for name, value in fill.items():
        data.poplist(name)
        value = _format(value, values)
        if value is not None:
            data.setlist(name, value if isinstance(value, list) else [value])
        kinds.setdefault(name, "text")
    return action, data, kinds, enctype


def hostile_values(name: str, kind: str, extra_ids: tuple[str, ...]) -> list[str]:
    out = list(TEXT_VALUES)
    if kind not in TEXT_KINDS or name.endswith("_id") or DATEISH.search(name):
        out += NUMBER_VALUES
    if kind in DATE_KINDS or DATEISH.search(name):
        out += DATE_VALUES
    if name.endswith("_id") or name == "id" or kind in ("select", "radio", "checkbox", "hidden"):
        out += [*ID_VALUES, *extra_ids]
    if kind in ("select", "radio"):
        out.append(NOT_AN_OPTION)
    return out


@dataclass
class Outcome:
    status: int
    page: str
    flashed_error: str | None
    logged: list[str]


class Runner:
    """Sends one spec's submissions as its identity; collects what went wrong instead of stopping at the first."""

    def __init__(self, app: Flask, world: World, spec: Spec, log: ErrorLog, enctype: str) -> None:
        self.app, self.world, self.spec, self.log, self.enctype = app, world, spec, log, enctype
        self.failures: list[str] = []
        self.sent = 0

    def post(self, url: str, data: MultiDict, raw: str | None = None) -> Outcome:
        before = len(self.log.records)
        form = MultiDict([("csrf_token", self.world.form_token), *data.items(multi=True)])
        kwargs: dict[str, Any]
        if raw is not None:  # a body no client library would build: percent-encoded bytes, as they are
            if self.spec.identity == "partner":
                form.add("api_key", self.world.api_key)
            body = "&".join(f"{quote(k)}={quote(v)}" for k, v in form.items(multi=True)) + "&" + raw
            kwargs = {"data": body, "content_type": "application/x-www-form-urlencoded"}
        elif "multipart" in self.enctype or self.spec.files:
            for name, make in self.spec.files.items():
                form.add(name, (io.BytesIO(make()), "photo.jpg", "image/jpeg"))
            kwargs = {"data": form, "content_type": "multipart/form-data"}
        else:
            kwargs = {"data": form}
        try:
            res = request_as(self.app, self.world, self.spec.identity, "POST", url, **kwargs)
            status, page, flashed = res.status_code, res.get_data(as_text=True), _flashed_error(self.app, res)
            res.close()
        except Exception as exc:  # noqa: BLE001  (what escaped the app is what we report)
            status, page, flashed = 599, "", None
            self.log.records.append(logging.makeLogRecord({"msg": f"escaped: {exc!r}", "levelno": logging.ERROR}))
        self.sent += 1
        return Outcome(status, page, flashed, [_describe(r) for r in self.log.records[before:]])

    def fail(self, what: str, outcome: Outcome, why: str) -> None:
        self.failures.append(f"{self.spec.id} [{what}] -> {outcome.status}: {why}")


def _flashed_error(app: Flask, res: Any) -> str | None:
    """The error a redirect carries to the next page, read from the session cookie it sets."""
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = next((c for c in res.headers.getlist("Set-Cookie") if c.startswith(name + "=")), "")
    if not cookie or res.status_code >= 400:
        return None
    try:
        session = app.session_interface.get_signing_serializer(app).loads(  # type: ignore[attr-defined]
            cookie.split(";", 1)[0].split("=", 1)[1]
        )
    except Exception:  # noqa: BLE001  (not a session we can read: no flash to report)
        return None
    # A warning is advice after a save (e.g. a unit nobody can be notified in), not a refusal.
    return "；".join(m for c, m in session.get("_flashes", []) if c in ("error", "danger")) or None


_ERROR_TEXT = re.compile(
    r"""<(?:div|p|span|li|output)[^>]*(?:role="alert"|class="[^"]*\b(?:error|flash)\b[^"]*")[^>]*>(.*?)</""", re.S
)


def says_why_in_chinese(outcome: Outcome) -> bool:
    if outcome.page.lstrip().startswith(("{", "[")):
        return bool(CJK.search(outcome.page.encode().decode("unicode_escape", "ignore")))
    if f"<h1>{outcome.status}</h1>" in outcome.page:  # the error page
        return bool(CJK.search(outcome.page.split("<p>", 1)[-1]))
    return any(CJK.search(html.unescape(m)) for m in _ERROR_TEXT.findall(outcome.page))


def lost_input(
    outcome: Outcome, data: MultiDict, mutated: str, kinds: dict[str, str], not_echoed: tuple[str, ...]
) -> list[str]:
    """The other typed fields whose value the page no longer holds (passwords are never shown again)."""
    page = html.unescape(outcome.page)
    lost = []
    for name, value in data.items(multi=True):
        if name == mutated or name in not_echoed or kinds.get(name) not in TEXT_KINDS - {"password"}:
            continue
        if len(value.strip()) >= 2 and value.strip() not in page:
            lost.append(name)
    return lost


@contextmanager
def savepoint(app: Flask, world: World) -> Iterator[None]:
    point = world.connection.begin_nested()
    try:
        yield
    finally:
        with app.app_context():
            db.session.remove()
        if point.is_active:
            point.rollback()
        app.extensions["redis"].flushdb()  # rate limits and dedupe keys of the last try


@pytest.mark.skipif(SQLITE, reason="each mutation is rolled back to a savepoint: PostgreSQL")
@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_a_form_refuses_each_hostile_field_clearly_and_saves_nothing_half(app, sandbox, extra, error_log, spec):
    action, valid, kinds, enctype = valid_form(app, sandbox, spec, extra)
    run = Runner(app, sandbox, spec, error_log, enctype)
    with app.app_context():
        clean = fingerprint()

    # The valid form is accepted and saves something; sent twice, it saves no more rows than once.
    with savepoint(app, sandbox):
        ok = run.post(action, valid)
        assert ok.status < 400 and not ok.logged and not ok.flashed_error, (
            f"the valid form was refused: {ok.status} {ok.flashed_error or ''} {ok.logged} "
            f"{(_ERROR_TEXT.findall(ok.page) or [ok.page[:300]])[:2]} {dict(valid.lists())}"
        )
        with app.app_context():
            once = fingerprint()
        assert changed_tables(clean, once), "the valid form saved nothing"
        again = run.post(action, valid)
        if again.status >= 500 or again.logged:
            run.fail("double submit", again, str(again.logged))
        if spec.idempotent and spec.id not in UNGUARDED:
            with app.app_context():
                twice = fingerprint()
            if grew := [t for t in twice if twice[t][0] != once[t][0]]:
                run.fail("double submit", again, f"rows added again in {grew}")

    def check(what: str, data: MultiDict, mutated: str, raw: str | None = None) -> None:
        with savepoint(app, sandbox):
            out = run.post(action, data, raw)
            if out.status >= 500 or out.logged:
                run.fail(what, out, f"server error {out.logged[:2]}")
                return
            if out.status < 400 and out.flashed_error is None:
                return  # accepted
            if out.status >= 400 and spec.says_why and not says_why_in_chinese(out):
                run.fail(what, out, "refused without a reason in Chinese: " + re.sub(r"\s+", " ", out.page)[:200])
            if (
                out.status in (400, 409, 422) and spec.keeps_input
                and kinds.get(mutated) != "hidden"  # set by the page, not typed: tampered, the form may be unknown
                and "\x00" not in (data.get(mutated) or "")  # refused as the body is parsed, before any view
                and (lost := lost_input(out, data, mutated, kinds, spec.not_echoed + LOSES_INPUT.get(spec.id, ())))
            ):  # fmt: skip
                run.fail(what, out, f"typed input lost: {lost}")
            with app.app_context():
                if changed := changed_tables(clean, fingerprint()):
                    run.fail(what, out, f"refused but saved rows in {changed}")

    for name in dict.fromkeys(valid.keys()):
        kind = kinds.get(name, "text")
        extra_ids = tuple(_format(v, extra) for v in spec.ids.get(name, ()))
        for value in hostile_values(name, kind, extra_ids):
            data = valid.copy()
            if value == BAD_UTF8:
                data.poplist(name)
                check(f"{name}=bad UTF-8", data, name, raw=f"{quote(name)}={BAD_UTF8}")
                continue
            data.setlist(name, [value])
            check(f"{name}={value[:20]!r}", data, name)
        data = valid.copy()
        data.poplist(name)
        check(f"{name} left out", data, name)
        data = valid.copy()
        data.setlist(name, [*valid.getlist(name), "²"])
        check(f"{name} sent twice", data, name)

    assert not run.failures, f"{len(run.failures)} of {run.sent} submissions failed:\n" + "\n".join(run.failures[:60])
