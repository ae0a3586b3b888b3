"""monitord's exception hierarchy (daemon, monitorctl and monitor-analyzer alike).

Every error raised on purpose derives from :class:`MonitordError`; ``retriable`` says whether
trying again later can help (a Kafka outage: yes; a malformed record: no).
"""

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


class StartupError(MonitordError):
    """monitord could not start (e.g. the listen address is in use); exit status 69."""


class AuthConfigError(MonitordError):
    """The tokens file or a certificate file is unusable."""


class MalformedMessage(MonitordError):
    """An agent sent bytes that are not the protobuf message the RPC takes (INVALID_ARGUMENT)."""


class RecordDecodeError(MonitordError):
    """A Kafka record that is not a monitoring.v1 message we understand."""


class InvalidCommand(MonitordError):
    """A commands-topic record that is not a usable CommandMessage (answered INVALID)."""


class KafkaUnavailable(MonitordError):
    """Kafka did not answer, refused a record, or lacks a topic (monitorctl: exit status 69)."""

    retriable = True
