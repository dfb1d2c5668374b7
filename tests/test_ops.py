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
