"""Where monitorctl writes: human text, or one JSON object per line (``--json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message


@dataclass(frozen=True)
class Output:
    """stdout/stderr of one invocation and the chosen format."""

    out: TextIO
    err: TextIO
    json_mode: bool = False

    def line(self, text: str) -> None:
        """A human line on stdout (not in JSON mode)."""
        print(text, file=self.out, flush=True)

    def write(self, text: str, *, stderr: bool = False) -> None:
        """Raw text (e.g. a command's output) on stdout or stderr."""
        stream = self.err if stderr else self.out
        stream.write(text)
        stream.flush()

    def record(self, kind: str, message: Message, **extra: Any) -> None:
        """``{"type": kind, "record": <proto3 JSON of message>, **extra}`` on one line."""
        self.json({"type": kind, "record": json_format.MessageToDict(message), **extra})

    def json(self, obj: dict[str, Any]) -> None:
        print(json.dumps(obj, ensure_ascii=False), file=self.out, flush=True)

    def note(self, text: str) -> None:
        """A remark for the operator on stderr (both formats)."""
        print(text, file=self.err, flush=True)
