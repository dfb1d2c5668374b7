"""Staff accounts, units and the login rules (KDF hashing, lock-out, forced change, log out everywhere)."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from werkzeug.security import check_password_hash, generate_password_hash

from models import AuditKind, Role, Staff, Unit, UnitKind, utcnow
from server.extensions import db, get_redis
from server.services import ServiceError, audit, binding, pii

LOCK_WINDOW = 15 * 60
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_IP = 20
# A hash to compare against when the user does not exist, so both paths cost one KDF run (no user enumeration).
_DUMMY_HASH = generate_password_hash("not-a-real-password")
STAFF_FIELDS = ("username", "name", "unit_id", "role", "openid", "active", "away")


# A try is counted before the password is checked, in one step with the check that the account and the address are
# under their limits: guesses sent together cannot all pass a count that none of them has added to yet.
_TAKE_TRY = """
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i]) then return 0 end
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[#ARGV]) end
end
return 1
"""
# The right password: the account's failures are forgotten, and the address gets its try back.
_GIVE_BACK = """
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
"""


def _try_keys(username: str, ip: str | None) -> list[str]:
    return [f"login:fail:user:{username}", f"login:fail:ip:{ip or '-'}"]


def _take_try(keys: list[str]) -> bool:
    """False when the account or the address is locked; otherwise this try counts as a failure until given back."""
    try:
        return bool(get_redis().eval(_TAKE_TRY, 2, *keys, MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_IP, LOCK_WINDOW))
    except Exception:
        return True  # Redis down: lock-out pauses, logging in still works


def _give_back(keys: list[str]) -> None:
    try:
        get_redis().eval(_GIVE_BACK, 2, *keys)
    except Exception:
        pass


def authenticate(username: str, password: str, ip: str | None) -> Staff:
    """The active staff member with these credentials, or ServiceError; repeated failures lock account and IP."""
    username = (username or "").strip().lower()
    keys = _try_keys(username, ip)
    if not _take_try(keys):
        raise ServiceError("登录失败次数过多，账号已临时锁定，请 15 分钟后再试")
    staff = db.session.scalar(sa.select(Staff).filter_by(username=username))
    ok = check_password_hash(staff.password_hash if staff and staff.password_hash else _DUMMY_HASH, password or "")
    if not (ok and staff and staff.password_hash and staff.active):
        raise ServiceError("用户名或密码错误")  # the try taken above stays counted
    _give_back(keys)
    staff.last_login_at = utcnow()
    audit.record("staff.login", kind=AuditKind.LOGIN, target=staff, actor=audit.Actor(staff.id, staff.name, ip))
    db.session.commit()
    return staff


def locked(usernames: list[str]) -> set[str]:
    """The accounts a run of failed logins has locked for now (the list shows them; an admin can unlock)."""
    if not usernames:
        return set()
    try:
        counts = get_redis().mget([f"login:fail:user:{u}" for u in usernames])
    except Exception:
        return set()  # Redis down: nobody is locked either
    return {u for u, n in zip(usernames, counts, strict=True) if int(n or 0) >= MAX_FAILURES_PER_ACCOUNT}


def unlock(staff: Staff) -> None:
    """An admin lifts the lock-out of an account (its owner called: they have remembered the password)."""
    try:
        get_redis().delete(f"login:fail:user:{staff.username}")
    except Exception:
        raise ServiceError("暂时无法解锁（缓存服务不可用），请稍后再试") from None
    audit.record("staff.unlock", target=staff)
    db.session.commit()


def check_password_policy(password: str) -> None:
    if len(password) < 10 or not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        raise ServiceError("密码至少 10 位，且须同时包含字母和数字")


def change_password(staff: Staff, old: str, new: str, ip: str | None = None) -> None:
    # Wrong old passwords count as failed logins: a signed-in screen left alone is no way to find the password.
    keys = _try_keys(staff.username, ip)
    if not _take_try(keys):
        raise ServiceError("密码错误次数过多，账号已临时锁定，请 15 分钟后再试")
    if not staff.password_hash or not check_password_hash(staff.password_hash, old or ""):
        raise ServiceError("原密码不正确")
    _give_back(keys)
    if old == new:
        raise ServiceError("新密码不能与原密码相同")
    check_password_policy(new)
    staff.password_hash = generate_password_hash(new)
    staff.must_change_password = False
    staff.session_version += 1  # other sessions end; the caller logs this one in again
    audit.record("staff.password_change", target=staff)
    db.session.commit()


def logout_everywhere(staff: Staff) -> None:
    staff.session_version += 1
    audit.record("staff.logout_everywhere", target=staff)
    db.session.commit()


def load_session_user(user_id: str) -> Staff | None:
    """Flask-Login's loader: the cookie carries id:version, so bumping the version ends old sessions."""
    try:
        staff_id, version = (int(part) for part in user_id.split(":"))
    except ValueError:
        return None
    staff = db.session.get(Staff, staff_id)
    if staff is None or staff.session_version != version or not staff.active:
        return None
    return staff


def save_staff(
    *,
    username: str,
    name: str,
    role: str,
    unit_id: int | None,
    phone: str | None = None,
    password: str | None = None,
    active: bool = True,
    away: bool = False,
    staff: Staff | None = None,
    by: Staff | None = None,
) -> Staff:
    """Create or update an account; a new password given by an admin must be changed at first login. `by`: who
    saves, who may not lock themselves out; nobody may leave the console without an active admin."""
    username = (username or "").strip().lower()
    if not re.fullmatch(r"[a-z0-9_.-]{3,32}", username):
        raise ServiceError("用户名须为 3–32 位小写字母、数字、下划线、点或连字符")
    name = (name or "").strip()
    if not 1 <= len(name) <= 32:
        raise ServiceError("请填写姓名（不超过 32 字）")
    try:
        role_enum = Role(role)
    except ValueError:
        raise ServiceError("请选择角色") from None
    if unit_id is not None and db.session.get(Unit, unit_id) is None:
        raise ServiceError("所选单位不存在")
    if role_enum in (Role.LIAISON, Role.OFFICER) and unit_id is None:
        raise ServiceError("宣传联络员和一线队员必须属于一个单位")
    phone = (phone or "").strip()
    if phone and not pii.valid_phone(phone):
        raise ServiceError("手机号应为 11 位数字")
    if staff is not None and staff.role is Role.ADMIN and staff.active and (not active or role_enum is not Role.ADMIN):
        if by is not None and by.id == staff.id:
            raise ServiceError("不能停用自己的账号或取消自己的管理员角色，请由另一位管理员操作")
        others = sa.select(sa.func.count()).where(Staff.role == Role.ADMIN, Staff.active, Staff.id != staff.id)
        if not db.session.scalar(others):
            raise ServiceError("这是唯一启用的管理员账号，不能停用或改为其他角色")
    creating = staff is None
    staff = staff or Staff(must_change_password=True)
    before = None if creating else audit.snapshot(staff, STAFF_FIELDS)
    had_tag = not creating and binding.wants_tag(staff)
    staff.username, staff.name, staff.role, staff.unit_id = username, name, role_enum, unit_id
    staff.active, staff.away = active, away
    if phone:
        staff.phone_enc = pii.encrypt(phone)
    if password:
        check_password_policy(password)
        staff.password_hash = generate_password_hash(password)
        staff.must_change_password = True
        # In SQL: two admins resetting at once must both end the old sessions' validity, not one increment.
        staff.session_version = 1 if creating else Staff.session_version + 1
    elif creating and role_enum is not Role.OFFICER:
        raise ServiceError("请为新账号设置初始密码")
    db.session.add(staff)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError("用户名已被使用") from None
    audit.record(
        "staff.create" if creating else "staff.update",
        target=staff,
        before=before,
        after=audit.snapshot(staff, STAFF_FIELDS),
    )
    db.session.commit()
    binding.role_changed(staff, had_tag=had_tag)  # officer ⇄ other role, or (de)activated: the menu tag follows
    return staff


def staff_phone(staff: Staff, *, reveal: bool = False) -> str:
    """Masked by default; revealing it is a personal-data view and is audited."""
    phone = pii.decrypt(staff.phone_enc)
    if not reveal:
        return pii.mask_phone(phone)
    audit.record("staff.phone_view", kind=AuditKind.PII_VIEW, target=staff)
    db.session.commit()
    return phone or ""


def save_unit(
    *,
    name: str,
    kind: str,
    parent_id: int | None,
    sort: int = 0,
    post_a_id: int | None = None,
    post_b_id: int | None = None,
    unit: Unit | None = None,
) -> Unit:
    name = (name or "").strip()
    if not 1 <= len(name) <= 64:
        raise ServiceError("请填写单位名称（不超过 64 字）")
    try:
        kind_enum = UnitKind(kind)
    except ValueError:
        raise ServiceError("请选择单位类型") from None
    creating = unit is None
    unit = unit or Unit()
    if parent_id is not None:
        if db.session.get_bind().dialect.name == "postgresql":
            # Tree edits one at a time: two moves checked side by side (X under Y, Y under X) would make a loop.
            db.session.execute(sa.text("LOCK TABLE unit IN SHARE ROW EXCLUSIVE MODE"))
        if db.session.get(Unit, parent_id) is None:
            raise ServiceError("上级单位不存在")
        if not creating and unit.id in _unit_and_ancestors(parent_id):  # read after the lock, from the database
            raise ServiceError("不能把单位放到它自己的下级单位之下")
    for post in (post_a_id, post_b_id):
        if post is not None and db.session.get(Staff, post) is None:
            raise ServiceError("AB岗人员不存在")
    if post_a_id is not None and post_a_id == post_b_id:
        raise ServiceError("A 岗和 B 岗不能是同一人")
    fields = ("name", "kind", "parent_id", "sort", "post_a_id", "post_b_id")
    before = None if creating else audit.snapshot(unit, fields)
    unit.name, unit.kind, unit.parent_id, unit.sort = name, kind_enum, parent_id, sort
    unit.post_a_id, unit.post_b_id = post_a_id, post_b_id
    db.session.add(unit)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ServiceError("单位名称已存在") from None
    audit.record(
        "unit.create" if creating else "unit.update", target=unit, before=before, after=audit.snapshot(unit, fields)
    )
    db.session.commit()
    return unit


def unit_and_descendants(unit_id: int) -> list[int]:
    """Ids of a unit and everything below it (a liaison's reach)."""
    tree = sa.select(Unit.id).where(Unit.id == unit_id).cte(recursive=True)
    tree = tree.union(sa.select(Unit.id).join(tree, Unit.parent_id == tree.c.id))  # UNION: ends even on a loop
    return list(db.session.scalars(sa.select(tree.c.id)))


def visible_units(staff: Staff) -> list[int] | None:
    """The units whose records `staff` may see: None is every unit; a liaison, their unit and those below it."""
    if staff.role is Role.LIAISON:
        return unit_and_descendants(staff.unit_id) if staff.unit_id else []
    return None


def _unit_and_ancestors(unit_id: int) -> set[int]:
    chain = sa.select(Unit.id, Unit.parent_id).where(Unit.id == unit_id).cte(recursive=True)
    chain = chain.union(sa.select(Unit.id, Unit.parent_id).join(chain, Unit.id == chain.c.parent_id))
    return set(db.session.scalars(sa.select(chain.c.id)))


def publicity_contact(unit: Unit, *, bound: bool = False) -> Staff | None:
    """Whom a request for this unit goes to: the A post, or B when A is away, inactive or unset (AB岗); A away with
    no B still gets it. `bound`: only posts bound to WeChat count (for a WeChat notice)."""
    a, b = (p if p is not None and p.active and (p.openid or not bound) else None for p in (unit.post_a, unit.post_b))
    if a is not None and not a.away:
        return a
    return b or a


def units_tree(*, with_posts: bool = False) -> list[tuple[Unit, int]]:
    """Every unit with its depth, parents before children, for indented lists and selects."""
    query = sa.select(Unit).order_by(Unit.sort, Unit.id)
    if with_posts:  # the units page names each unit's A and B posts
        query = query.options(selectinload(Unit.post_a), selectinload(Unit.post_b))
    units = db.session.scalars(query).all()
    by_parent: dict[int | None, list[Unit]] = {}
    for unit in units:
        by_parent.setdefault(unit.parent_id, []).append(unit)
    out: list[tuple[Unit, int]] = []

    def walk(parent: int | None, depth: int) -> None:
        for unit in by_parent.get(parent, []):
            out.append((unit, depth))
            walk(unit.id, depth + 1)

    walk(None, 0)
    return out
