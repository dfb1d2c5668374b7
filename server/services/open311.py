"""Open311 GeoReport v2 (wiki.open311.org/GeoReport_v2): partner systems read and file tips.

Only a mapping: categories are services, tips are service requests, filing goes through `tips.submit_partner_tip`.
Documents are plain dicts and lists in the spec's element order; the view renders them as JSON or XML.
Nothing here exposes a citizen's openid or phone.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError

from models import Open311Key, Staff, Tip, TipStatus, utcnow
from server.extensions import db, get_redis
from server.filters import LOCAL_TZ
from server.inputs import to_int
from server.services import ServiceError, audit, tips

log = logging.getLogger(__name__)

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
FORMATS = ["text/xml", "application/json"]
CHANGESET = "2026-12-04T00:00:00+08:00"  # bump when the endpoints or their behaviour change
MAX_RESULTS = 1000
DEFAULT_WINDOW = timedelta(days=90)
CLOSED_STATUSES = frozenset({TipStatus.RESOLVED, TipStatus.REJECTED, TipStatus.DUPLICATE})
KEY_PREFIX = "o311_"
SUBMIT_PREFIX = "open311:"
RATE_KEY = "open311:rate:{}:{}:{}"  # kind, key id, minute
DEFAULT_POSTS_PER_MINUTE = 30
DEFAULT_READS_PER_MINUTE = 120  # a search may load 1,000 tips: a partner's poll loop is not to take the database
CLIENT_TOKEN_MAX = 64

audit.ACTION_LABELS.update(
    {"open311.key_issue": "签发 Open311 接口密钥", "open311.key_revoke": "吊销 Open311 接口密钥"}
)


class Open311Error(Exception):
    """One entry of the spec's <errors> document; `code` is also the HTTP status."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code, self.description = code, description


# -- keys ------------------------------------------------------------------------------------------------------------


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key(name: str, organisation: str, *, by: Staff | None = None) -> tuple[Open311Key, str]:
    """A new key; (row, the key itself). The key is returned this once and never stored."""
    name, organisation = (name or "").strip(), (organisation or "").strip()
    if not 2 <= len(name) <= 40 or not all(c.isalnum() or c in "-_." for c in name):
        raise ServiceError("名称须为 2 到 40 个字符（字母、数字、- _ .）")
    if not 2 <= len(organisation) <= 100:
        raise ServiceError("请填写使用单位（2 到 100 个字）")
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    row = Open311Key(name=name, organisation=organisation, key_hash=_hash(plain), created_by_id=by.id if by else None)
    db.session.add(row)
    audit.record("open311.key_issue", target_type="open311_key", target_id=name, after={"organisation": organisation})
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError(f"名称「{name}」已被使用（含已吊销的密钥）") from None
    return row, plain


def revoke_key(key_id: int) -> Open311Key:
    row = db.session.get(Open311Key, key_id)
    if row is None:
        raise ServiceError("密钥不存在")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record("open311.key_revoke", target_type="open311_key", target_id=row.name)
        db.session.commit()
    return row


def keys() -> list[Open311Key]:
    return list(db.session.scalars(sa.select(Open311Key).order_by(Open311Key.revoked_at.is_not(None), Open311Key.id)))


def authenticate(api_key: str | None) -> Open311Key:
    row = db.session.scalar(sa.select(Open311Key).filter_by(key_hash=_hash(api_key))) if api_key else None
    if row is None or not row.active:
        raise Open311Error(403, "api_key is missing, invalid or revoked")
    return row


def reader(api_key: str | None) -> Open311Key:
    """The key of a GET (search, one request, a token), counted against its own per-minute limit."""
    key = authenticate(api_key)
    _take_rate(key, "read")
    return key


def _take_rate(key: Open311Key, kind: str = "post") -> None:
    """A fixed one-minute window per key and kind, counted in Redis (shared by every web process)."""
    if kind == "read":
        limit = int(current_app.config.get("OPEN311_READS_PER_MINUTE", DEFAULT_READS_PER_MINUTE))
    else:
        limit = int(current_app.config.get("OPEN311_POSTS_PER_MINUTE", DEFAULT_POSTS_PER_MINUTE))
    name = RATE_KEY.format(kind, key.id, int(utcnow().timestamp()) // 60)
    pipe = get_redis().pipeline()
    pipe.incr(name)
    pipe.expire(name, 120)
    try:
        count, _ = pipe.execute()
    except RedisError:  # Redis down: the partner's tip is still filed (PostgreSQL); only the throttle pauses
        log.warning("open311 rate limit skipped: Redis unavailable")
        return
    if int(count) > limit:
        raise Open311Error(429, f"rate limit exceeded: at most {limit} requests per minute per api_key")


# -- documents -------------------------------------------------------------------------------------------------------


def w3c(value: datetime | None) -> str | None:
    """ISO 8601 in the W3C profile, Beijing time with its offset."""
    return value.astimezone(LOCAL_TZ).isoformat(timespec="seconds") if value else None


def discovery(base_url: str) -> dict[str, Any]:
    return {
        "changeset": CHANGESET,
        "contact": current_app.config.get("OPEN311_CONTACT") or "城市管理行政执法局 12345 热线对接联系人",
        "key_service": current_app.config.get("OPEN311_KEY_SERVICE") or "请联系本局宣传科在管理后台申请接口密钥",
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": base_url,
                "changeset": CHANGESET,
                "type": "production",
                "formats": list(FORMATS),
            }
        ],
    }


def _codes() -> dict[str, str]:
    """Category name → service_code (its id: stable when editors rename, and safe in a URL unlike 渣土/扬尘)."""
    return {c.name: str(c.id) for c in tips.categories(active_only=False)}


def services() -> list[dict[str, Any]]:
    return [
        {
            "service_code": str(c.id),
            "service_name": c.name,
            "description": f"{c.name}类违法线索",
            "metadata": False,
            "type": "realtime",
            "keywords": ",".join(tips.CATEGORY_HINTS.get(c.name, ())),
            "group": "城市管理",
        }
        for c in tips.categories()
    ]


def _category(code: str) -> str | None:
    category_id = to_int(code, lo=1)
    return next((c.name for c in tips.categories() if c.id == category_id), None) if category_id else None


def service_definition(code: str) -> dict[str, Any]:
    if _category(code) is None:
        raise Open311Error(404, f"service_code {code} not found")
    return {"service_code": code, "attributes": []}


def _latest_note(tip: Tip) -> str | None:
    return next((h.note for h in reversed(tip.history) if h.note), None)


def _request_doc(tip: Tip, codes: Mapping[str, str], hours: Mapping[str, int]) -> dict[str, Any]:
    closed = tip.status in CLOSED_STATUSES
    return {
        "service_request_id": tip.display_no,
        "status": "closed" if closed else "open",
        "status_notes": _latest_note(tip) or tip.status.label,
        "service_name": tip.category,
        "service_code": codes.get(tip.category, ""),
        "description": tip.description,
        "agency_responsible": tip.unit.name if tip.unit else None,
        "service_notice": None,
        "requested_datetime": w3c(tip.created_at),
        "updated_datetime": w3c(tip.status_changed_at),
        "expected_datetime": None if closed else w3c(tips.due_at(tip, hours)),
        "address": tip.address,
        "address_id": None,
        "zipcode": None,
        "lat": tip.latitude,
        "long": tip.longitude,
        "media_url": None,  # partners file without photos and see only what they filed
    }


def _docs(rows: list[Tip]) -> list[dict[str, Any]]:
    codes, hours = _codes(), tips.sla_hours()
    return [_request_doc(t, codes, hours) for t in rows]


def _load(stmt: sa.Select[tuple[Tip]]) -> list[Tip]:
    opts = (sa.orm.selectinload(Tip.history), sa.orm.selectinload(Tip.photos), sa.orm.joinedload(Tip.unit))
    return list(db.session.scalars(stmt.options(*opts)).unique())


def get_request(key: Open311Key, request_id: str) -> list[dict[str, Any]]:
    no = tips.normalise_no(request_id)
    rows = _load(_filed_by(key).where(Tip.tracking_no == no)) if len(no) == tips.TRACKING_LENGTH else []
    if not rows:
        raise Open311Error(404, f"service_request_id {request_id} not found")
    return _docs(rows)


def _date(args: Mapping[str, str], name: str) -> datetime | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name} must be an ISO 8601 (W3C) date, e.g. 2026-11-01T00:00:00+08:00") from None
    if not 2000 <= value.year <= 2100:  # also keeps the window arithmetic inside datetime's range
        raise Open311Error(400, f"{name} must lie between the years 2000 and 2100")
    return value if value.tzinfo else value.replace(tzinfo=LOCAL_TZ)


def _list(args: Mapping[str, str], name: str) -> list[str]:
    return [v.strip() for v in (args.get(name) or "").split(",") if v.strip()]


def _filed_by(key: Open311Key) -> sa.Select[tuple[Tip]]:
    """The requests a key may read: those it filed. Citizens' tips (their photos, the place they stood, what they
    saw) are not public data: a citizen follows theirs on /m, editors in the console."""
    return sa.select(Tip).where(Tip.openid == key.openid)


def search_requests(key: Open311Key, args: Mapping[str, str]) -> list[dict[str, Any]]:
    """GET requests: by ids (which override every other filter), else service_code/status within a date window."""
    if ids := _list(args, "service_request_id"):
        nos = {tips.normalise_no(i) for i in ids[:MAX_RESULTS]}
        return _docs(_load(_filed_by(key).where(Tip.tracking_no.in_(nos)).order_by(Tip.created_at.desc())))
    end = _date(args, "end_date") or utcnow()
    start = _date(args, "start_date") or end - DEFAULT_WINDOW
    if start > end:
        raise Open311Error(400, "start_date must not be after end_date")
    if end - start > DEFAULT_WINDOW:
        raise Open311Error(400, "the date range may not exceed 90 days")
    where: list[Any] = [Tip.created_at >= start, Tip.created_at <= end]
    if codes := _list(args, "service_code"):
        names = [n for n in (_category(c) for c in codes) if n is not None]
        where.append(Tip.category.in_(names or [""]))  # only unknown codes: nothing matches
    if statuses := _list(args, "status"):
        if not set(statuses) <= {"open", "closed"}:
            raise Open311Error(400, "status must be open or closed")
        if set(statuses) == {"open"}:
            where.append(Tip.status.not_in(CLOSED_STATUSES))
        elif set(statuses) == {"closed"}:
            where.append(Tip.status.in_(CLOSED_STATUSES))
    stmt = _filed_by(key).where(*where).order_by(Tip.created_at.desc(), Tip.id.desc()).limit(MAX_RESULTS)
    return _docs(_load(stmt))


# -- filing ----------------------------------------------------------------------------------------------------------


def _submit_key(key: Open311Key, client_token: str | None) -> str:
    """Derived from the key and the client's token: a retried POST files nothing twice; other keys cannot collide."""
    seed = f"{key.id}:{client_token}" if client_token else secrets.token_hex(16)
    return SUBMIT_PREFIX + hashlib.sha256(seed.encode()).hexdigest()[:48]


def submit_request(api_key: str | None, form: Mapping[str, str], *, client_token: str | None) -> list[dict[str, Any]]:
    """POST requests: check the key and the fields, file through the tips service; [{service_request_id, …}]."""
    key = authenticate(api_key)
    _take_rate(key)
    if client_token is not None and not 1 <= len(client_token) <= CLIENT_TOKEN_MAX:
        raise Open311Error(400, f"client_token must be 1 to {CLIENT_TOKEN_MAX} characters")
    code = (form.get("service_code") or "").strip()
    if not code:
        raise Open311Error(400, "service_code is required")
    category = _category(code)
    if category is None:
        raise Open311Error(400, f"service_code {code} not found")
    lat, lng, address = form.get("lat"), form.get("long"), form.get("address_string")
    if not (str(lat or "").strip() and str(lng or "").strip()) and not str(address or "").strip():
        raise Open311Error(400, "a location is required: lat and long, or address_string")
    if not (form.get("description") or "").strip():
        raise Open311Error(400, "description is required")
    submit_key = _submit_key(key, client_token)
    try:
        tip, _ = tips.submit_partner_tip(
            key.openid,
            category=category,
            description=form.get("description") or "",
            latitude=lat,
            longitude=lng,
            address=address,
            phone=form.get("phone"),
            submit_key=submit_key,
        )
    except ServiceError as exc:  # the tips service's message, in Chinese, for the partner's operators
        raise Open311Error(400, str(exc)) from None
    return [
        {
            "service_request_id": tip.display_no,
            "service_notice": f"线索已登记，编号 {tip.display_no}，处理进展可按编号查询",
            "account_id": (form.get("account_id") or "")[:64] or None,
            "token": submit_key.removeprefix(SUBMIT_PREFIX),  # for tokens/{token}; the id is already known
        }
    ]


def token_request(key: Open311Key, token: str) -> list[dict[str, Any]]:
    """tokens/{token}: filing is synchronous, so a known token always has its service_request_id."""
    tip = None
    if len(token) == 48 and all(c in "0123456789abcdef" for c in token):
        tip = db.session.scalar(_filed_by(key).filter_by(submit_key=SUBMIT_PREFIX + token))
    if tip is None:
        raise Open311Error(404, f"token {token} not found")
    return [{"service_request_id": tip.display_no, "token": token}]
