import pytest


@pytest.mark.smoke
def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok"}


@pytest.mark.smoke
def test_readyz_checks_database_and_redis(client):
    res = client.get("/readyz")
    assert res.status_code == 200
    assert res.json["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_when_redis_is_unreachable(client, app, monkeypatch):
    import redis

    monkeypatch.setitem(app.extensions, "redis", redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    res = client.get("/readyz")
    assert res.status_code == 503
    assert res.json["checks"]["redis"].startswith("error")


def test_every_answer_and_its_log_lines_name_the_request(app, client, caplog):
    import logging
    import re

    from server.logs import RequestIdFilter

    assert re.fullmatch(r"[0-9a-f]{16}", client.get("/healthz").headers["X-Request-ID"])
    assert client.get("/healthz", headers={"X-Request-ID": "nginx-7f.1"}).headers["X-Request-ID"] == "nginx-7f.1"
    assert client.get("/healthz", headers={"X-Request-ID": "x y"}).headers["X-Request-ID"] != "x y"  # not an id
    caplog.handler.addFilter(RequestIdFilter())
    with app.test_request_context("/m/", headers={"X-Request-ID": "req-42"}):
        app.preprocess_request()
        logging.getLogger("server.test").warning("something happened")
    assert [r.request_id for r in caplog.records if r.name == "server.test"] == ["req-42"]


@pytest.mark.smoke
def test_a_log_line_with_a_wechat_credential_prints_it_redacted():
    import logging

    from server.logs import RequestIdFilter

    line = ("127.0.0.1", "POST /wechat-emulator/cgi-bin/menu/create?access_token=abc123&x=1 HTTP/1.1")
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, "%s - %s", line, None)
    assert RequestIdFilter().filter(record)
    assert record.getMessage() == "127.0.0.1 - POST /wechat-emulator/cgi-bin/menu/create?access_token=***&x=1 HTTP/1.1"
    plain = logging.LogRecord("app", logging.INFO, __file__, 1, "a=%s", ("1",), None)
    assert RequestIdFilter().filter(plain) and (plain.msg, plain.args) == ("a=%s", ("1",))  # untouched


@pytest.mark.smoke
def test_the_log_filter_never_raises_and_leaves_errcode_alone():
    import logging

    from server.logs import RequestIdFilter

    broken = logging.LogRecord("app", logging.WARNING, __file__, 1, "count %d", ("abc",), None)
    assert RequestIdFilter().filter(broken)  # logging reports it its own way; the caller goes on
    answer = logging.LogRecord("app", logging.INFO, __file__, 1, "errcode=%s qrcode=%s", (40001, "x"), None)
    assert RequestIdFilter().filter(answer) and answer.getMessage() == "errcode=40001 qrcode=x"
