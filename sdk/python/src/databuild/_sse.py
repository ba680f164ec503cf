"""A Server-Sent Events reader over an HTTP response (standard library only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Iterator, Optional


@dataclass(frozen=True)
class SseMessage:
    """One dispatched SSE message: its ``event`` name (``message`` when unnamed), its
    ``data`` (the ``data:`` lines joined by newlines) and its ``id``, if any."""

    event: str
    data: str
    id: Optional[str]


def read_sse(stream: IO[bytes]) -> Iterator[SseMessage]:
    """Yields the messages of an ``text/event-stream`` body as they arrive, ending with the
    stream. Comments (keep-alives) are skipped; a message without data is not dispatched,
    as the SSE specification says."""
    event, data, last_id = "", [], None  # type: str, list, Optional[str]
    while True:
        raw = stream.readline()
        if not raw:
            return
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SseMessage(event or "message", "\n".join(data), last_id)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            last_id = value
