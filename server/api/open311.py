"""Open311 GeoReport v2 views (wiki.open311.org/GeoReport_v2): parse, call `services.open311`, render JSON or XML.

Every document exists in both formats, chosen by the URL's suffix; errors are the spec's <errors> list with the
matching HTTP status. Discovery and the service list are public; filing and reading requests need an api_key issued
in the console, and a key reads only the requests it filed (citizens' tips are not public data).
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from flask import Response, jsonify, request, url_for
from werkzeug.exceptions import HTTPException

from server.api import bp
from server.services import open311 as service
from server.services.open311 import Open311Error

FMT = "<any(json, xml):fmt>"
# The element a list's items take in XML (the spec's documents), by the list's own element name.
ITEM_TAGS = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
    "attributes": "attribute",
}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(parent: ET.Element, value: Any) -> None:
    if isinstance(value, dict):
        for key, child in value.items():
            _fill(ET.SubElement(parent, key), child)
    elif isinstance(value, list):
        for item in value:
            _fill(ET.SubElement(parent, ITEM_TAGS[parent.tag]), item)
    else:
        parent.text = _text(value)


def to_xml(root: str, document: Any) -> bytes:
    element = ET.Element(root)
    _fill(element, document)
    return ET.tostring(element, encoding="utf-8", xml_declaration=True)


def render(fmt: str, root: str, document: Any, status: int = 200) -> Response:
    if fmt == "xml":
        return Response(to_xml(root, document), status=status, mimetype="text/xml")
    response = jsonify(document)
    response.status_code = status
    return response


def _fmt() -> str:
    fmt = (request.view_args or {}).get("fmt")
    if fmt in ("json", "xml"):
        return fmt
    return "xml" if request.path.endswith(".xml") else "json"


def _errors(code: int, description: str) -> Response:
    return render(_fmt(), "errors", [{"code": code, "description": description}], code)


@bp.errorhandler(Open311Error)
def open311_error(exc: Open311Error) -> Response:
    return _errors(exc.code, exc.description)


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> Response:  # a missing form field, a wrong method, too large a body
    return _errors(exc.code or 500, exc.name)


@bp.get(f"/discovery.{FMT}")
def discovery_get(fmt: str) -> Response:
    base = url_for("open311.discovery_get", fmt=fmt, _external=True).rsplit("/", 1)[0] + "/"
    return render(fmt, "discovery", service.discovery(base))


@bp.get(f"/services.{FMT}")
def service_list(fmt: str) -> Response:
    return render(fmt, "services", service.services())


@bp.get(f"/services/<code>.{FMT}")
def service_get(code: str, fmt: str) -> Response:
    return render(fmt, "service_definition", service.service_definition(code))


def _key() -> Any:
    return service.reader(request.args.get("api_key"))


@bp.get(f"/requests.{FMT}")
def request_list(fmt: str) -> Response:
    return render(fmt, "service_requests", service.search_requests(_key(), request.args))


@bp.post(f"/requests.{FMT}")
def request_create(fmt: str) -> Response:
    form = request.form
    token = form.get("client_token") or request.headers.get("Idempotency-Key")
    created = service.submit_request(form.get("api_key"), form, client_token=token)
    return render(fmt, "service_requests", created, 201)


@bp.get(f"/requests/<request_id>.{FMT}")
def request_get(request_id: str, fmt: str) -> Response:
    return render(fmt, "service_requests", service.get_request(_key(), request_id))


@bp.get(f"/tokens/<token>.{FMT}")
def token_get(token: str, fmt: str) -> Response:
    return render(fmt, "service_requests", service.token_request(_key(), token))
