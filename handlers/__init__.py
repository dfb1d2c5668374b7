"""WeChat message and event handlers; importing this package registers them all on `router`."""

from handlers import basic, binding, events  # noqa: F401  (registration by import)
from handlers.router import Reply, Router, router

__all__ = ["Reply", "Router", "router"]
