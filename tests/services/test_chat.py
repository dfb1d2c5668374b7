"""One Redis round trip tells which chat flows are open (the text handler runs it on every message)."""

from server.services import chat, materials, tips


def test_open_flows_reads_both_markers(db_session, redis_client):
    assert chat.open_flows("o-x") == chat.OpenFlows(False, False)
    redis_client.set(tips.DRAFT_KEY.format("o-x"), 1)
    assert chat.open_flows("o-x") == chat.OpenFlows(False, True)
    redis_client.set(materials.BURST_KEY.format("o-x"), 1)
    assert chat.open_flows("o-x") == chat.OpenFlows(True, True)
    assert chat.open_flows("o-y") == chat.OpenFlows(False, False)


def test_values_the_gateway_peeked_are_used_without_asking_redis(db_session, redis_client):
    burst, draft, ready = chat.flow_keys("o-x")
    peeked = {burst: b"1700000000", draft: None, ready: b"1"}
    assert chat.open_flows("o-x", peeked) == chat.OpenFlows(True, False)
    redis_client.set(draft, 1)
    assert chat.open_flows("o-x", {burst: None}) == chat.OpenFlows(False, True)  # incomplete: asks Redis


def test_a_redis_without_the_marker_is_pointed_at_the_open_flows_first(db_session, redis_client):
    # Redis lost its data: the draft the database holds open is pointed at again before the answer.
    from datetime import timedelta

    from models import TipDraft, utcnow
    from server.extensions import db

    db.session.add(TipDraft(openid="o-lost", expires_at=utcnow() + timedelta(minutes=5)))
    db.session.commit()
    burst, draft, ready = chat.flow_keys("o-lost")
    assert chat.open_flows("o-lost", {burst: None, draft: None, ready: None}) == chat.OpenFlows(False, True)
    assert redis_client.get(ready) == b"1" and redis_client.get(draft) is not None
    assert chat.open_flows("o-other") == chat.OpenFlows(False, False)


def test_the_text_handler_gets_its_flow_markers_with_the_claim(wechat, redis_client, monkeypatch):
    """A citizen with a tip in progress: the gateway's claim round trip brings the markers to the text handler."""
    redis_client.set(tips.DRAFT_KEY.format("o-peek"), 1)
    seen = []
    original = chat.open_flows

    def spy(openid, known=None):
        seen.append(dict(known or {}))
        return original(openid, known)

    monkeypatch.setattr(chat, "open_flows", spy)
    wechat.text("o-peek", "你好")
    burst, draft, ready = chat.flow_keys("o-peek")
    assert seen == [{burst: None, draft: b"1", ready: None}]  # a fresh Redis: no marker yet


def test_a_pointer_to_a_closed_draft_does_not_hide_the_draft_opened_since(db_session, redis_client):
    # The draft was cancelled and a new one opened while Redis was unreachable from this process, or a rebuild that
    # read the rows just before a submit pointed back at the submitted draft: the open one is still found.
    from datetime import UTC, datetime, timedelta

    from models import TipDraft, TipDraftState, utcnow
    from server.extensions import db

    closed = TipDraft(openid="o-stale", state=TipDraftState.CANCELLED, expires_at=utcnow() + timedelta(minutes=5))
    db.session.add_all([closed, TipDraft(openid="o-stale", expires_at=utcnow() + timedelta(minutes=5))])
    db.session.commit()
    redis_client.set(tips.DRAFT_KEY.format("o-stale"), closed.id)
    redis_client.set(chat.POINTERS_KEY, 1)  # no rebuild comes to set it right
    reply = tips.attach_chat_location("o-stale", 31.2304, 121.4737, "人民广场", datetime.now(UTC))
    assert reply is not None and reply.startswith("已收到位置：人民广场")


def test_the_marker_expires_so_a_pointer_nobody_saw_lost_comes_back_in_time(db_session, redis_client):
    chat.open_flows("o-any")
    assert 0 < redis_client.ttl(chat.POINTERS_KEY) <= chat.REPOINT_EVERY


def test_a_rebuild_does_not_overwrite_a_burst_counted_meanwhile(db_session, redis_client):
    from datetime import timedelta

    from models import MaterialItem, MaterialSource, utcnow
    from server.extensions import db
    from tests import factories

    officer = factories.staff("officer9", "officer", unit=factories.unit("黄浦分局"))
    officer.openid = "o-officer9"
    db.session.add(
        MaterialItem(key="chat:m1", source=MaterialSource.CHAT, uploader_id=officer.id, media_id="m1",
                     received_at=utcnow() - timedelta(minutes=1), tags=[])
    )  # fmt: skip
    db.session.commit()
    redis_client.set(materials.COUNT_KEY.format("o-officer9"), 2)  # a second photo was counted after the rows were read
    materials.repoint_bursts()
    assert redis_client.get(materials.COUNT_KEY.format("o-officer9")) == b"2"
    assert redis_client.get(materials.BURST_KEY.format("o-officer9")) is not None
