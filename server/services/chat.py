"""Which multi-message chat flows a user has open, asked in one Redis round trip.

Every text message runs this on the gateway's hot path; the flows' own services are called only when theirs is open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.extensions import get_redis
from server.services import materials, tips

# Set once the pointers below are known to match the database. Redis that lost its data (a restart without
# persistence, a flush) lacks it too: the first text after that points at the open flows again. It also expires, so
# what no process saw go wrong (Redis restored from an older snapshot, keys evicted) heals within that time.
POINTERS_KEY = "chat:pointers"
REPOINT_EVERY = 600  # seconds
# This process failed to reach Redis in a chat flow, so a pointer may be missing there though the marker is set
# (Redis back with the data it had): the next look that reaches Redis points at the open flows again.
_unsure = False


def pointer_lost() -> None:
    """A flow opened or moved while Redis could not be told (its services call this from their Redis fallback)."""
    global _unsure
    _unsure = True


@dataclass(frozen=True)
class OpenFlows:
    photo_burst: bool  # an officer's photos waiting for a caption or a place
    tip_draft: bool  # a citizen assembling a tip


def flow_keys(openid: str) -> tuple[str, str, str]:
    return materials.BURST_KEY.format(openid), tips.DRAFT_KEY.format(openid), POINTERS_KEY


def open_flows(openid: str, known: Mapping[str, bytes | None] | None = None) -> OpenFlows:
    """`known`: the keys' values if already fetched (the gateway peeks them with its dedupe claim)."""
    global _unsure
    keys = flow_keys(openid)
    try:
        if known is not None and all(k in known for k in keys):
            burst, draft, ready = (known[k] for k in keys)
        else:
            burst, draft, ready = get_redis().mget(*keys)
        if ready is None or _unsure:
            _unsure = False
            repoint()
            burst, draft, _ = get_redis().mget(*keys)
    except Exception:  # Redis down: let both services look for themselves (they fall back to the database)
        _unsure = True
        return OpenFlows(True, True)
    return OpenFlows(burst is not None, draft is not None)


def repoint() -> None:
    """Point again at every flow the database holds open. Idempotent, so processes doing it at once are harmless;
    a pointer to a flow that closed meanwhile is dropped by its service at the next look."""
    tips.repoint_open_drafts()
    materials.repoint_bursts()
    get_redis().set(POINTERS_KEY, 1, ex=REPOINT_EVERY)
