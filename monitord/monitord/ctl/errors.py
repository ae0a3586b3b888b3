"""Errors of monitorctl; the command line turns each into an exit status."""

from __future__ import annotations


class CtlError(Exception):
    """Root of monitorctl's errors."""


class KafkaUnavailable(CtlError):
    """Kafka did not answer, refused a record, or lacks a topic (exit status 69)."""
