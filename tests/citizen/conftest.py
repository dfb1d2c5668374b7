from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests


class CitizenLogin:
    """Goes through the real WeChat OAuth dance: our page → emulator's authorize → our callback."""

    def __init__(self, client, emulator) -> None:
        self.client, self.emulator = client, emulator

    def __call__(self, openid: str, *, snapshot: bool = False, path: str = "/m/"):
        if snapshot:
            self.emulator.hook("users", {"users": [{"openid": openid, "is_snapshotuser": 1}]})
        res = self.client.get(path)
        assert res.status_code == 302, res.status_code
        authorize = res.headers["Location"]
        assert authorize.startswith(self.emulator.url + "connect/oauth2/authorize")
        back = requests.get(authorize.split("#")[0], params={"auto_openid": openid}, allow_redirects=False, timeout=5)
        callback = urlsplit(back.headers["Location"])
        res = self.client.get(callback.path, query_string=parse_qs(callback.query))
        return res


@pytest.fixture
def citizen_login(client, emulator) -> CitizenLogin:
    return CitizenLogin(client, emulator)
