"""Open311 GeoReport v2 documents checked against the spec's response formats, as clients see them."""

from __future__ import annotations

from datetime import datetime, timedelta
from xml.etree import ElementTree as ET

import pytest
import sqlalchemy as sa

from models import Open311Key, Tip, TipSource, TipStatus, utcnow
from server.extensions import db
from server.services import open311, tips
from tests import factories
from tests.console.conftest import Console

BASE = "/open311/v2"

# -- the spec's response formats --------------------------------------------------------------------------------------
# Transcribed from wiki.open311.org/GeoReport_v2 (sections "Service Discovery", "GET Service List",
# "GET Service Definition", "POST Service Request", "GET service_request_id from a token", "GET Service Requests",
# "GET Service Request", "Errors"): the required elements of each document, in the order of the spec's XML examples,
# with the JSON types they take (None: the spec allows an empty value). No network here, so no live validator.
STR, OPT_STR, OPT_NUM = str, (str, type(None)), (float, int, type(None))

DISCOVERY = {
    "changeset": STR,
    "contact": STR,
    "key_service": STR,
    "endpoints": [{"specification": STR, "url": STR, "changeset": STR, "type": STR, "formats": [STR]}],
}
SERVICE = {
    "service_code": STR,
    "service_name": STR,
    "description": OPT_STR,
    "metadata": bool,
    "type": STR,  # realtime | batch | blackbox
    "keywords": OPT_STR,
    "group": OPT_STR,
}
SERVICE_DEFINITION = {"service_code": STR, "attributes": list}
SERVICE_REQUEST = {
    "service_request_id": STR,
    "status": STR,  # open | closed
    "status_notes": OPT_STR,
    "service_name": OPT_STR,
    "service_code": STR,
    "description": OPT_STR,
    "agency_responsible": OPT_STR,
    "service_notice": OPT_STR,
    "requested_datetime": STR,
    "updated_datetime": OPT_STR,
    "expected_datetime": OPT_STR,
    "address": OPT_STR,
    "address_id": OPT_STR,
    "zipcode": OPT_STR,
    "lat": OPT_NUM,
    "long": OPT_NUM,
    "media_url": OPT_STR,
}
POST_RESPONSE = {"service_request_id": STR, "service_notice": OPT_STR, "account_id": OPT_STR}
TOKEN_RESPONSE = {"service_request_id": STR, "token": STR}
ERROR = {"code": int, "description": STR}

# XML: the root element, the element of each item of the root list, and the item's required children in order.
XML_DOCS = {
    "services": ("services", "service", list(SERVICE)),
    "service_requests": ("service_requests", "request", list(SERVICE_REQUEST)),
    "post_response": ("service_requests", "request", list(POST_RESPONSE)),
    "token_response": ("service_requests", "request", list(TOKEN_RESPONSE)),
    "errors": ("errors", "error", list(ERROR)),
}
DATETIME_FIELDS = ("requested_datetime", "updated_datetime", "expected_datetime", "changeset")


def check_json(value, schema, path="$"):
    """Every required key present with its type, recursively; extra keys are allowed (the spec allows extensions)."""
    if isinstance(schema, dict):
        assert isinstance(value, dict), f"{path}: expected an object"
        for key, sub in schema.items():
            assert key in value, f"{path}: missing {key}"
            check_json(value[key], sub, f"{path}.{key}")
            if key in DATETIME_FIELDS and value[key] is not None:
                assert datetime.fromisoformat(value[key]).tzinfo is not None, f"{path}.{key}: not W3C with offset"
    elif isinstance(schema, list):
        assert isinstance(value, list), f"{path}: expected a list"
        for n, item in enumerate(value):
            check_json(item, schema[0], f"{path}[{n}]") if schema else None
    else:
        assert isinstance(value, schema) and not (schema is int and isinstance(value, bool)), (
            f"{path}: {value!r} is not {schema}"
        )


def check_xml(body: bytes, doc: str) -> ET.Element:
    root_tag, item_tag, children = XML_DOCS[doc]
    root = ET.fromstring(body)
    assert root.tag == root_tag
    for item in root:
        assert item.tag == item_tag
        names = [child.tag for child in item]
        assert [n for n in names if n in children] == children, f"{item_tag}: {names} (spec order {children})"
    return root


def check_discovery_xml(body: bytes) -> None:
    root = ET.fromstring(body)
    assert root.tag == "discovery"
    assert [c.tag for c in root] == ["changeset", "contact", "key_service", "endpoints"]
    endpoint = root.find("endpoints/endpoint")
    assert [c.tag for c in endpoint] == ["specification", "url", "changeset", "type", "formats"]
    assert [f.text for f in endpoint.findall("formats/format")] == ["text/xml", "application/json"]


# -- fixtures ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def api_key(db_session) -> str:
    _, plain = open311.issue_key("hotline12345", "市12345热线")
    return plain


@pytest.fixture
def console(client) -> Console:
    return Console(client)


@pytest.fixture
def as_admin(console) -> Console:
    factories.staff("admin1", "admin")
    assert console.login("admin1").status_code == 302
    return console


@pytest.fixture
def codes(db_session) -> dict[str, str]:
    return {c.name: str(c.id) for c in tips.categories()}


def post(client, api_key, fmt="json", **fields):
    data = {"api_key": api_key, "description": "人行道上有人占道经营卖水果", **fields}
    return client.post(f"{BASE}/requests.{fmt}", data={k: v for k, v in data.items() if v is not None})


def get(client, api_key: str, path: str, **query):
    return client.get(f"{BASE}/{path}", query_string={"api_key": api_key, **query})


def file_tip(category: str, *, days_ago: float = 0, n: int = 0) -> Tip:
    """A request filed by the `api_key` fixture's partner (hotline12345), which may read it back."""
    tip, _ = tips.submit_partner_tip(
        "open311:hotline12345",
        category=category,
        description="测试线索描述内容",
        address="测试路 1 号",
        submit_key=f"t-{n}",
    )
    if days_ago:
        tip.created_at = utcnow() - timedelta(days=days_ago)
        db.session.commit()
    return tip


# -- discovery, services ----------------------------------------------------------------------------------------------


def test_discovery_in_both_formats(client):
    res = client.get(f"{BASE}/discovery.json")
    assert res.status_code == 200 and res.mimetype == "application/json"
    doc = res.get_json()
    check_json(doc, DISCOVERY)
    endpoint = doc["endpoints"][0]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["formats"] == ["text/xml", "application/json"]
    assert endpoint["url"].endswith("/open311/v2/")
    res = client.get(f"{BASE}/discovery.xml")
    assert res.mimetype == "text/xml"
    check_discovery_xml(res.data)


def test_services_come_from_the_active_categories(client, codes):
    tips.save_category(name="其他", active=False, category=next(c for c in tips.categories() if c.name == "其他"))
    doc = client.get(f"{BASE}/services.json").get_json()
    check_json(doc, [SERVICE])
    names = [s["service_name"] for s in doc]
    assert "占道经营" in names and "其他" not in names
    dog = next(s for s in doc if s["service_name"] == "犬类管理")
    assert dog["metadata"] is False and dog["type"] == "realtime" and "狗" in dog["keywords"]
    root = check_xml(client.get(f"{BASE}/services.xml").data, "services")
    assert root.find("service/metadata").text == "false"
    assert len(root) == len(doc)


def test_service_definition_and_unknown_code(client, api_key, codes):
    doc = client.get(f"{BASE}/services/{codes['占道经营']}.json").get_json()
    check_json(doc, SERVICE_DEFINITION)
    assert doc == {"service_code": codes["占道经营"], "attributes": []}
    root = ET.fromstring(client.get(f"{BASE}/services/{codes['占道经营']}.xml").data)
    assert root.tag == "service_definition" and [c.tag for c in root] == ["service_code", "attributes"]
    res = client.get(f"{BASE}/services/999999.json")
    assert res.status_code == 404
    check_json(res.get_json(), [ERROR])
    res = client.get(f"{BASE}/services/999999.xml")
    assert res.status_code == 404
    assert check_xml(res.data, "errors").find("error/code").text == "404"
    for odd in ("²", "١٢", "99999999999999999999"):  # digits int() or the database would choke on: unknown codes
        assert client.get(f"{BASE}/services/{odd}.json").status_code == 404
        assert get(client, api_key, "requests.json", service_code=odd).get_json() == []


# -- the round trip of an external client -----------------------------------------------------------------------------


def test_round_trip_services_post_get(client, api_key, db_session):
    services = client.get(f"{BASE}/services.json").get_json()
    code = next(s["service_code"] for s in services if s["service_name"] == "占道经营")
    res = post(
        client,
        api_key,
        service_code=code,
        lat="31.2304",
        long="121.4737",
        address_string="人民路 100 号",
        phone="13800138000",
        email="someone@example.com",
        first_name="三",
        last_name="张",
        device_id="dev-1",
        account_id="acct-9",
        media_url="http://example.com/x.jpg",
    )
    assert res.status_code == 201, res.get_data(as_text=True)
    created = res.get_json()
    check_json(created, [POST_RESPONSE])
    assert created[0]["account_id"] == "acct-9"
    request_id = created[0]["service_request_id"]

    tip = db_session.scalar(sa.select(Tip).filter_by(tracking_no=tips.normalise_no(request_id)))
    assert tip.source is TipSource.OPEN311 and tip.openid == "open311:hotline12345"
    assert tip.category == "占道经营" and tip.phone_enc and "13800138000" not in tip.phone_enc

    res = get(client, api_key, f"requests/{request_id}.json")
    doc = res.get_json()
    check_json(doc, [SERVICE_REQUEST])
    got = doc[0]
    assert got["service_request_id"] == request_id and got["status"] == "open"
    assert got["service_code"] == code and got["service_name"] == "占道经营"
    assert got["description"] == "人行道上有人占道经营卖水果"
    assert (got["lat"], got["long"], got["address"]) == (31.2304, 121.4737, "人民路 100 号")
    assert got["expected_datetime"] is not None and got["media_url"] is None
    body = res.get_data(as_text=True)
    assert "13800138000" not in body and "open311:" not in body and "someone@example.com" not in body
    check_xml(get(client, api_key, f"requests/{request_id}.xml").data, "service_requests")

    token = created[0]["token"]
    doc = get(client, api_key, f"tokens/{token}.json").get_json()
    check_json(doc, [TOKEN_RESPONSE])
    assert doc[0]["service_request_id"] == request_id
    check_xml(get(client, api_key, f"tokens/{token}.xml").data, "token_response")
    assert get(client, api_key, f"tokens/{'0' * 48}.json").status_code == 404


def test_post_in_xml(client, api_key, codes):
    res = post(client, api_key, "xml", service_code=codes["乱设摊"], address_string="解放路口")
    assert res.status_code == 201
    root = check_xml(res.data, "post_response")
    assert root.find("request/account_id").text is None  # not given: an empty element


def test_a_partner_reads_only_what_it_filed_and_never_a_phone(client, api_key, db_session, codes):
    mine, _ = tips.submit_partner_tip(
        "open311:hotline12345", category="市容环境", description="小区门口垃圾堆放", address="幸福路",
        phone="13900139000", submit_key="k" * 20,
    )  # fmt: skip
    citizens, _ = tips.submit_partner_tip(  # as a citizen's tip: photos, the place they stood
        "oCitizenOpenid0001", category="市容环境", description="楼下有人乱倒垃圾", address="和平路",
        submit_key="c" * 20,
    )  # fmt: skip
    _, other = open311.issue_key("civicapp", "某市民应用")
    body = get(client, api_key, "requests.json").get_data(as_text=True)
    body += get(client, api_key, "requests.xml").get_data(as_text=True)
    assert mine.display_no in body and citizens.display_no not in body
    assert "oCitizenOpenid0001" not in body and "13900139000" not in body
    for key, no in ((api_key, citizens.display_no), (other, mine.display_no)):  # even by its number
        assert get(client, key, f"requests/{no}.json").status_code == 404
        assert get(client, key, "requests.json", service_request_id=no).get_json() == []
    assert get(client, other, "requests.json").get_json() == []


@pytest.mark.parametrize(
    "path", ["requests.json", "requests.xml", "requests/ABCD-EFGH.json", f"tokens/{'0' * 48}.json"]
)
def test_reading_requests_needs_a_key(client, api_key, db_session, path):
    for key in (None, "o311_wrong"):
        res = client.get(f"{BASE}/{path}", query_string={"api_key": key} if key else {})
        assert res.status_code == 403
    assert client.get(f"{BASE}/services.json").status_code == 200  # what can be reported stays public


def test_there_is_no_public_photo_route(client, db_session):
    assert client.get(f"{BASE}/media/{'a' * 32}.jpg").status_code == 404


# -- filing errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_bad_or_revoked_api_key_is_403(client, api_key, codes, fmt):
    for key in (None, "o311_wrong", api_key + "x"):
        res = post(client, key, fmt, service_code=codes["占道经营"], address_string="人民路")
        assert res.status_code == 403
    key = db.session.scalar(sa.select(Open311Key))
    open311.revoke_key(key.id)
    res = post(client, api_key, fmt, service_code=codes["占道经营"], address_string="人民路")
    assert res.status_code == 403
    if fmt == "json":
        check_json(res.get_json(), [ERROR])
        assert res.get_json()[0]["code"] == 403
    else:
        check_xml(res.data, "errors")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 0


def test_missing_or_invalid_fields_are_400(client, api_key, codes):
    cases = [
        {"service_code": codes["占道经营"]},  # no location at all
        {"service_code": codes["占道经营"], "lat": "31.2"},  # half a point, no address
        {"address_string": "人民路"},  # no service_code
        {"service_code": "999999", "address_string": "人民路"},
        {"service_code": codes["占道经营"], "lat": "north", "long": "east"},
        {"service_code": codes["占道经营"], "address_string": "人民路", "description": ""},
        {"service_code": codes["占道经营"], "address_string": "人民路", "phone": "12"},
    ]
    for fields in cases:
        res = post(client, api_key, **fields)
        assert res.status_code == 400, fields
        check_json(res.get_json(), [ERROR])
    res = post(client, api_key, "xml", service_code=codes["占道经营"])
    assert res.status_code == 400
    assert "location" in check_xml(res.data, "errors").find("error/description").text


def test_post_is_idempotent_per_client_token(client, api_key, codes, db_session):
    fields = {"service_code": codes["占道经营"], "address_string": "人民路", "client_token": "retry-123"}
    first = post(client, api_key, **fields).get_json()[0]
    again = post(client, api_key, **fields).get_json()[0]
    assert again["service_request_id"] == first["service_request_id"] and again["token"] == first["token"]
    header = client.post(
        f"{BASE}/requests.json",
        data={
            "api_key": api_key,
            "service_code": codes["占道经营"],
            "address_string": "人民路",
            "description": "占道经营水果摊",
        },
        headers={"Idempotency-Key": "retry-123"},
    ).get_json()[0]
    assert header["service_request_id"] == first["service_request_id"]
    other = post(client, api_key, **{**fields, "client_token": "retry-456"}).get_json()[0]
    assert other["service_request_id"] != first["service_request_id"]
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 2


def test_posts_are_rate_limited_per_key(app, client, api_key, codes, monkeypatch):
    monkeypatch.setitem(app.config, "OPEN311_POSTS_PER_MINUTE", 2)
    for n in range(2):
        assert post(client, api_key, service_code=codes["占道经营"], address_string=f"人民路 {n} 号").status_code == 201
    res = post(client, api_key, service_code=codes["占道经营"], address_string="人民路 9 号")
    assert res.status_code == 429
    check_json(res.get_json(), [ERROR])
    _, other = open311.issue_key("civicapp", "某市民应用")
    assert post(client, other, service_code=codes["占道经营"], address_string="人民路").status_code == 201


def test_reads_are_rate_limited_per_key_apart_from_posts(app, client, api_key, codes, monkeypatch):
    monkeypatch.setitem(app.config, "OPEN311_READS_PER_MINUTE", 3)
    for _ in range(3):
        assert client.get("/open311/v2/requests.json", query_string={"api_key": api_key}).status_code == 200
    res = client.get("/open311/v2/requests.json", query_string={"api_key": api_key})
    assert res.status_code == 429 and "per minute" in res.get_json()[0]["description"]
    assert client.get("/open311/v2/requests/XXXX-XXXX.json", query_string={"api_key": api_key}).status_code == 429
    # Filing has its own count: a partner polling at its limit can still file a citizen's report.
    assert post(client, api_key, service_code=codes["占道经营"], address_string="人民路 1 号").status_code == 201


def test_filing_goes_on_while_redis_is_down(client, api_key, codes, redis_down, db_session):
    """The per-key limit is a throttle kept in Redis; the tip is a PostgreSQL row. Redis restarting was a 500 (and
    not even an Open311 <errors> document) for a partner filing a citizen's report."""
    res = post(client, api_key, service_code=codes["占道经营"], address_string="人民路 1 号")
    assert res.status_code == 201, res.get_data(as_text=True)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Tip)) == 1


def test_partner_tips_skip_the_citizen_quota(app, client, api_key, codes, monkeypatch):
    monkeypatch.setitem(app.config, "TIP_DAILY_LIMIT", 1)
    for n in range(3):
        assert post(client, api_key, service_code=codes["占道经营"], address_string=f"路 {n} 号").status_code == 201


# -- reading: status mapping, filters, caps ---------------------------------------------------------------------------


def test_closed_mapping_and_public_notes(client, api_key, db_session, codes):
    editor = factories.staff("editor1", "editor")
    unit = factories.unit("城东中队", "squad")
    open_tip, resolved, rejected, duplicate, dispatched = (file_tip("占道经营", n=n) for n in range(5))
    tips.transition(resolved.id, "dispatch", editor, unit_id=unit.id)
    tips.transition(resolved.id, "resolve", editor, note="已现场劝离")
    tips.transition(rejected.id, "reject", editor, note="不属于城管职责")
    tips.transition(duplicate.id, "duplicate", editor, duplicate_of=open_tip.tracking_no)
    tips.transition(dispatched.id, "dispatch", editor, unit_id=unit.id, note="请城东中队处理")
    doc = {d["service_request_id"]: d for d in get(client, api_key, "requests.json").get_json()}
    assert doc[open_tip.display_no]["status"] == "open"
    assert doc[dispatched.display_no]["status"] == "open"
    assert doc[dispatched.display_no]["agency_responsible"] == "城东中队"
    assert doc[dispatched.display_no]["status_notes"] == "请城东中队处理"
    for t in (resolved, rejected, duplicate):
        assert doc[t.display_no]["status"] == "closed" and doc[t.display_no]["expected_datetime"] is None
    assert doc[resolved.display_no]["status_notes"] == "已现场劝离"
    assert doc[rejected.display_no]["status_notes"] == "不属于城管职责"
    assert db_session.get(Tip, rejected.id).status is TipStatus.REJECTED
    closed = get(client, api_key, "requests.json", status="closed").get_json()
    assert {d["service_request_id"] for d in closed} == {resolved.display_no, rejected.display_no, duplicate.display_no}
    opened = get(client, api_key, "requests.json", status="open").get_json()
    assert {d["service_request_id"] for d in opened} == {open_tip.display_no, dispatched.display_no}
    assert len(get(client, api_key, "requests.json", status="open,closed").get_json()) == 5
    assert get(client, api_key, "requests.json", status="pending").status_code == 400


def test_filters_window_and_order(client, api_key, db_session, codes):
    recent = file_tip("占道经营", days_ago=1, n=1)
    older = file_tip("乱设摊", days_ago=10, n=2)
    old = file_tip("占道经营", days_ago=120, n=3)
    doc = get(client, api_key, "requests.json").get_json()
    check_json(doc, [SERVICE_REQUEST])
    assert [d["service_request_id"] for d in doc] == [recent.display_no, older.display_no]  # newest first, 90 days
    by_code = get(client, api_key, "requests.json", service_code=codes["乱设摊"]).get_json()
    assert [d["service_request_id"] for d in by_code] == [older.display_no]
    both = get(client, api_key, "requests.json", service_code=f"{codes['乱设摊']},{codes['占道经营']}").get_json()
    assert len(both) == 2
    start = (utcnow() - timedelta(days=130)).isoformat()
    end = (utcnow() - timedelta(days=100)).isoformat()
    window = get(client, api_key, "requests.json", start_date=start, end_date=end).get_json()
    assert [d["service_request_id"] for d in window] == [old.display_no]
    since = get(client, api_key, "requests.json", start_date=(utcnow() - timedelta(days=5)).isoformat())
    assert [d["service_request_id"] for d in since.get_json()] == [recent.display_no]
    # ids override every other filter, the 90-day window too; the dash is optional
    ids = f"{old.display_no},{recent.tracking_no}"
    got = get(client, api_key, "requests.json", service_request_id=ids, status="closed").get_json()
    assert {d["service_request_id"] for d in got} == {old.display_no, recent.display_no}
    root = check_xml(get(client, api_key, "requests.xml").data, "service_requests")
    assert [r.find("service_request_id").text for r in root] == [recent.display_no, older.display_no]


@pytest.mark.parametrize(
    "query",
    [
        {"start_date": "yesterday"},
        {"start_date": "2026-01-01T00:00:00+08:00", "end_date": "2025-12-01T00:00:00+08:00"},
        {"start_date": "2025-01-01T00:00:00Z", "end_date": "2025-12-01T00:00:00Z"},  # more than 90 days
        {"end_date": "0001-01-01"},  # the default window would start before datetime's first day
        {"end_date": "0001-01-01T00:00:00+14:00"},
        {"start_date": "9999-12-31T23:59:59-12:00"},
    ],
)
def test_bad_date_filters_are_400(client, api_key, db_session, query):
    res = get(client, api_key, "requests.xml", **query)
    assert res.status_code == 400
    check_xml(res.data, "errors")


def test_at_most_1000_results(client, api_key, db_session, codes):
    now = utcnow()
    db_session.execute(
        sa.insert(Tip),
        [
            {
                "tracking_no": f"B{n:07d}",
                "submit_key": f"bulk-{n}",
                "openid": "open311:hotline12345",
                "source": TipSource.OPEN311,
                "category": "占道经营",
                "description": "批量测试线索",
                "created_at": now - timedelta(seconds=n),
            }
            for n in range(1005)
        ],
    )
    doc = get(client, api_key, "requests.json").get_json()
    assert len(doc) == 1000
    assert doc[0]["service_request_id"] == "B000-0000" and doc[-1]["service_request_id"] == "B000-0999"


def test_unknown_request_is_404(client, api_key, db_session):
    for path in ("requests/ABCD-EFGH.json", "requests/x.json"):
        res = get(client, api_key, path)
        assert res.status_code == 404
        check_json(res.get_json(), [ERROR])
    assert check_xml(get(client, api_key, "requests/ABCD-EFGH.xml").data, "errors") is not None


# -- console: issue and revoke ----------------------------------------------------------------------------------------


def test_console_issues_a_key_once_and_revokes_it(as_admin, db_session, codes):
    res = as_admin.get("/admin/open311/keys")
    assert res.status_code == 200 and "签发新密钥" in res.get_data(as_text=True)
    res = as_admin.post("/admin/open311/keys", {"name": "hotline", "organisation": "市12345热线"})
    html = res.get_data(as_text=True)
    assert res.status_code == 200 and res.headers["Cache-Control"] == "no-store"
    plain = html.split('id="issued-key"', 1)[1].split("<code", 1)[1].split(">", 1)[1].split("</code>", 1)[0]
    assert plain.startswith("o311_")
    row = db_session.scalar(sa.select(Open311Key).filter_by(name="hotline"))
    assert row.key_hash != plain and len(row.key_hash) == 64 and row.organisation == "市12345热线"
    assert plain not in as_admin.get("/admin/open311/keys").get_data(as_text=True)  # shown once
    assert post(as_admin.client, plain, service_code=codes["占道经营"], address_string="人民路").status_code == 201
    dup = as_admin.post("/admin/open311/keys", {"name": "hotline", "organisation": "另一个单位"})
    assert dup.status_code == 400 and "已被使用" in dup.get_data(as_text=True)
    assert as_admin.post(f"/admin/open311/keys/{row.id}/revoke").status_code == 302
    assert db_session.get(Open311Key, row.id).revoked_at is not None
    assert post(as_admin.client, plain, service_code=codes["占道经营"], address_string="人民路").status_code == 403


def test_console_keys_are_for_admins_only(console, db_session):
    factories.staff("editor1", "editor")
    console.login("editor1")
    assert console.get("/admin/open311/keys").status_code == 403
    assert console.post("/admin/open311/keys", {"name": "x1", "organisation": "某单位"}).status_code == 403
