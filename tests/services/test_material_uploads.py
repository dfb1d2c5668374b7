"""Uploads of renditions to WeChat have a state the editor sees: a refusal fails at once with its reason, a busy or
unreachable WeChat is retried and only then fails, a retry goes once WeChat recovers, and is queued once.
WeChat is the emulator over HTTP: its /_emulator/fail hook makes it answer errors, a closed port unreachable."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from wechatpy.exceptions import WeChatClientException

from models import MaterialRendition, UploadState, utcnow
from server.extensions import db
from server.services import materials
from server.tasks.materials import upload_rendition, upload_to_wechat
from server.wechat.client import NETWORK_TEXT
from tests.services.test_materials import _item, noisy_jpeg
from tests.services.test_materials import officer as officer  # noqa: F401  (a fixture, shared)

ADD = "cgi-bin/material/add_material"
COVER = materials.make_recipe("cover", watermark="br")


def _adds(emulator) -> int:
    return sum(1 for c in emulator.state()["calls"] if c["path"] == ADD)


def _fresh(rendition: MaterialRendition) -> MaterialRendition:
    return db.session.get(MaterialRendition, rendition.id, populate_existing=True)


@pytest.fixture
def item(officer):  # noqa: F811
    return _item(officer, noisy_jpeg((800, 600), seed=7), cid="upload-client-1")


@pytest.fixture
def retries(app, monkeypatch):
    """Eager tasks run their retries inline, as a worker would run them later (tests and the demo propagate the first
    failure instead: there is no broker to queue a retry on)."""
    monkeypatch.setitem(app.extensions["celery"].conf, "task_eager_propagates", False)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed: connections are refused


@pytest.mark.parametrize(
    ("errcode", "reason"),
    [
        (40009, "40009 图片大小不合法：超出微信的限制"),
        (45009, "45009 今天调用微信接口的次数已用完，请明天再试"),
        (48001, "48001 公众号没有此接口的权限（需微信认证）"),
    ],
)
def test_a_refusal_fails_at_once_with_its_reason(item, emulator, errcode, reason):
    emulator.hook("fail", {"path": ADD, "errcode": errcode, "times": 99})
    rendition, queued = materials.request_upload(item.id, COVER)
    assert queued
    rendition = _fresh(rendition)
    assert (rendition.upload_state, rendition.upload_error) == (UploadState.FAILED, reason)
    assert _adds(emulator) == 1  # no retry spent on it


def test_a_busy_wechat_is_retried_and_the_upload_goes(item, emulator, retries):
    emulator.hook("fail", {"path": ADD, "errcode": -1, "errmsg": "system error", "times": 2})
    rendition, _ = materials.request_upload(item.id, COVER)
    rendition = _fresh(rendition)
    assert (rendition.upload_state, rendition.upload_error) == (UploadState.UPLOADED, None)
    assert _adds(emulator) == 3
    [row] = materials.rendition_uploads(rendition.item)
    assert row.state is UploadState.UPLOADED and row.wechat.media_id in {
        m["media_id"] for m in emulator.state()["materials"]
    }


def test_busy_on_every_try_fails_after_the_last_retry_with_the_reason(item, emulator, retries):
    emulator.hook("fail", {"path": ADD, "errcode": -1, "errmsg": "system error", "times": 99})
    rendition, _ = materials.request_upload(item.id, COVER)
    rendition = _fresh(rendition)
    assert (rendition.upload_state, rendition.upload_error) == (UploadState.FAILED, "多次重试仍失败：-1 微信系统繁忙")
    assert _adds(emulator) == 6  # the first try and five retries


def test_between_retries_it_waits_queued_with_the_reason_of_the_last_try(item, emulator, broker):
    emulator.hook("fail", {"path": ADD, "errcode": -1, "errmsg": "system error", "times": 1})
    rendition, _ = materials.request_upload(item.id, COVER)
    with pytest.raises(WeChatClientException):  # raised for the task's autoretry
        materials.upload_queued(rendition.id, retried=0, last_try=False)
    [row] = materials.rendition_uploads(_fresh(rendition).item)
    assert (row.state, row.error, row.retry, row.waiting) == (UploadState.QUEUED, "-1 微信系统繁忙", False, True)
    materials.upload_queued(rendition.id, retried=1, last_try=False)
    assert (_fresh(rendition).upload_state, _fresh(rendition).upload_error) == (UploadState.UPLOADED, None)


def test_run_inline_a_busy_wechat_fails_at_once_as_no_retry_would_come(item, emulator):
    """The demo (and tests) run tasks inline and propagate their failures: 排队中 would wait for a retry never made."""
    emulator.hook("fail", {"path": ADD, "errcode": -1, "errmsg": "system error", "times": 1})
    rendition, _ = materials.request_upload(item.id, COVER)
    rendition = _fresh(rendition)
    assert (rendition.upload_state, rendition.upload_error) == (UploadState.FAILED, "-1 微信系统繁忙")
    assert materials.retry_upload(rendition) and _fresh(rendition).upload_state is UploadState.UPLOADED
    assert _adds(emulator) == 2


def test_an_unreachable_wechat_fails_after_the_retries_and_a_retry_goes_once_it_is_back(
    app, item, emulator, closed_port, retries
):
    client = app.extensions["wechat_client"]
    app.extensions["wechat_client"] = None  # the next call builds a client for the unreachable base
    app.config["WECHAT_API_BASE"] = f"http://127.0.0.1:{closed_port}/"
    try:
        rendition, _ = materials.request_upload(item.id, COVER)
    finally:
        app.config["WECHAT_API_BASE"] = emulator.url
        app.extensions["wechat_client"] = client
    rendition = _fresh(rendition)
    assert rendition.upload_state is UploadState.FAILED
    assert rendition.upload_error == f"多次重试仍失败：{NETWORK_TEXT}"
    assert [r.retry for r in materials.rendition_uploads(rendition.item)] == [True]

    assert materials.retry_upload(rendition)
    rendition = _fresh(rendition)
    assert (rendition.upload_state, rendition.upload_error) == (UploadState.UPLOADED, None)
    assert _adds(emulator) == 1


def test_a_retry_after_wechat_recovers_uploads_and_a_second_one_does_nothing(item, emulator):
    emulator.hook("fail", {"path": ADD, "errcode": 40009, "times": 1})
    rendition, _ = materials.request_upload(item.id, COVER)
    assert _fresh(rendition).upload_state is UploadState.FAILED
    assert materials.retry_upload(rendition)
    assert _fresh(rendition).upload_state is UploadState.UPLOADED
    assert not materials.retry_upload(rendition)  # nothing left to retry
    assert materials.request_upload(item.id, COVER) == (rendition, False)  # nor to upload again
    upload_rendition.delay(rendition.id)  # a duplicated delivery sends nothing
    assert _adds(emulator) == 2 and len(emulator.state()["materials"]) == 1


def test_a_retry_pressed_twice_queues_one_upload(item, emulator, broker):
    emulator.hook("fail", {"path": ADD, "errcode": 40009, "times": 1})
    rendition, _ = materials.request_upload(item.id, COVER)
    assert broker() == [("server.tasks.materials.upload_rendition", f"({rendition.id},)")]
    upload_rendition.apply((rendition.id,))  # a worker runs it: WeChat refuses
    assert _fresh(rendition).upload_state is UploadState.FAILED

    assert materials.retry_upload(rendition)
    assert not materials.retry_upload(_fresh(rendition))
    assert len(broker()) == 2  # the request's, and one for the two retries
    [row] = materials.rendition_uploads(rendition.item)
    assert (row.state, row.error, row.retry, row.waiting) == (UploadState.QUEUED, None, False, True)
    assert materials.request_upload(item.id, COVER) == (rendition, False)  # the process button neither
    assert len(broker()) == 2


def test_an_upload_whose_task_was_lost_may_be_queued_again(item, emulator, broker):
    rendition, queued = materials.request_upload(item.id, COVER)
    assert queued and len(broker()) == 1
    assert not materials.retry_upload(rendition)  # on its way
    rendition = _fresh(rendition)
    rendition.upload_state_at = utcnow() - timedelta(minutes=16)  # and its task never ran (the broker lost it)
    db.session.commit()
    [row] = materials.rendition_uploads(rendition.item)
    assert (row.state, row.retry, row.waiting) == (UploadState.QUEUED, True, False)
    assert materials.retry_upload(rendition)
    assert len(broker()) == 2 and _fresh(rendition).upload_state_at > utcnow() - timedelta(minutes=1)


def test_the_same_bytes_on_wechat_already_read_as_uploaded(item, emulator):
    media_id = materials.wechat_image(item.id, "cover", COVER)  # publishing's way: no request, no state
    [row] = materials.rendition_uploads(item)
    assert (row.state, row.wechat.media_id, row.retry) == (UploadState.UPLOADED, media_id, False)


def test_an_upload_queued_before_the_states_existed_gets_one(item, emulator):
    upload_to_wechat.delay(item.id, COVER.as_dict())  # the old task's signature, still in a queue at deploy time
    [rendition] = item.renditions
    assert _fresh(rendition).upload_state is UploadState.UPLOADED and _adds(emulator) == 1
