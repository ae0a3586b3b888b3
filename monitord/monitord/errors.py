"""monitord's exception hierarchy: subclasses say whether retrying later can help."""

from __future__ import annotations


class MonitordError(Exception):
    """Root of every error monitord raises on purpose."""

    retriable: bool = False


class DeliveryError(MonitordError):
    """Kafka did not confirm a record; the agent gets a negative ack carrying this text."""

    def __init__(self, reason: str, *, retriable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retriable = retriable


class ProducerClosed(DeliveryError):
    """The producer is shutting down; the agent should send the record again elsewhere/later."""

    def __init__(self) -> None:
        super().__init__("monitord is shutting down", retriable=True)
