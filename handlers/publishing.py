"""PUBLISHJOBFINISH: WeChat tells us how a freepublish job ended; the push is settled from it."""

from __future__ import annotations

from handlers.events import PublishJobFinishEvent
from handlers.router import router
from server.services import publishing


@router.on("event", "publishjobfinish")
def publish_job_finished(message: PublishJobFinishEvent) -> None:
    # A publish_id never recorded (a submit whose answer was lost) is attributed in a task, not here: no WeChat calls
    # within the gateway's time budget.
    publishing.record_result(message.publish_id, message.publish_status, message.article_id, message.article_urls)
    return None  # WeChat expects no reply to this event
