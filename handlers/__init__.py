"""WeChat message and event handlers; importing this package registers them all on `router`."""

# Feature handlers before basic: nothing depends on order except readability.
from handlers import activities, alerts, basic, binding, events, publishing, tips  # noqa: F401  (registration by import)
from handlers.router import Reply, Router, router

__all__ = ["Reply", "Router", "router"]
