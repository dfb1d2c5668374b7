"""Staff binding: a one-time QR scene (bind_<token>) or code that ties a staff member's WeChat openid to their account.

Officers bind for the officers' menu (photo uploads); editors, reviewers, admins and liaisons bind to receive duty
notices (alerts, publishing failures, tip dispatches), which go to a bound openid or nowhere.

Only bound, active officers carry the WeChat user tag 一线队员 (the personalised menu targets it). Binding commits
first and the tag follows in a task, so a failing tag call never loses a binding; a role change moves the tag the
same way (`role_changed`). The console reads the tag's real members from WeChat to show what is unsynced.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from wechatpy.exceptions import WeChatClientException

from models import BindingCode, Role, Staff, utcnow
from server.extensions import db, get_redis
from server.services import ServiceError, audit
from server.wechat.client import get_client

log = logging.getLogger(__name__)

SCENE_PREFIX = "bind_"
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud and typed without mix-ups
CODE_LENGTH = 8  # 31^8 ≈ 8.5e11: guessing stays hopeless even across many WeChat accounts
DEFAULT_HOURS, MIN_HOURS, MAX_HOURS = 24, 1, 168
OFFICER_TAG = "一线队员"
TAG_CACHE_KEY = "wechat:tag-id:officer"
ATTEMPT_LIMIT, ATTEMPT_WINDOW = 10, 3600  # wrong codes per openid per hour
WECHAT_ERRORS = (WeChatClientException, requests.RequestException)

# Every role that uses a bound WeChat: officers for their menu, the others for notices.
BINDABLE_ROLES = frozenset({Role.ADMIN, Role.EDITOR, Role.REVIEWER, Role.LIAISON, Role.OFFICER})
# What a bound WeChat gets, by role: the reply after binding and the console's list say it.
RECEIVES = {
    Role.OFFICER: "队员菜单「现场上传」（上传现场图片，也可直接在对话框发送照片）",
    Role.ADMIN: "舆情值班提醒和超时升级提醒、推文发布失败通知",
    Role.EDITOR: "舆情值班提醒（值班期间）、推文发布失败通知",
    Role.REVIEWER: "舆情值班提醒（值班期间）",
    Role.LIAISON: "本单位的线索派发通知（设为 A/B 岗时）、舆情超时升级提醒（B 岗）",
}
MENU_DELAY = "队员菜单稍后生效；如未出现，请退出公众号后重新进入。"
STATUS_LABELS = {"outstanding": "待使用", "used": "已使用", "expired": "已失效"}
HOWTO = "绑定码为 8 位字母和数字，请发送「绑定 绑定码」，例如：绑定 ABCD2345；也可以扫描管理员提供的绑定二维码。"
TOO_MANY = "绑定尝试次数过多，请 1 小时后再试，或请管理员提供绑定二维码扫码绑定。"
WRONG_CODE = "绑定码不正确，请核对后重新发送（如：绑定 ABCD2345）。"
USED = "该绑定码已被使用，每个绑定码只能使用一次。如需重新绑定，请联系管理员重新生成。"
EXPIRED = "该绑定码已过期或已被撤销，请联系管理员重新生成。"
NOT_BINDABLE = "该绑定码对应的账号已停用，无法绑定，请联系管理员。"
TAKEN = "您的微信已绑定其他人员账号，不能重复绑定；如需更换，请联系管理员先解绑。"

_EXPLICIT = re.compile(r"^\s*绑定\s*[:：]?\s*([A-Za-z0-9][A-Za-z0-9 \-]*)\s*$")
_SEPARATORS = re.compile(r"[\s\-]+")


@dataclass(frozen=True)
class BindResult:
    staff: Staff
    already: bool  # this WeChat was bound to this account before (a rescan): nothing changed


# -- codes -------------------------------------------------------------------------------------------------------


def _new_code() -> str:
    while True:  # a letter and a digit in each: plain words and numbers sent by citizens never look like a code
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if re.search(r"[A-Z]", code) and re.search(r"\d", code):
            return code


def _looks_like_code(value: str) -> bool:
    return (
        len(value) == CODE_LENGTH
        and all(c in CODE_ALPHABET for c in value)
        and re.search(r"[A-Z]", value) is not None
        and re.search(r"\d", value) is not None
    )


def scene_of(row: BindingCode) -> str:
    return SCENE_PREFIX + row.token


def is_bind_scene(scene: str | None) -> bool:
    return bool(scene) and scene.startswith(SCENE_PREFIX)  # type: ignore[union-attr]


def status_of(row: BindingCode, now: datetime | None = None) -> str:
    if row.used_at is not None:
        return "used"
    return "outstanding" if row.expires_at > (now or utcnow()) else "expired"


def issue(staff_id: int, *, hours: int = DEFAULT_HOURS, created_by_id: int | None = None) -> BindingCode:
    """A new code and QR for a staff member; their older outstanding codes stop working (one live code each)."""
    staff = db.session.get(Staff, staff_id)
    if staff is None:
        raise ServiceError("人员不存在")
    if staff.role not in BINDABLE_ROLES:
        raise ServiceError("该角色不能绑定微信")
    if not staff.active:
        raise ServiceError("该账号已停用，不能生成绑定码")
    if not MIN_HOURS <= hours <= MAX_HOURS:
        raise ServiceError(f"有效期须在 {MIN_HOURS} 到 {MAX_HOURS} 小时之间")
    now = utcnow()
    revoked = db.session.scalars(
        sa.update(BindingCode)
        .where(BindingCode.staff_id == staff.id, BindingCode.used_at.is_(None), BindingCode.expires_at > now)
        .values(expires_at=now)
        .returning(BindingCode.id)
    ).all()
    for _ in range(5):
        row = BindingCode(
            token=secrets.token_urlsafe(18),  # 144 bits; scene "bind_" + 24 chars, within WeChat's 64
            code=_new_code(),
            staff_id=staff.id,
            created_by_id=created_by_id,
            expires_at=now + timedelta(hours=hours),
        )
        try:
            with db.session.begin_nested():  # the unique code decides; a collision just draws again
                db.session.add(row)
            break
        except IntegrityError:
            continue
    else:
        raise ServiceError("生成绑定码失败，请重试")
    audit.record(
        "binding.issue",
        target=row,
        after={"staff_id": staff.id, "expires_at": row.expires_at.isoformat(), "revoked_ids": list(revoked)},
    )
    db.session.commit()
    request_qr(row)  # after the commit: if WeChat is down the code still works by text, and the QR can be retried
    return row


def request_qr(row: BindingCode) -> bool:
    """Ask WeChat for a temporary QR code expiring with the binding; False (logged) when WeChat refuses."""
    seconds = math.ceil((row.expires_at - utcnow()).total_seconds())
    if row.used_at is not None or seconds <= 0:
        raise ServiceError("该绑定码已使用或已失效")
    try:
        result = get_client().qrcode.create(
            {
                "expire_seconds": seconds,
                "action_name": "QR_STR_SCENE",
                "action_info": {"scene": {"scene_str": scene_of(row)}},
            }
        )
    except WECHAT_ERRORS as exc:
        log.warning("qrcode/create failed for binding %s: %s", row.id, exc)
        return False
    row.qr_ticket = result["ticket"]
    db.session.commit()
    return True


def qr_image(row: BindingCode) -> tuple[bytes, str] | None:
    """The QR image of an outstanding code, fetched through our client; None when there is none to show."""
    if row.qr_ticket is None or status_of(row) != "outstanding":
        return None
    try:
        res = get_client().show_qrcode(row.qr_ticket)
    except requests.RequestException as exc:
        log.warning("showqrcode failed for binding %s: %s", row.id, exc)
        return None
    if not res.ok or not res.headers.get("Content-Type", "").startswith("image/"):
        log.warning("showqrcode answered %s for binding %s", res.status_code, row.id)
        return None
    return res.content, res.headers["Content-Type"]


def revoke(binding_id: int) -> BindingCode:
    row = db.session.get(BindingCode, binding_id)
    if row is None:
        raise ServiceError("绑定码不存在")
    now = utcnow()
    done = db.session.execute(
        sa.update(BindingCode)
        .where(BindingCode.id == row.id, BindingCode.used_at.is_(None), BindingCode.expires_at > now)
        .values(expires_at=now)
    ).rowcount
    if not done:  # used or expired meanwhile: the conditional UPDATE decides, not what the page showed
        db.session.rollback()
        raise ServiceError("该绑定码已使用或已失效，无需撤销")
    audit.record("binding.revoke", target=row, after={"staff_id": row.staff_id, "expires_at": now.isoformat()})
    db.session.commit()
    return row


def list_codes(status: str | None = None, limit: int = 100) -> list[BindingCode]:
    now = utcnow()
    query = (
        sa.select(BindingCode)
        .options(selectinload(BindingCode.staff).selectinload(Staff.unit))
        .order_by(BindingCode.id.desc())
        .limit(limit)
    )
    if status == "outstanding":
        query = query.where(BindingCode.used_at.is_(None), BindingCode.expires_at > now)
    elif status == "used":
        query = query.where(BindingCode.used_at.is_not(None))
    elif status == "expired":
        query = query.where(BindingCode.used_at.is_(None), BindingCode.expires_at <= now)
    return list(db.session.scalars(query))


def bindable_staff() -> list[tuple[Role, list[Staff]]]:
    """Active staff who may bind, grouped by role (officers first, the most numerous), for the issue form."""
    query = (
        sa.select(Staff)
        .options(selectinload(Staff.unit))
        .where(Staff.role.in_(BINDABLE_ROLES), Staff.active)
        .order_by(Staff.unit_id, Staff.name)
    )
    people = list(db.session.scalars(query))
    order = [Role.OFFICER, Role.EDITOR, Role.ADMIN, Role.REVIEWER, Role.LIAISON]
    return [(role, group) for role in order if (group := [p for p in people if p.role is role])]


def receives(staff: Staff) -> str:
    return RECEIVES.get(staff.role, "")


def bound_staff() -> list[Staff]:
    query = sa.select(Staff).options(selectinload(Staff.unit)).where(Staff.openid.is_not(None)).order_by(Staff.name)
    return list(db.session.scalars(query))


# -- binding from chat -------------------------------------------------------------------------------------------


def bind_by_scene(openid: str, scene: str) -> BindResult:
    """A SCAN (or scan-to-subscribe) of a bind_<token> QR code."""
    token = scene.removeprefix(SCENE_PREFIX)
    row = db.session.scalar(sa.select(BindingCode).filter_by(token=token)) if token else None
    if row is None:
        raise ServiceError("二维码无效，请联系管理员重新生成绑定二维码。")
    return _bind(openid, row, via="qrcode")


def bind_by_text(openid: str, text: str) -> BindResult | None:
    """A binding code typed in chat: "绑定 ABCD2345" or the bare code. None: not a binding message at all."""
    if (text or "").strip() in ("绑定", "绑定微信"):
        raise ServiceError(HOWTO)  # asked how: no code, nothing looked up, no attempt spent
    explicit = _EXPLICIT.match(text or "")
    candidate = _SEPARATORS.sub("", explicit.group(1) if explicit else (text or "")).upper()
    if not explicit and not _looks_like_code(candidate):
        return None
    if explicit and not _looks_like_code(candidate):
        raise ServiceError(HOWTO)  # wrong shape: nothing is looked up, so it costs no attempt
    if _attempts(openid) >= ATTEMPT_LIMIT:
        raise ServiceError(TOO_MANY)
    row = db.session.scalar(sa.select(BindingCode).filter_by(code=candidate))
    if row is None:
        _count_attempt(openid)
        if not explicit:
            return None  # a bare string that is no code: other handlers (keywords) answer it
        raise ServiceError(WRONG_CODE)
    try:
        return _bind(openid, row, via="code")
    except ServiceError:
        _count_attempt(openid)  # used/expired answers reveal a code exists: they count as guesses too
        raise


def describe(result: BindResult) -> str:
    """The chat answer to a successful (or repeated) binding: who, and what this WeChat will now receive."""
    staff = result.staff
    who = f"{staff.name}（{staff.unit.name if staff.unit else '未分配单位'}）"
    if result.already:
        return f"您已绑定：{who}，无需重复绑定。"
    if staff.role is Role.OFFICER:
        return f"绑定成功：{who}，一线队员。可通过{receives(staff)}。{MENU_DELAY}"
    return f"绑定成功：{who}，{staff.role.label}。本微信将收到：{receives(staff)}。"


def reply_to_text(openid: str, text: str) -> str | None:
    """The chat answer to a binding code; None when the text is not one (keyword replies answer it)."""
    try:
        result = bind_by_text(openid, text)
    except ServiceError as exc:
        return str(exc)
    return describe(result) if result else None


def _attempts(openid: str) -> int:
    try:
        return int(get_redis().get(f"bind:attempts:{openid}") or 0)
    except Exception:
        log.warning("redis unavailable; binding attempts are not limited")
        return 0  # the code space, not the counter, is the main defence


def _count_attempt(openid: str) -> None:
    key = f"bind:attempts:{openid}"
    try:
        pipe = get_redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, ATTEMPT_WINDOW, nx=True)
        pipe.execute()
    except Exception:
        log.warning("redis unavailable; binding attempt not counted")


def _bind(openid: str, row: BindingCode, *, via: str) -> BindResult:
    staff = row.staff
    if staff.role not in BINDABLE_ROLES or not staff.active:
        raise ServiceError(NOT_BINDABLE)
    now = utcnow()
    if row.used_at is not None or row.expires_at <= now:
        return _spent(openid, row.id)
    other = db.session.scalar(sa.select(Staff.id).where(Staff.openid == openid, Staff.id != staff.id))
    if other is not None:
        raise ServiceError(TAKEN)
    # Claim the code: a concurrent scan waits on this row's lock, then finds used_at set and matches nothing.
    claimed = db.session.execute(
        sa.update(BindingCode)
        .where(BindingCode.id == row.id, BindingCode.used_at.is_(None), BindingCode.expires_at > now)
        .values(used_at=now)
    ).rowcount
    if not claimed:
        db.session.rollback()
        return _spent(openid, row.id)
    before = staff.openid
    staff.openid = openid
    try:
        db.session.flush()
    except IntegrityError:  # the openid was bound to someone else meanwhile; the unique key decides
        db.session.rollback()  # the claim goes with it: the code stays usable
        raise ServiceError(TAKEN) from None
    audit.record(
        "staff.bind",
        target=staff,
        before={"openid": before},
        after={"openid": openid},
        note=f"binding_code {row.id} via {via}",
        actor=audit.Actor(staff.id, staff.name, None),
    )
    db.session.commit()
    log.info("staff %s bound to WeChat via %s (binding %s)", staff.id, via, row.id)
    if staff.role is Role.OFFICER:  # others never carry the tag: no tag calls for them
        if before and before != openid:
            _enqueue("untag_openid", before)
        _enqueue("tag_officer", staff.id)
    return BindResult(staff, already=False)


def _spent(openid: str, binding_id: int) -> BindResult:
    """Why a code no longer binds; a rescan by the WeChat it bound is answered as done, not as an error."""
    row = db.session.get(BindingCode, binding_id, populate_existing=True)
    assert row is not None
    staff = db.session.get(Staff, row.staff_id, populate_existing=True)
    if row.used_at is not None and staff is not None and staff.openid == openid:
        return BindResult(staff, already=True)
    raise ServiceError(USED if row.used_at is not None else EXPIRED)


# -- console actions on bindings ---------------------------------------------------------------------------------


def unbind(staff_id: int) -> Staff:
    staff = db.session.get(Staff, staff_id)
    if staff is None:
        raise ServiceError("人员不存在")
    if staff.openid is None:
        raise ServiceError("该人员尚未绑定微信")
    before = staff.openid
    staff.openid = None
    audit.record("staff.unbind", target=staff, before={"openid": before}, after={"openid": None})
    db.session.commit()
    if staff.role is Role.OFFICER:
        _enqueue("untag_openid", before)
    return staff


def wants_tag(staff: Staff) -> bool:
    """Whether this account's WeChat should carry 一线队员: bound, active, officer."""
    return staff.openid is not None and staff.role is Role.OFFICER and staff.active


def role_changed(staff: Staff, *, had_tag: bool) -> None:
    """After a committed edit of role or active state: the tag follows, by the same tasks as binding."""
    wanted = wants_tag(staff)
    if wanted and not had_tag:
        _enqueue("tag_officer", staff.id)
    elif had_tag and not wanted and staff.openid:
        _enqueue("untag_openid", staff.openid)


def retry_tag(staff_id: int) -> bool:
    """Sync the tag again (the console's button): on for a bound officer; off for anyone else the console saw still
    carrying it (a failed untag after a role change). True when it was queued (or, eagerly, done)."""
    staff = db.session.get(Staff, staff_id)
    if staff is None or staff.openid is None:
        raise ServiceError("该人员尚未绑定微信")
    if wants_tag(staff):
        return _enqueue("tag_officer", staff.id)
    return _enqueue("untag_openid", staff.openid)


def _enqueue(name: str, *args: Any) -> bool:
    # Imported here: tasks import services, and a module-level import closed a cycle (columns → staff → binding →
    # tasks → publishing → columns) for whoever imported columns first.
    from server.tasks import binding as binding_tasks

    try:
        getattr(binding_tasks, name).delay(*args)
    except Exception:  # broker down, or (eager) the API still failing after retries: the binding stands
        log.exception("officer tag sync %s failed; the console shows it as unsynced", name)
        return False
    return True


# -- the WeChat tag ----------------------------------------------------------------------------------------------


def _cached_tag_id() -> int | None:
    try:
        value = get_redis().get(TAG_CACHE_KEY)
    except Exception:
        return None
    return int(value) if value else None


def _officer_tag_id(*, create: bool) -> int | None:
    if (tag_id := _cached_tag_id()) is not None:
        return tag_id
    client = get_client()
    found = next((t["id"] for t in client.tag.get() if t["name"] == OFFICER_TAG), None)
    if found is None and create:
        try:
            found = client.tag.create(OFFICER_TAG)["id"]  # wechatpy unwraps {"tag": {...}}
        except WeChatClientException as exc:
            if exc.errcode != 45157:  # 45157: the name exists, another process created it just now
                raise
            found = next((t["id"] for t in client.tag.get() if t["name"] == OFFICER_TAG), None)
    if found is not None:
        try:
            get_redis().set(TAG_CACHE_KEY, found, ex=86400)
        except Exception:
            pass
    return found


def _with_tag(call: Any, *, create: bool = True) -> Any:
    """call(tag_id); a tag deleted in WeChat's own admin (45159) drops the cached id and is looked up once more.
    Without `create`, a missing tag means nobody carries it: the call is skipped and None returned."""
    for last in (False, True):
        tag_id = _officer_tag_id(create=create)
        if tag_id is None:
            return None
        try:
            return call(tag_id)
        except WeChatClientException as exc:
            if exc.errcode != 45159 or last:
                raise
            try:
                get_redis().delete(TAG_CACHE_KEY)
            except Exception:
                pass
    return None


def tag_officer(staff_id: int) -> None:
    """Give a bound officer's openid the 一线队员 tag; idempotent (a task may run twice or late)."""
    staff = db.session.get(Staff, staff_id)
    if staff is None or staff.openid is None or staff.role is not Role.OFFICER or not staff.active:
        return  # unbound or changed meanwhile: nothing to tag
    _with_tag(lambda tag_id: get_client().tag.tag_user(tag_id, staff.openid))
    log.info("officer tag set for staff %s", staff.id)


def untag_openid(openid: str) -> None:
    """Take the tag off an openid that no longer belongs to an officer; skipped if it was bound again meanwhile."""
    still = db.session.scalar(
        sa.select(Staff.id).where(Staff.openid == openid, Staff.role == Role.OFFICER, Staff.active)
    )
    if still is not None:
        return

    def untag(tag_id: int) -> None:
        try:
            get_client().tag.untag_user(tag_id, openid)
        except WeChatClientException as exc:
            if exc.errcode != 40003:  # 40003: not a follower any more, so no tag either
                raise

    _with_tag(untag, create=False)
    log.info("officer tag removed from a former officer's openid")


def tagged_openids() -> set[str] | None:
    """Who carries the officer tag in WeChat right now; None when WeChat cannot be asked."""
    try:
        return _with_tag(lambda tag_id: set(get_client().tag.iter_tag_users(tag_id)), create=False) or set()
    except WECHAT_ERRORS as exc:
        log.warning("could not read the officer tag's members: %s", exc)
        return None
