"""Links for template messages: PUBLIC_BASE_URL first, the request's host otherwise, none from a bare worker."""

from __future__ import annotations

import pytest

from server.urls import public_url


@pytest.mark.smoke
def test_public_url_prefers_the_configured_address(app, monkeypatch):
    with app.app_context():
        assert public_url("citizen.tip_detail", tracking_no="T1") is None
        monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "https://gov.example.cn/wx/")
        assert public_url("citizen.tip_detail", tracking_no="T1") == "https://gov.example.cn/wx/m/tips/T1"
    with app.test_request_context("/admin/tips", base_url="http://10.0.0.5:8000"):
        assert public_url("citizen.tip_detail", tracking_no="T1") == "https://gov.example.cn/wx/m/tips/T1"
        monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", "")
        assert public_url("citizen.tip_detail", tracking_no="T1") == "http://10.0.0.5:8000/m/tips/T1"


def test_static_files_are_versioned_by_content_and_kept_a_year(client, db_session):
    import hashlib
    from pathlib import Path

    page = client.get("/admin/login").get_data(as_text=True)
    digest = hashlib.sha256(Path("static/css/console.css").read_bytes()).hexdigest()[:12]
    assert f"/static/css/console.css?v={digest}" in page
    with client.get(f"/static/css/console.css?v={digest}") as kept:
        assert kept.status_code == 200 and kept.cache_control.max_age == 365 * 24 * 3600
    with client.get("/static/css/console.css") as unversioned:  # asked again each time
        assert unversioned.cache_control.max_age in (None, 0)
    with client.get("/static/css/console.css?v=0123456789ab") as other:  # another release's URL (a rolling deploy)
        assert other.cache_control.max_age in (None, 0)
