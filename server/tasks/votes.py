"""Vote tasks: thin wrappers over services.votes."""

from __future__ import annotations

from celery import shared_task

from server.services import votes


@shared_task
def rebuild_ranking(campaign_id: int) -> None:
    votes.rebuild_ranking(campaign_id)  # idempotent: the set is replaced by the rows' counts
