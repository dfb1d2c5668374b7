"""/m/contacts: the community contact points, with an offline map; public (no WeChat sign-in needed)."""

from __future__ import annotations

from flask import render_template

from server.citizen import bp
from server.services import contacts


@bp.get("/contacts")
def contact_list():  # type: ignore[no-untyped-def]
    points = contacts.list_points(published_only=True)
    return render_template("citizen/contact_list.html", points=points, layout=contacts.map_layout(points))
