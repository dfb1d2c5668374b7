"""Citizens are identified by WeChat OAuth through WECHAT_API_BASE (the emulator here), never by a form field."""

from __future__ import annotations

import pytest


@pytest.mark.smoke
def test_oauth_round_trip_lands_on_the_page_asked_for(client, citizen_login):
    res = citizen_login("o-citizen-1")
    assert res.status_code == 302 and res.headers["Location"] == "/m/"
    home = client.get("/m/")
    assert home.status_code == 200 and "城管服务" in home.get_data(as_text=True)
    with client.session_transaction() as session:
        assert session["openid"] == "o-citizen-1" and session["snapshot"] is False


@pytest.mark.parametrize(
    ("path", "back"),
    [
        ("/m/events?session_id=2", "/m/events?session_id=2"),
        ("/m/tips/AB%0D%0ASet-Cookie:%20x=1", "/m/"),  # a line break cannot go into a Location header: home
        ("/m/tips/%09x", "/m/"),
    ],
)
def test_after_oauth_the_citizen_is_sent_back_only_to_a_plain_page_of_ours(client, citizen_login, path, back):
    res = citizen_login("o-citizen-3", path=path)
    assert res.status_code == 302 and res.headers["Location"] == back


def test_snapshot_visitors_are_marked(client, citizen_login):
    citizen_login("o-virtual", snapshot=True)
    with client.session_transaction() as session:
        assert session["snapshot"] is True


def test_a_forged_or_replayed_callback_is_refused(client, citizen_login):
    client.get("/m/")  # starts a login: a state is issued
    res = client.get("/m/oauth/callback", query_string={"code": "whatever", "state": "not-the-state"})
    assert res.status_code == 400 and "重新进入" in res.get_data(as_text=True)
    with client.session_transaction() as session:
        assert "openid" not in session


def test_a_used_code_is_refused(client, emulator, citizen_login):
    citizen_login("o-citizen-2")
    with client.session_transaction() as session:
        session.clear()
        session["oauth_state"] = "s1"
    res = client.get("/m/oauth/callback", query_string={"code": "reused-or-unknown", "state": "s1"})
    assert res.status_code == 400 and "授权失败" in res.get_data(as_text=True)


def test_posting_without_an_identity_is_401_not_a_redirect(client, app):
    from server.citizen import bp  # noqa: F401  (a POST route is enough to show the rule)
    from server.citizen.identity import citizen_required

    @citizen_required
    def view():
        return "ok"

    with app.test_request_context("/m/x", method="POST"):
        from werkzeug.exceptions import Unauthorized

        with pytest.raises(Unauthorized):
            view()


def test_a_snapshot_identity_is_asked_again_after_a_minute(client, citizen_login, emulator):
    citizen_login("o-virtual", snapshot=True)
    assert client.get("/m/").status_code == 200  # within the minute: kept, no loop through OAuth
    with client.session_transaction() as session:
        session["snapshot_at"] -= 61
    res = client.get("/m/")  # opened later, perhaps from the full page: WeChat is asked again
    assert res.status_code == 302 and "oauth2/authorize" in res.headers["Location"]
    emulator.hook("users", {"users": [{"openid": "o-real", "is_snapshotuser": 0}]})
    citizen_login("o-real")
    with client.session_transaction() as session:
        assert session["openid"] == "o-real" and session["snapshot"] is False


def test_a_pages_background_request_keeps_the_snapshot_identity(client, citizen_login):
    citizen_login("o-virtual", snapshot=True)
    with client.session_transaction() as session:
        session["snapshot_at"] -= 61
    res = client.get("/m/", headers={"Accept": "application/json", "X-Requested-With": "fetch"})
    assert res.status_code == 200  # no login redirect a fetch could not follow; the state of a pending login kept
