"""Form-supplied return paths stay on this site."""

from __future__ import annotations

import pytest

from server.redirects import local_path


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/admin/",
        "/\\evil.example",
        "/admin/\r\nLocation: https://evil.example",
        "javascript:alert(1)",
        "",
        None,
    ],
)
def test_anything_but_a_local_path_falls_back(target):
    assert local_path(target, "/home") == "/home"


def test_a_local_path_under_the_prefix_is_kept():
    assert local_path("/admin/materials?page=2", "/home", "/admin/") == "/admin/materials?page=2"
    assert local_path("/m/vote/1", "/home", "/admin/") == "/home"
