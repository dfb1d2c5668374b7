"""Personal data past its retention: the message log keeps who, what and when, not what was written."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from models import InboundMessage, utcnow
from server.services import inbound
from server.tasks import retention


def _message(n: int, age: timedelta, text: str) -> InboundMessage:
    at = utcnow() - age
    return InboundMessage(
        dedupe_key=f"m:{n}",
        openid="o-writer",
        msg_type="text",
        payload={"Content": text, "MsgId": str(n)},
        reply="<xml>回复</xml>",
        sent_at=at,
        received_at=at,
    )


def test_old_contents_are_cleared_and_the_rows_stay_for_the_statistics(app, db_session):
    db_session.add_all(
        [
            _message(1, timedelta(days=200), "我的电话 13800138000，家住幸福路 8 号"),
            _message(2, timedelta(days=181), "门口占道"),
            _message(3, timedelta(days=10), "昨天的事"),
        ]
    )
    db_session.commit()
    assert retention.forget_old_message_contents.delay().get() == 2  # MESSAGE_RETENTION_DAYS: 180 by default
    rows = {m.dedupe_key: m for m in db_session.scalars(sa.select(InboundMessage)).all()}
    for key in ("m:1", "m:2"):
        db_session.refresh(rows[key])
        assert rows[key].payload == {} and rows[key].reply is None
        assert (rows[key].openid, rows[key].msg_type) == ("o-writer", "text")  # still counted
    db_session.refresh(rows["m:3"])
    assert rows["m:3"].payload["Content"] == "昨天的事" and rows["m:3"].reply
    assert inbound.forget_contents(utcnow() - timedelta(days=180)) == 0  # nothing left to clear: idempotent


def test_clearing_goes_in_batches(db_session):
    db_session.add_all([_message(n, timedelta(days=365), f"第 {n} 条") for n in range(7)])
    db_session.commit()
    assert inbound.forget_contents(utcnow() - timedelta(days=180), batch=3) == 7
    assert not db_session.scalars(sa.select(InboundMessage).where(InboundMessage.reply.is_not(None))).all()


def test_a_closed_tip_forgets_the_citizens_phone_and_ip_after_its_retention(app, db_session):
    from models import Tip
    from server.services import tips
    from tests import factories
    from tests.services.test_tips import file_tip

    editor = factories.staff("ed-ret", "editor")
    closed = file_tip("o-old", phone="13800138000", ip="10.1.2.3")
    still_open = file_tip("o-open", phone="13900139000", ip="10.1.2.4")
    tips.transition(closed.id, "reject", editor, note="不属于城管职责")
    for tip in (closed, still_open):
        db_session.get(Tip, tip.id).status_changed_at = utcnow() - timedelta(days=400)
    db_session.commit()
    assert retention.forget_old_tip_contacts.delay().get() == 1  # TIP_CONTACT_RETENTION_DAYS: 365 by default
    closed, still_open = (db_session.get(Tip, t.id, populate_existing=True) for t in (closed, still_open))
    assert (closed.phone_enc, closed.ip) == (None, None) and closed.description  # the tip itself stays
    assert still_open.phone_enc and still_open.ip == "10.1.2.4"  # open: the unit may still need to call back


def test_a_run_reads_only_what_came_since_the_last_one_and_a_long_pause_leaves_nothing(db_session):
    db_session.add(_message(1, timedelta(days=400), "一年多以前"))
    db_session.add_all([_message(n, timedelta(days=160 + n), f"第 {n} 条") for n in range(3, 20)])  # 163–179 days
    db_session.commit()
    assert inbound.forget_contents(utcnow() - timedelta(days=180)) == 1  # the first run reads everything
    # A row behind the mark (which the cleared years cannot hold) is outside what the next runs read.
    db_session.add(_message(2, timedelta(days=300), "不会出现的旧内容"))
    db_session.commit()
    # The job stops for three weeks: the next run clears everything that aged past the retention meanwhile.
    assert inbound.forget_contents(utcnow() - timedelta(days=159)) == 17
    left = db_session.scalars(sa.select(InboundMessage.dedupe_key).where(InboundMessage.reply.is_not(None))).all()
    assert left == ["m:2"]
