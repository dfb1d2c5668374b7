"""Business rules, one module per capability. Services commit; they know nothing of requests or reply XML."""


class ServiceError(Exception):
    """A refusal a person can act on; the message is shown to them (in Chinese)."""
