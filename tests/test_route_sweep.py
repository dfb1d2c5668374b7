"""Every route, every kind of visitor, hostile input: the answer is below 500, no unhandled error is logged and no
value is left for the database to refuse (the DataError net in server/__init__.py is for what no check foresaw).

The product rule (DESIGN.md): bad input gets a clear Chinese 4xx, never a 500 or a database error. The targeted
cases live next to each feature (tests/console/test_hostile_input.py); this sweep is the net under all of them and
covers a route the day it is added. For each rule of `app.url_map` it fills the URL with ids of real rows (one small
data set, built once per module) and with odd ones, then sends hostile query strings, forms, JSON bodies and files
as an anonymous visitor, as citizens, as an Open311 partner and as each console role. A role the view refuses by
its decorator gets one request; the rest of that role's inputs would never reach the view.

Field names come cheaply from the view's module (`.get("x")`, `form["x"]`) and the `name="…"` attributes of the
templates it renders, plus a generic set; every field gets the same hostile value in one request. Each rule is one
test, rolled back to the data set afterwards (SQLite: kept, so later rules may meet fewer rows).
"""

from __future__ import annotations

import inspect
import io
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from itsdangerous import URLSafeTimedSerializer
from werkzeug.routing import Rule

import models
from server.console import auth
from server.extensions import db
from server.services import binding, events, open311, tips, votes
from server.services import replies as replies_service
from tests import factories
from tests.conftest import SQLITE, _empty_tables
from tests.services.test_events import make_event
from tests.services.test_publishing import approved, jpeg
from tests.services.test_surveys import make as make_survey
from tests.services.test_tips import file_tip
from tests.services.test_votes import make_campaign

# Not ours to fuzz here:
SKIPPED = {
    "static": "werkzeug's send_from_directory over vendored files; no code of ours reads the path",
    "wechat.wechat_verify": "WeChat's signed gateway: tests/wechat/test_gateway*.py and test_corpus.py fuzz it",
    "wechat.wechat_receive": "WeChat's signed gateway: tests/wechat/test_gateway*.py and test_corpus.py fuzz it",
}
# (The demo-only WeChat emulator is mounted beside the app by DispatcherMiddleware, outside url_map; DEMO is off.)

CITIZEN, STRANGER, OFFICER = "o-sweep-citizen-0001", "o-sweep-stranger-001", "o-sweep-officer-0001"
ROLES = ("admin", "editor", "reviewer", "liaison", "officer")

HOSTILE = (
    "",
    " ",
    "²",
    "-1",
    "0",
    "9" * 30,
    "1e309",
    "'; drop table tip; --",
    "<script>alert(1)</script>",
    "2026-13-45",
    "1.5",
)
BAD_UTF8 = "%FF%FE%ED%A0%80"  # bytes no UTF-8 decoder accepts (the last a lone surrogate), percent-encoded
HUGE = "x" * 10000
ODD_IDS = ("0", "-1", str(2**31), str(2**63), "abc", "%00", "²")
ODD_STRINGS = ("", "..%2F..%2Fetc%2Fpasswd", "%00", "²", "x" * 300, "'; drop table tip; --")
GENERIC_NAMES = (
    "page", "q", "unit", "unit_id", "status", "since", "until", "year", "month", "sort", "id", "before", "after",
    "officer", "kind", "next", "category", "date", "start", "end", "limit", "name", "title",
)  # fmt: skip
JSON_BODIES = ("[]", '"x"', "1", "null", '{"a": [1]}', "{", '{"token": []}', "[" * 500)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "server" / "templates"


# ---------------------------------------------------------------------------------------------------------------
# Which fields a view reads: found cheaply in its module and templates


_READ = re.compile(
    r"""(?:\.get|\.getlist|\.pop|\bform|\bargs|\bvalues|\bfields|\bf)\s*[\[(]\s*["']([a-z_][a-z0-9_]{0,40})["']"""
)
_FILES = re.compile(r"""files\.get(?:list)?\(\s*["']([a-z_][a-z0-9_]*)["']""")
_TEMPLATE = re.compile(r"""["']((?:console|citizen)/[\w/.-]+\.html)["']""")
_INPUT_NAME = re.compile(r"""\bname="([A-Za-z_][\w.\-\[\]]{0,40})\"""")
_INCLUDE = re.compile(r"""{%-?\s*(?:include|import|from)\s+["']([\w/.-]+\.html)["']""")
_LITERAL = re.compile(r"""["']([a-z][a-z0-9_.-]{1,24})["']""")


def _template_names(name: str, seen: set[str]) -> set[str]:
    path = TEMPLATES / name
    if name in seen or not path.is_file():
        return set()
    seen.add(name)
    text = path.read_text(encoding="utf-8")
    names = set(_INPUT_NAME.findall(text))
    for included in _INCLUDE.findall(text):
        names |= _template_names(included, seen)
    return names


@cache
def module_fields(module_file: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(field names, file field names) a view module reads or renders as inputs."""
    source = Path(module_file).read_text(encoding="utf-8")
    names = set(_READ.findall(source))
    seen: set[str] = set()
    for template in _TEMPLATE.findall(source):
        names |= _template_names(template, seen)
    names.discard("csrf_token")
    files = set(_FILES.findall(source))
    return tuple(sorted(names | set(GENERIC_NAMES))), tuple(sorted(files))


def view_of(app: Flask, endpoint: str) -> Any:
    return inspect.unwrap(app.view_functions[endpoint])


# ---------------------------------------------------------------------------------------------------------------
# The data set and the identities


@dataclass
class World:
    ids: dict[str, int]
    strings: dict[str, str]
    staff: dict[str, models.Staff]
    cookies: dict[str, str]  # identity -> signed session cookie
    form_token: str
    api_key: str
    connection: Any = None  # PostgreSQL: the one whose outer transaction holds the data set


# <int:…> converter names and the table whose first row fills them
ID_TABLES = {
    "alert_id": models.Alert,
    "term_id": models.SensitiveTerm,
    "article_id": models.Article,
    "column_id": models.NewsColumn,
    "item_id": models.MaterialItem,
    "push_id": models.ArticlePush,
    "binding_id": models.BindingCode,
    "staff_id": models.Staff,
    "point_id": models.ContactPoint,
    "event_id": models.Event,
    "session_id": models.EventSession,
    "follower_id": models.Follower,
    "version_id": models.MenuVersion,
    "key_id": models.Open311Key,
    "rule_id": models.ReplyRule,
    "project_id": models.PlanProject,
    "record_id": models.PublicityRecord,
    "report_id": models.StatReport,
    "survey_id": models.Survey,
    "tip_id": models.Tip,
    "block_id": models.TipBlock,
    "category_id": models.TipCategory,
    "photo_id": models.TipPhoto,
    "unit_id": models.Unit,
    "campaign_id": models.VoteCampaign,
    "candidate_id": models.VoteCandidate,
    "registration_id": models.Registration,
}


def build_world(app: Flask) -> tuple[dict[str, int], dict[str, str], dict[str, models.Staff], str]:
    """A little of everything, owned by CITIZEN and the liaison's unit where ownership matters."""
    from server.services import reports, targets

    people = factories.newsroom()
    office = people["unit"]
    staff = {
        "admin": factories.staff("sweep-admin", "admin"),
        "editor": people["editor"],
        "reviewer": people["reviewer"],
        "liaison": people["liaison"],
        "officer": factories.staff("sweep-officer", "officer", unit=office),
    }
    staff["officer"].openid = OFFICER  # bound: the upload page is theirs
    db.session.commit()
    with app.test_request_context():  # services that build URLs or store media
        from server.services import columns

        columns.ensure_default_columns()
        tip = file_tip(CITIZEN)
        tip.unit_id = office.id
        db.session.commit()
        file_tip(STRANGER)
        event, sessions = make_event(fields=("name", "phone"))
        reg, _ = events.register(CITIZEN, event.id, sessions[0].id, events.Applicant(name="张三", phone="13800138000"))
        now = models.utcnow()
        campaign = make_campaign(candidates=2, starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=10))
        votes.cast_vote(campaign.id, campaign.candidates[0].id, CITIZEN, ip="10.0.0.1")
        article = approved(people, "清理占道")
        from server.services import articles

        articles.schedule_push(people["editor"], [article.id], models.utcnow() + timedelta(days=2), None)
        from server.services import materials

        materials.upload_photo(staff["officer"], jpeg(800, 600), client_id="sweep-photo-1", caption="占道")
        make_survey()
        from server.services import contacts

        contacts.save_point(
            name="人民广场联络点", address="人民大道 200 号", latitude=31.231, longitude=121.474,
            hours="工作日 9:00-17:00", phone="021-12345678",
        )  # fmt: skip
        factories.rule("开放日", "7·15 公众开放日欢迎报名")
        from server.services import menus

        menus.save_draft("default", [{"type": "click", "name": "随手拍", "key": "TIP_HOWTO"}])
        menus.publish_draft("default")
        db.session.add(
            models.Alert(source="message", ref="m-1", openid=CITIZEN, excerpt="暴力执法", terms=["暴力执法"], score=10)
        )
        # its own term: the migration's seeded ones are gone after any test that empties the tables
        db.session.add(models.SensitiveTerm(term="扫荡式执法", weight=3, enabled=True))
        db.session.add(models.Follower(openid=CITIZEN, subscribed=True, subscribed_at=models.utcnow()))
        db.session.commit()
        binding.issue(staff["officer"].id)
        key_row, api_key = open311.issue_key("sweep-partner", "区网格中心")
        [filed] = open311.submit_request(
            api_key,
            {
                "service_code": (filed_code := open311.services()[0]["service_code"]),
                "description": "人行道井盖缺失，夜间危险",
                "lat": "31.23",
                "long": "121.47",
            },
            client_token="sweep-token-1",
        )
        tips.block("o-blocked-0001", "恶意刷单")
        plan = targets.save_plan(models.utcnow().year, {"baseline_reads": "1000"})
        targets.save_project(plan, name="开放日", months=[7], unit_id=office.id)
        targets.add_record(
            kind="media_report",
            title="报道",
            outlet="新华网",
            happened_on=models.utcnow().date(),
            submit_key="sweep-1",
            unit_id=office.id,
        )
        reports.generate("monthly", models.utcnow().date().replace(day=1), by="测试")
        replies_service.set_text_setting(replies_service.DEFAULT_KEY, "已收到")
        from server.services import channels

        poster = channels.ReplyInput("text", text="开放日报名")
        channels.request_qr(channels.create_channel(name="开放日海报", scene="open_day", unit_id=None, reply=poster))

    ids = {}
    for name, model in ID_TABLES.items():
        ids[name] = db.session.scalar(sa.select(sa.func.min(model.id))) or 1
    for rule in app.url_map.iter_rules():  # a route added since: `<int:thing_id>` names the table `thing`
        for name in _converters(rule):
            if name not in ids and (table := db.metadata.tables.get(name.removesuffix("_id"))) is not None:
                ids[name] = db.session.scalar(sa.select(sa.func.min(table.c.id))) or 1
    ids["registration_id"], ids["tip_id"] = reg.id, tip.id
    photo = tip.photos[0] if tip.photos else None
    ids["photo_id"] = photo.id if photo else 1
    candidate = campaign.candidates[0]
    ids["campaign_id"], ids["candidate_id"] = campaign.id, candidate.id
    strings = {
        "tracking_no": tip.tracking_no,
        "request_id": filed["service_request_id"],  # a partner reads only what it filed
        "code": filed_code,
        "token": filed["token"],
        "name": (candidate.photo_path or "x.jpg").rsplit("/", 1)[-1],
        "relative": (article.cover_path or "articles/x.jpg").removeprefix("articles/"),
    }
    return ids, strings, staff, api_key


RAW_TOKEN = "sweep-csrf-raw-token"


def session_cookie(app: Flask, values: dict[str, Any]) -> str:
    return app.session_interface.get_signing_serializer(app).dumps(values)  # type: ignore[attr-defined]


def signed_in() -> dict[str, Any]:
    """What the login page puts in a staff session besides Flask-Login's own: when, and the session's id."""
    return {auth.SIGNED_IN_AT: int(time.time()), auth.SESSION_ID: secrets.token_urlsafe(12)}


def make_cookies(app: Flask, staff: dict[str, models.Staff]) -> dict[str, str]:
    """Each identity's signed session: the form token's secret, and the citizen's openid or the staff login."""
    cookies = {"anonymous": session_cookie(app, {"csrf_token": RAW_TOKEN})}
    for openid in (CITIZEN, STRANGER, OFFICER):
        cookies[openid] = session_cookie(app, {"csrf_token": RAW_TOKEN, "openid": openid, "snapshot": False})
    for role, person in staff.items():
        login = db.session.get(models.Staff, person.id).get_id()  # id:session_version, as now in the database
        cookies[role] = session_cookie(app, {"csrf_token": RAW_TOKEN, "_user_id": login, "_fresh": True, **signed_in()})
    return cookies


@pytest.fixture(scope="module")
def world(app) -> Iterator[World]:
    mp = pytest.MonkeyPatch()
    mp.setattr(votes, "USE_TRANSACTION_IDS", False)  # every "commit" is a savepoint of one transaction (see there)
    connection = outer = None
    try:
        with app.app_context():
            app.extensions["redis"].flushdb()
            if SQLITE:  # no savepoints to lean on: real commits, emptied afterwards
                _empty_tables()
            else:
                connection = db.engine.connect()
                outer = connection.begin()
                connection.begin_nested()
                mp.setitem(db.engines, None, connection)  # every request's session joins this transaction
                db.session.remove()
            ids, strings, staff, api_key = build_world(app)
            form_token = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token").dumps(RAW_TOKEN)
            cookies = make_cookies(app, staff)
            db.session.remove()
        yield World(ids, strings, staff, cookies, form_token, api_key, connection)
    finally:
        with app.app_context():
            db.session.remove()
            if connection is not None:
                outer.rollback()
                connection.close()
            mp.undo()
            if SQLITE:
                _empty_tables()
            app.extensions["redis"].flushdb()


@pytest.fixture
def sandbox(app, world) -> Iterator[World]:
    """Each rule's requests are rolled back afterwards, so that a delete or a logout-everywhere spoils no other."""
    with app.app_context():
        app.extensions["redis"].flushdb()
        point = world.connection.begin_nested() if world.connection is not None else None
        if point is None:  # SQLite keeps what earlier rules did: a logout-everywhere there ended these sessions
            world.cookies = make_cookies(app, world.staff)
            db.session.remove()
    yield world
    with app.app_context():
        db.session.remove()
        if point is not None and point.is_active:
            point.rollback()


class ErrorLog(logging.Handler):
    """Errors, and the DataError safety net's warning: a value that reached the database unchecked is a bug even
    where PostgreSQL's refusal is turned into a 400 (SQLite raises OverflowError instead, a 500)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or str(record.msg).startswith("input refused by the database"):
            self.records.append(record)


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


# ---------------------------------------------------------------------------------------------------------------
# The sweep


@dataclass
class Probe:
    """One rule's requests, as one identity; collects what went wrong instead of stopping at the first."""

    app: Flask
    world: World
    identity: str
    log: ErrorLog
    failures: list[str]
    sent: int = 0

    def send(self, method: str, url: str, what: str, **kwargs: Any) -> int:
        before = len(self.log.records)
        try:
            res = request_as(self.app, self.world, self.identity, method, url, **kwargs)
            status = res.status_code
            res.close()
        except Exception as exc:  # noqa: BLE001  (what escaped the app is what we report)
            status = 599
            self.log.records.append(logging.makeLogRecord({"msg": f"escaped: {exc!r}", "levelno": logging.ERROR}))
        self.sent += 1
        logged = [_describe(r) for r in self.log.records[before:]]
        if status >= 500 or logged:
            self.failures.append(f"{self.identity:>9} {method} {url[:160]} [{what}] -> {status} {logged[:2]}")
        return status


def request_as(app: Flask, world: World, identity: str, method: str, url: str, **kwargs: Any) -> Any:
    """One request from a fresh client carrying the identity's session (and form token), whatever the last one did."""
    client = app.test_client()
    cookie = {"citizen": CITIZEN, "stranger": STRANGER, "officer_wechat": OFFICER, "partner": "anonymous"}
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], world.cookies[cookie.get(identity, identity)])
    headers = {"X-CSRFToken": world.form_token, **kwargs.pop("headers", {})}
    if identity == "partner":  # the key in the query (reads) and in the form (filing)
        query = kwargs.get("query_string") or []
        key = ("api_key", world.api_key)
        kwargs["query_string"] = f"{query}&api_key={key[1]}" if isinstance(query, str) else [*query, key]
        if isinstance(kwargs.get("data"), dict):
            kwargs["data"] = _multi([*_multi(kwargs["data"]).items(multi=True), key])
    return client.open(url, method=method, headers=headers, **kwargs)


def _describe(record: logging.LogRecord) -> str:
    exc = record.exc_info[1] if record.exc_info else None
    where = ""
    if exc is not None and (tb := exc.__traceback__) is not None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
    return record.getMessage()[:120] + (f": {exc!r}"[:200] + where if exc is not None else "")


def _converters(rule: Rule) -> dict[str, Any]:
    return dict(rule._converters)  # type: ignore[attr-defined]


def _choices(converter: Any) -> list[str] | None:
    items = getattr(converter, "items", None)
    return sorted(items) if items else None


def fill(rule: Rule, world: World, view: Any) -> list[dict[str, str]]:
    """The rule's URL values that name real rows: every choice of an `any(…)` converter, real ids otherwise."""
    literals = _view_literals(view)
    combos: list[dict[str, str]] = [{}]
    for name, conv in _converters(rule).items():
        if (choices := _choices(conv)) is not None:
            options = choices
        elif name in world.ids or conv.__class__.__name__ == "IdConverter":
            options = [str(world.ids.get(name, 1))]
        elif name in world.strings:
            options = [world.strings[name]]
        else:
            options = literals[:4] or ["x"]
        combos = [{**c, name: o} for c in combos for o in options]
    return combos


def odd_fills(rule: Rule, base: dict[str, str], view: Any) -> list[tuple[dict[str, str], bool]]:
    """One URL value at a time made odd, the others real; with whether the value reaches the view at all."""
    out = []
    for name, conv in _converters(rule).items():
        routed = _choices(conv) is None and conv.__class__.__name__ != "IdConverter"
        if _choices(conv) is not None:
            values: tuple[str, ...] = ("x", "%00")
        elif not routed:
            values = ODD_IDS
        else:
            values = ODD_STRINGS + tuple(_view_literals(view)[4:10])
        out += [({**base, name: v}, routed) for v in values]
    return out


def _view_literals(view: Any) -> list[str]:
    try:
        source = inspect.getsource(view)
    except (OSError, TypeError):
        return []
    return list(dict.fromkeys(_LITERAL.findall(source)))


def build_url(rule: Rule, values: dict[str, str]) -> str:
    # Built by hand, not url_for: the odd values are meant to reach the router as they are.
    out = rule.rule
    for name in _converters(rule):
        out = re.sub(r"<(?:[^:<>]+:)?" + re.escape(name) + r">", values[name], out)
    return out


def routes(app: Flask) -> list[Rule]:
    return sorted(
        (r for r in app.url_map.iter_rules() if r.endpoint not in SKIPPED), key=lambda r: (r.rule, sorted(r.methods))
    )


FULL, LITE, REFUSED = "full", "lite", "refused"


def identities(rule: Rule, view: Any) -> list[tuple[str, str]]:
    """(identity, depth) for a rule. A role the view's decorator refuses gets one request per method (its input never
    reaches the view); a role whose path through the view mostly repeats another's gets a shorter list of values."""
    if rule.rule.startswith("/admin/"):
        allowed = getattr(view, "allowed_roles", None)
        out = [("anonymous", FULL if rule.endpoint == "console.login" else REFUSED)]  # the gate sends it to log in
        for role in ROLES:
            depth = FULL if role in ("admin", "liaison") else LITE  # liaisons: the unit-scoped paths
            out.append((role, depth if allowed is None or role in {str(r) for r in allowed} else REFUSED))
        return out
    if rule.rule.startswith("/m/"):
        officer = FULL if rule.rule.startswith("/m/upload") else LITE  # a bound officer's own page
        return [("anonymous", FULL), ("citizen", FULL), ("stranger", LITE), ("officer_wechat", officer)]
    if rule.rule.startswith("/open311/"):
        return [("anonymous", FULL), ("partner", FULL)]
    return [("anonymous", FULL)]


LITE_VALUES = ("", "²", "9" * 30, "2026-13-45")


def _query_sets(names: tuple[str, ...], depth: str) -> list[tuple[str, Any]]:
    values = (*HOSTILE, HUGE) if depth == FULL else LITE_VALUES
    sets: list[tuple[str, Any]] = [(f"query={v[:12]!r}", [(n, v) for n in names]) for v in values]
    if depth == FULL:
        sets.append(("repeated keys", [(n, v) for n in names for v in ("1", "²", "")]))
        sets.append(("bad UTF-8", _bad_utf8(names)))
        sets.append(("NUL", [(names[0], "a\x00b")]))
    return sets


def _bad_utf8(names: tuple[str, ...]) -> str:
    return "&".join(f"{n}={BAD_UTF8}" for n in names)


def sweep_get(probe: Probe, url: str, names: tuple[str, ...], depth: str) -> None:
    for what, query in _query_sets(names, depth):
        probe.send("GET", url, what, query_string=query)


def sweep_post(
    probe: Probe, url: str, names: tuple[str, ...], files: tuple[str, ...], reads_json: bool, depth: str
) -> None:
    token = [("csrf_token", probe.world.form_token)]
    probe.send("POST", url, "empty form", data=dict(token))
    for value in (*HOSTILE, HUGE) if depth == FULL else LITE_VALUES:
        probe.send("POST", url, f"form={value[:12]!r}", data=_multi(token + [(n, value) for n in names]))
    probe.send("POST", url, "json=[]", data="[]", content_type="application/json")
    if depth != FULL:
        return
    probe.send("POST", url, "no CSRF token", data={})
    probe.send("POST", url, "repeated keys", data=_multi(token + [(n, v) for n in names for v in ("1", "²")]))
    body = f"csrf_token={probe.world.form_token}&{_bad_utf8(names)}"
    probe.send("POST", url, "bad UTF-8", data=body, content_type="application/x-www-form-urlencoded")
    probe.send("POST", url, "one huge field", data=_multi(token + [(names[0], "x" * 200_000)]))
    for body in JSON_BODIES[1:] if reads_json else ():
        probe.send("POST", url, f"json={body[:12]}", data=body, content_type="application/json")
    for what, blob in (("empty file", b""), ("not an image", b"GIF89a\x00garbage"), ("cut JPEG", jpeg()[:600])):
        if files:
            data: Any = _multi(token + [(n, "1") for n in names])
            for f in files:
                data[f] = (io.BytesIO(blob), "photo.jpg", "image/jpeg")
            probe.send("POST", url, what, data=data, content_type="multipart/form-data")


def _multi(pairs: list[tuple[str, str]]) -> Any:
    from werkzeug.datastructures import MultiDict

    return MultiDict(pairs)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "route" in metafunc.fixturenames:
        from server import create_app

        # The rules only: an app of its own (no database touched), since fixtures cannot parametrize.
        probe_app = create_app(
            {"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://", "REDIS_URL": "", "DEMO": False}
        )
        rules = routes(probe_app)
        metafunc.parametrize("route", [(r.rule, r.endpoint) for r in rules], ids=[f"{r.endpoint}" for r in rules])


def test_the_sweep_reaches_the_views_as_each_identity(app, sandbox):
    """The sweep's own guard: were its cookies or form token refused, every request would stop before any view and
    the sweep would pass while testing nothing."""

    def get(identity: str, path: str, **kwargs: Any) -> tuple[int, str]:
        res = request_as(app, sandbox, identity, "GET", path, **kwargs)
        return res.status_code, res.get_data(as_text=True)

    tracking_no = sandbox.strings["tracking_no"]
    assert get("anonymous", "/admin/")[0] == 302
    for role in ("admin", "editor", "reviewer", "liaison"):
        assert get(role, "/admin/tips")[0] == 200, role
    status, page = get("citizen", "/m/tips")
    assert status == 200 and tracking_no in page
    status, page = get("stranger", "/m/tips")
    assert status == 200 and tracking_no not in page
    assert get("officer_wechat", "/m/upload")[0] == 200
    assert get("partner", f"/open311/v2/requests/{sandbox.strings['request_id']}.json")[0] == 200
    res = request_as(app, sandbox, "admin", "POST", "/admin/contacts/new", data={"csrf_token": sandbox.form_token})
    assert res.status_code == 400 and "页面已过期" not in res.get_data(as_text=True)  # refused by the view, not CSRF


def test_no_route_answers_hostile_input_with_a_server_error(app, sandbox, error_log, route):
    rule_text, endpoint = route
    rule = next(r for r in app.url_map.iter_rules() if r.rule == rule_text and r.endpoint == endpoint)
    view = view_of(app, endpoint)
    names, files = module_fields(inspect.getsourcefile(view) or "")
    reads_json = "get_json" in inspect.getsource(view) or "request.json" in inspect.getsource(view)
    methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
    failures: list[str] = []
    sent, odd_ids_sent = 0, False
    for identity, depth in identities(rule, view):
        probe = Probe(app, sandbox, identity, error_log, failures)
        for values in fill(rule, sandbox, view):
            url = build_url(rule, values)
            for method in methods:
                if depth == REFUSED:
                    probe.send(method, url, "refused role", data={"csrf_token": sandbox.form_token})
                elif method == "GET":
                    sweep_get(probe, url, names, depth)
                else:
                    sweep_post(probe, url, names, files, reads_json, depth)
        if depth == FULL:  # odd ids stop at the router whoever asks: once; odd strings reach the view: each time
            for values, routed in odd_fills(rule, fill(rule, sandbox, view)[0], view):
                if routed or not odd_ids_sent:
                    for method in methods:
                        probe.send(
                            method, build_url(rule, values), "odd URL value", data={"csrf_token": sandbox.form_token}
                        )
            odd_ids_sent = True
        sent += probe.sent
    assert not failures, f"{len(failures)} of {sent} requests failed:\n" + "\n".join(failures[:40])
