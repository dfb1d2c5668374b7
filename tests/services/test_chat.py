"""One Redis round trip tells which chat flows are open (the text handler runs it on every message)."""

from server.services import chat, materials, tips


def test_open_flows_reads_both_markers(db_session, redis_client):
    assert chat.open_flows("o-x") == chat.OpenFlows(False, False)
    redis_client.set(tips.DRAFT_KEY.format("o-x"), 1)
    assert chat.open_flows("o-x") == chat.OpenFlows(False, True)
    redis_client.set(materials.BURST_KEY.format("o-x"), 1)
    assert chat.open_flows("o-x") == chat.OpenFlows(True, True)
    assert chat.open_flows("o-y") == chat.OpenFlows(False, False)
