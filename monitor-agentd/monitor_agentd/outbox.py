"""Command responses waiting for the server's ack; resent after a reconnect until acknowledged."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque

from monitoring.v1 import monitoring_pb2 as pb

Key = tuple[str, int]  # (command id, status)


class ResponseOutbox:
    """Unacknowledged CommandResponseMessages, in the order they were produced."""

    def __init__(self, wake: asyncio.Event) -> None:
        self._pending: OrderedDict[Key, pb.CommandResponseMessage] = OrderedDict()
        self._to_send: deque[Key] = deque()
        self._wake = wake

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, response: pb.CommandResponseMessage) -> None:
        key = (response.command_id, response.status)
        self._pending[key] = response
        self._to_send.append(key)
        self._wake.set()

    def next_to_send(self) -> pb.CommandResponseMessage | None:
        while self._to_send:
            response = self._pending.get(self._to_send.popleft())
            if response is not None:
                return response
        return None

    def ack(self, command_id: str, status: int) -> None:
        self._pending.pop((command_id, status), None)
        if not self._pending:
            self._wake.set()

    def rewind(self) -> None:
        self._to_send = deque(self._pending)
        if self._to_send:
            self._wake.set()
