"""Command-line tools: demo data and the WeChat message simulator."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import click
import requests
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from models import Follower, ReplyRule
from server.extensions import db
from server.services import menus, replies
from server.wechat import simulator
from server.wechat.emulator import SIMULATOR_OPENID, opens_window

DEMO_RULES = [
    (
        "问候",
        "contains",
        "你好",
        "您好！这里是城管执法局官方公众号。发送「随手拍」了解如何举报违法线索，发送「开放日」了解 7·15 公众开放日。",
        10,
    ),
    (
        "随手拍",
        "exact",
        "随手拍",
        "直接发送现场照片，再发送位置和文字说明，即可举报违法线索；也可点菜单「随手拍」→「拍照举报」填写。",
        20,
    ),
    ("开放日", "contains", "开放日", "7·15 公众开放日正在报名：点菜单「活动报名」查看场次和剩余名额。", 20),
    (
        "线索编号",
        "regex",
        r"^[A-Za-z0-9]{4}[- ]?[A-Za-z0-9]{4}$",
        "请发送您本人提交的线索编号查询进度，或点菜单「随手拍」→「我的线索」查看。",
        5,
    ),
]
DEMO_CLICKS = [
    ("联系我们", "CONTACT", "城管服务热线：12345（24 小时）。工作时间：周一至周五 9:00–17:30。"),
    ("随手拍说明", "TIP_HOWTO", "直接发送现场照片，再发送位置和文字说明即可；受理后我们会回复编号，进展也会通知您。"),
]


def demo_menu(base: str) -> list[dict[str, object]]:
    """The demo's menu: its page buttons open this server's citizen pages. EVENTS_LIST is answered by
    handlers.activities, CONTACT_NEAREST by handlers.alerts, the other clicks by the rules above."""
    page = base.rstrip("/") + "/m/"
    return [
        {
            "name": "随手拍",
            "sub_button": [
                {"type": "view", "name": "拍照举报", "url": page + "tips/new"},
                {"type": "view", "name": "我的线索", "url": page + "tips"},
                {"type": "click", "name": "使用说明", "key": "TIP_HOWTO"},
            ],
        },
        {"type": "click", "name": "活动报名", "key": "EVENTS_LIST"},
        {
            "name": "联系我们",
            "sub_button": [
                {"type": "view", "name": "社区联络点", "url": page + "contacts"},
                {"type": "location_select", "name": "离我最近", "key": "CONTACT_NEAREST"},
                {"type": "click", "name": "服务热线", "key": "CONTACT"},
            ],
        },
    ]


@click.command("seed-demo")
@with_appcontext
def seed_demo() -> None:
    """Demo data: auto-reply rules, menu-click replies, welcome message and a few followers (idempotent)."""
    if current_app.config["PRODUCTION"]:  # it creates console users with a published password
        raise click.ClickException("seed-demo is for the demo and development, not APP_ENV=production")
    if db.session.scalar(sa.select(sa.func.count()).select_from(ReplyRule)):
        click.echo("demo data already present")
        return
    for name, match_type, pattern, text, priority in DEMO_RULES:
        replies.save_rule(name=name, match_type=match_type, pattern=pattern, reply_text=text, priority=priority)
    for name, key, text in DEMO_CLICKS:
        replies.save_rule(name=name, match_type="click", pattern=key, reply_text=text)
    replies.set_text_setting(
        replies.WELCOME_KEY, "欢迎关注城管执法局！发送照片和位置即可举报违法线索；发送「开放日」了解 7·15 公众开放日。"
    )
    replies.set_text_setting(replies.DEFAULT_KEY, "您的消息已收到，工作人员会尽快处理。紧急情况请拨打 12345。")
    menus.save_draft("default", demo_menu(current_app.config["PUBLIC_BASE_URL"] or "http://127.0.0.1:5000/"))
    rng = random.Random(715)
    now = datetime.now(UTC)
    for i in range(12):
        at = now - timedelta(days=rng.randint(0, 60), minutes=rng.randint(0, 1440))
        db.session.add(
            Follower(
                openid=f"o-demo-{i:04d}",
                subscribed=i % 6 != 5,
                subscribed_at=at,
                first_subscribed_at=at,
                source_scene=rng.choice([None, "open_day", "poster_2026"]),
            )
        )
    db.session.commit()
    _seed_demo_staff()
    open_day_id = _seed_demo_activities()
    _seed_demo_channel(open_day_id)
    click.echo(
        "demo data seeded: 6 reply rules, menu draft, welcome message, 12 followers, 3 contact points, the open day"
        f" and a livestream, a channel QR (scene open_day), staff (password {DEMO_PASSWORD}; the officer bound to"
        f" WeChat as {DEMO_OFFICER_OPENID})"
    )


DEMO_PASSWORD = "Demo-2026-pass"
DEMO_OFFICER_OPENID = "o_demo_officer"  # README: `wechat send --from o_demo_officer --image photo.jpg`


def _seed_demo_staff() -> None:
    """A small bureau: the publicity office, two districts and a squad, one account per role."""
    from server.services import staff as staff_service

    office = staff_service.save_unit(name="市局宣传处", kind="department", parent_id=None)
    pudong = staff_service.save_unit(name="浦东分局", kind="district", parent_id=None, sort=1)
    staff_service.save_unit(name="黄浦分局", kind="district", parent_id=None, sort=2)
    squad = staff_service.save_unit(name="陆家嘴中队", kind="squad", parent_id=pudong.id)
    people = [
        ("admin", "系统管理员", "admin", None),
        ("editor", "李编辑", "editor", office.id),
        ("reviewer", "陈审核", "reviewer", office.id),
        ("liaison", "张联络", "liaison", pudong.id),
        ("liaison.b", "赵联络", "liaison", pudong.id),
        ("officer", "王队员", "officer", squad.id),
    ]
    made = {}
    for username, name, role, unit_id in people:
        made[username] = staff_service.save_staff(
            username=username, name=name, role=role, unit_id=unit_id, password=DEMO_PASSWORD
        )
        made[username].must_change_password = False  # demo accounts: straight in
    for unit, kind, sort, parent in ((pudong, "district", 1, None), (squad, "squad", 0, pudong.id)):
        staff_service.save_unit(
            name=unit.name,
            kind=kind,
            parent_id=parent,
            sort=sort,
            post_a_id=made["liaison"].id,
            post_b_id=made["liaison.b"].id,
            unit=unit,
        )
    # Bound to WeChat (as by a binding code): dispatch requests and duty notices reach them in the emulator, and the
    # officer's simulated photos reach the material library (the demo server gives it the officer tag at start).
    made["liaison"].openid, made["liaison.b"].openid = "o-demo-liaison-a", "o-demo-liaison-b"
    made["officer"].openid = DEMO_OFFICER_OPENID
    db.session.commit()


def _seed_demo_activities() -> int:
    """What the menu and the keyword replies speak of: contact points, the 7·15 open day and a livestream.
    Returns the open day's id."""
    from server.services import contacts, events

    for name, address, lat, lng in (
        ("人民广场城管执法社区工作室", "黄浦区人民大道 200 号", 31.2304, 121.4737),
        ("陆家嘴城管执法社区联络点", "浦东新区陆家嘴环路 1000 号", 31.2397, 121.4998),
        ("南京东路城管执法社区联络点", "黄浦区南京东路 300 号", 31.2365, 121.4835),
    ):
        contacts.save_point(name=name, address=address, latitude=lat, longitude=lng, hours="工作日 9:00–17:00")
    now = datetime.now(UTC)
    day = date(now.year if (now.month, now.day) < (7, 15) else now.year + 1, 7, 15)
    at = datetime.combine(day, time(1, 30), UTC)  # 09:30 Beijing
    open_day = events.save_event(
        title="7·15 公众开放日",
        kind="offline",
        description="走进城管执法局：参观指挥中心、体验执法装备、与执法队员面对面。",
        registration_opens_at=now - timedelta(hours=1),
        registration_closes_at=at - timedelta(days=1),
        max_companions=2,
        required_fields=("name", "phone"),
        published=True,
    )
    for hours in (0, 4):
        events.save_session(
            open_day,
            starts_at=at + timedelta(hours=hours),
            ends_at=at + timedelta(hours=hours + 2),
            quota=60,
            venue="市城管执法局指挥中心",
        )
    live = events.save_event(
        title="局长接热线 · 直播",
        kind="livestream",
        registration_opens_at=now - timedelta(hours=1),
        registration_closes_at=now + timedelta(days=6, hours=23),
        published=True,
    )
    events.save_session(
        live,
        starts_at=now + timedelta(days=7),
        ends_at=now + timedelta(days=7, hours=1),
        quota=5000,
        stream_url="https://live.example.gov.cn/hotline",
    )
    return open_day.id


def _seed_demo_channel(open_day_id: int) -> None:
    """The open-day poster's channel QR (the scene some demo followers came by), answering with the event's page:
    `flask --app wsgi wechat send --event SCAN --key open_day`. Its QR is generated from the console's page (the
    demo's WeChat answers only while the server runs)."""
    from server.services import channels

    base = current_app.config["PUBLIC_BASE_URL"] or "http://127.0.0.1:5000/"
    page = f"{base.rstrip('/')}/m/events/{open_day_id}"
    channels.create_channel(
        name="7·15 开放日海报",
        scene="open_day",
        unit_id=None,
        reply=channels.ReplyInput(
            "text",
            text="7·15 公众开放日正在报名：参观指挥中心、体验执法装备、与执法队员面对面。"
            f'<a href="{page}">点此查看场次并报名</a>',
        ),
    )


@click.group("wechat")
def wechat_cli() -> None:
    """Talk to /wechat as WeChat's servers would."""


@wechat_cli.command("send")
@click.argument("text", required=False)
@click.option("--event", help="an event instead of text: subscribe, unsubscribe, SCAN, CLICK, VIEW, LOCATION …")
@click.option("--key", help="EventKey (menu key, qrscene_…, URL)")
@click.option("--image", type=click.Path(exists=True, dir_okay=False), help="send an image (served by the emulator)")
@click.option("--location", help="send a location: LAT,LNG")
@click.option("--from", "openid", default=SIMULATOR_OPENID, show_default=True, help="the sender's openid")
@click.option("--aes", is_flag=True, help="safe mode: encrypt with WECHAT_AES_KEY")
@click.option("--url", help="a running server's /wechat URL; without it the app is called in-process")
@with_appcontext
def wechat_send(text, event, key, image, location, openid, aes, url) -> None:  # type: ignore[no-untyped-def]
    """Send one simulated message and print the reply."""
    config = current_app.config
    account = simulator.Account(config["WECHAT_TOKEN"], config["WECHAT_APPID"], config["WECHAT_AES_KEY"])
    if aes and not account.aes_key:
        raise click.UsageError("--aes needs WECHAT_AES_KEY")
    if event:
        msg_type, fields = "event", simulator.event_fields(event, key)
    elif image:
        msg_type, fields = "image", _image_fields(Path(image), url)
    elif location:
        try:
            lat, lng = (float(v) for v in location.split(","))
        except ValueError:
            raise click.BadParameter("use LAT,LNG, e.g. 31.2304,121.4737", param_hint="--location") from None
        msg_type, fields = "location", {"Location_X": lat, "Location_Y": lng, "Scale": 15, "Label": "模拟位置"}
    elif text:
        msg_type, fields = "text", {"Content": text}
    else:
        raise click.UsageError("give TEXT, --event, --image or --location")
    _follow_in_emulator(openid, event, url, writes=opens_window(msg_type, event))
    xml = simulator.message_xml(openid, msg_type, fields, to=account.original_id)
    params, body = simulator.signed_request(account, xml, aes=aes)
    if url:
        res = requests.post(url, params=params, data=body, timeout=10)
        status, reply_body = res.status_code, res.text
    else:
        res = current_app.test_client().post("/wechat", query_string=params, data=body)
        status, reply_body = res.status_code, res.get_data(as_text=True)
    click.echo(f"→ {msg_type} {json.dumps(fields, ensure_ascii=False)} from {openid}{' (AES)' if aes else ''}")
    if status != 200:
        raise click.ClickException(f"/wechat answered HTTP {status}: {reply_body}")
    reply = simulator.decode_reply(account, reply_body, aes=aes)
    if reply is None:
        click.echo("← (no reply: success)")
    elif reply.get("MsgType") == "text":
        click.echo(f"← {reply.get('Content')}")
    else:
        click.echo(f"← {reply.get('MsgType')}: {json.dumps(reply, ensure_ascii=False)}")


def _follow_in_emulator(openid: str, event: str | None, server_url: str | None, *, writes: bool) -> None:
    """The demo's WeChat learns who subscribed, as WeChat would: template messages to the sender then reach them.
    Only followers can chat, so any other message makes an unknown sender a follower too. `writes`: the message
    opens the 48 hours in which customer-service messages reach the sender. Nothing happens without a demo emulator
    (tests keep theirs as strict as WeChat: unknown openids are 40003)."""
    spec: dict[str, object] = {"openid": openid}
    if event and event.lower() in ("subscribe", "unsubscribe"):
        spec["subscribe"] = int(event.lower() == "subscribe")
    hooks = [("users", spec)] + ([("interaction", {"openid": openid})] if writes else [])
    emulator = current_app.extensions.get("wechat_emulator_app")
    try:
        for name, body in hooks:
            if server_url:  # a running demo server mounts its emulator beside /wechat; another server answers 404
                base = server_url.rsplit("/wechat", 1)[0] + "/wechat-emulator/"
                requests.post(base + f"_emulator/{name}", json=body, timeout=5)
            elif emulator is not None:  # DEMO=1 in this process: the in-process app sends to its own emulator
                emulator.test_client().post(f"/_emulator/{name}", json=body)
    except requests.RequestException:
        pass  # the message itself says whether the server is there


def _image_fields(path: Path, server_url: str | None) -> dict[str, str]:
    """Put the image where WeChat would keep it (the emulator's media store), then reference it."""
    data = path.read_bytes()
    media_id = "sim-" + hashlib.sha256(data).hexdigest()[:32]
    emulator = current_app.extensions.get("wechat_emulator_app")
    if server_url:  # a running demo server mounts the emulator beside /wechat
        base = server_url.rsplit("/wechat", 1)[0] + "/wechat-emulator/"
    else:
        base = current_app.config["WECHAT_API_BASE"]
    try:
        if emulator is not None and not server_url:
            emulator.test_client().post(
                "/_emulator/media", data={"media_id": media_id, "media": (path.open("rb"), path.name)}
            )
        else:
            res = requests.post(
                base + "_emulator/media", data={"media_id": media_id}, files={"media": (path.name, data)}, timeout=5
            )
            res.raise_for_status()
    except requests.RequestException:
        click.echo("(no WeChat emulator reachable: the image's MediaId will not download)")
    return {"PicUrl": f"{base}_emulator/media/{media_id}", "MediaId": media_id}


@click.command("create-admin")
@click.argument("username")
@click.option("--name", default="管理员", show_default=True)
@click.password_option(help="at least 10 characters with letters and digits; changed at first login")
@with_appcontext
def create_admin(username: str, name: str, password: str) -> None:
    """Create the first administrator (or reset an existing account to admin with this password)."""
    from models import Staff
    from server.services import ServiceError
    from server.services import staff as staff_service

    existing = db.session.scalar(sa.select(Staff).filter_by(username=username.strip().lower()))
    try:
        staff = staff_service.save_staff(
            username=username, name=name, role="admin", unit_id=None, password=password, staff=existing
        )
    except ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"admin {staff.username} ready; the password must be changed at first login")
