"""Personal data at rest: Fernet under PII_KEY; masked for lists."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


def _fernet() -> Fernet:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    fernet = app.extensions.get("pii_fernet")
    if fernet is None:
        fernet = app.extensions["pii_fernet"] = Fernet(app.config["PII_KEY"])
    return fernet


def encrypt(value: str | None) -> str | None:
    return _fernet().encrypt(value.encode()).decode() if value else None


def decrypt(token: str | None) -> str | None:
    if not token:
        return None
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:  # a key rotated without re-encryption: show nothing rather than fail the page
        return None


def mask_phone(phone: str | None) -> str:
    """138****0000: enough to recognise, not enough to call."""
    if not phone:
        return ""
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"


def valid_phone(phone: str) -> bool:
    return len(phone) == 11 and phone.isdigit() and phone.startswith("1")
