"""Read what a far end answers within a byte budget and a time budget: it is untrusted input.

Rules this module enforces:
- every answer an alert path reads (a send's reply, a REST API's JSON,
  Alertmanager's alert list and metrics, a resolve's reply) is streamed and
  kept only up to ``max_bytes``; a larger body is cut, never held whole, so a
  far end answering 10 GB costs at most ``max_bytes`` of memory;
- the body must arrive within ``within`` seconds of the response headers (by
  default twice the client's read timeout, at least 1 s): httpx's timeout is
  per read, so a body trickling one byte at a time would otherwise hold the
  drill for ever;
- a cut body is reported as such (``cut``) and its JSON is ``None``: a
  partial answer is never judged as if it were the whole one. Transport errors
  (refused, timeout) are raised to the caller as httpx raises them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_BYTES = 1024 * 1024


@dataclass
class Answer:
    """A response whose body was read within budget (``body`` is what was kept)."""

    status_code: int
    headers: Any = field(default_factory=dict)  # httpx.Headers: case-insensitive
    body: bytes = b""
    cut: str = ""  # why the body was not read to its end; "" when it was

    def json(self) -> Any:
        """The body as JSON, or None when it was cut or is not JSON."""
        if self.cut:
            return None
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace") if not self.cut else ""


def budget(http: Any) -> float:
    """Seconds a body may take to arrive: twice the client's read timeout, at least 1 s."""
    timeout = getattr(getattr(http, "timeout", None), "read", None)
    return max(2.0 * float(timeout), 1.0) if timeout else 20.0


def request(
    http: Any,
    method: str,
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    within: float | None = None,
    **kwargs: Any,
) -> Answer:
    """``http.stream(method, url, **kwargs)`` read into an ``Answer`` within ``max_bytes`` and ``within`` seconds."""
    limit = budget(http) if within is None else within
    with http.stream(method, url, **kwargs) as response:
        deadline = time.monotonic() + limit
        answer = Answer(status_code=response.status_code, headers=response.headers)
        parts: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            parts.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                answer.cut = f"answer larger than {max_bytes} bytes, not read to its end"
                break
            if time.monotonic() > deadline:
                answer.cut = f"answer still arriving after {limit:.0f}s, not read to its end"
                break
        answer.body = b"".join(parts)[:max_bytes]
        return answer
