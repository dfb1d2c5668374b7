"""Personal data past its retention (events have their own, per event: server.tasks.events)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from flask import current_app

from models import utcnow
from server.services import inbound, submits, tips


@shared_task
def forget_old_message_contents() -> int:
    days = max(current_app.config["MESSAGE_RETENTION_DAYS"], 1)  # a retry within the day still finds its reply
    return inbound.forget_contents(utcnow() - timedelta(days=days))  # idempotent: cleared rows are not chosen again


@shared_task
def forget_old_tip_contacts() -> int:
    days = current_app.config["TIP_CONTACT_RETENTION_DAYS"]
    return tips.forget_contact_details(utcnow() - timedelta(days=days))


@shared_task
def forget_old_submit_keys() -> int:
    return submits.forget_old(utcnow() - timedelta(days=1))
