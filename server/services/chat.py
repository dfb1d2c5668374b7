"""Which multi-message chat flows a user has open, asked in one Redis round trip.

Every text message runs this on the gateway's hot path; the flows' own services are called only when theirs is open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.extensions import get_redis
from server.services import materials, tips


@dataclass(frozen=True)
class OpenFlows:
    photo_burst: bool  # an officer's photos waiting for a caption or a place
    tip_draft: bool  # a citizen assembling a tip


def flow_keys(openid: str) -> tuple[str, str]:
    return materials.BURST_KEY.format(openid), tips.DRAFT_KEY.format(openid)


def open_flows(openid: str, known: Mapping[str, bytes | None] | None = None) -> OpenFlows:
    """`known`: the keys' values if already fetched (the gateway peeks them with its dedupe claim)."""
    keys = flow_keys(openid)
    if known is not None and all(k in known for k in keys):
        burst, draft = (known[k] for k in keys)
    else:
        try:
            burst, draft = get_redis().mget(*keys)
        except Exception:  # Redis down: let both services look for themselves (they fall back to the database)
            return OpenFlows(True, True)
    return OpenFlows(burst is not None, draft is not None)
