"""A Slack Web API emulator on 127.0.0.1 for the real slack_sdk WebClient.

Serves chat.postMessage, chat.update, chat.delete, conversations.history,
conversations.list and auth.test with token checking and channel membership,
and can be told to misbehave: answer 429 with Retry-After, answer HTTP 500,
return an API error (``invalid_auth``, ``not_in_channel``...), delay when a
posted message becomes visible in history, or never show it; store a post and
answer only after a delay longer than the client's timeout (``slow_store``);
and go down for N minutes (``outage``: errors, 429s, connection resets or a
closed port) on a clock the test moves (``advance``) instead of waiting ten
real minutes. ``strict_ids`` makes conversations.history want a channel ID,
as real Slack does.

Use: ``WebClient(token=emu.token, base_url=emu.base_url)`` — base_url ends in
``/api/`` (the trailing slash matters to slack_sdk).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Fault:
    method: str  # API method name, or "*" for any
    status: int = 200  # HTTP status: 429, 500, or 200 with an API error
    error: str | None = None  # e.g. "invalid_auth", "not_in_channel", "channel_not_found"
    retry_after: int = 1
    remaining: int = 1  # how many calls it affects
    store_then_wait: float = 0.0  # chat.postMessage: store the message, then answer after this many seconds
    then_reset: bool = False  # with store_then_wait: close the connection instead of answering
    drop: bool = False  # read the request, store nothing, close the connection unanswered
    after: int = 0  # let this many matching calls through first


@dataclass
class Outage:
    """Slack is down until ``until`` on the emulator's clock (``SlackEmulator.now``)."""

    mode: str  # "error" (HTTP 500), "429" (Retry-After), "reset" (connection closed unanswered), "refuse" (port closed)
    until: float
    retry_after: int = 1


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[Any] | None
    thread_ts: str | None
    visible_at: float
    user: str = "UDRILLBOOK"
    metadata: dict[str, Any] | None = None


@dataclass
class SlackState:
    token: str = "xoxb-test-drillbook-0000-secret"
    channels: dict[str, str] = field(
        default_factory=lambda: {"#dr-oncall": "C0ONCALL", "#dr-digest": "C0DIGEST", "#alerts": "C0ALERTS"}
    )
    member_of: set[str] = field(default_factory=lambda: {"C0ONCALL", "C0DIGEST", "C0ALERTS"})
    messages: list[Message] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    visibility_delay: float = 0.0
    hidden: bool = False  # accept posts but never show them in history
    clock: int = 0
    outage: Outage | None = None
    strict_ids: bool = False  # conversations.history refuses a channel name (real Slack wants the ID)


class SlackEmulator:
    """Start with ``SlackEmulator().start()``; stop with ``.stop()``."""

    def __init__(self, token: str | None = None):
        self.state = SlackState()
        if token:
            self.state.token = token
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.offset = 0.0  # seconds the test moved the emulator's clock forward (``advance``)

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> SlackEmulator:
        self._listen()
        return self

    def _listen(self) -> None:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                emulator._handle(self)

            do_GET = do_POST

        class Server(ThreadingHTTPServer):
            def handle_error(
                self, request: Any, client_address: Any
            ) -> None:  # a client that hung up is expected here
                pass

        self._server = Server(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]  # a restart after an outage listens on the same port
        self._thread = threading.Thread(target=self._server.serve_forever, name="slack-emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/api/"

    @property
    def token(self) -> str:
        return self.state.token

    # -- test controls --------------------------------------------------------------
    def fail(
        self,
        method: str = "*",
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: int = 1,
        times: int = 1,
        after: int = 0,
    ) -> None:
        with self.lock:
            self.state.faults.append(Fault(method, status, error, retry_after, times, after=after))

    def slow_store(self, seconds: float, *, times: int = 1, then: str = "answer") -> None:
        """The next ``times`` chat.postMessage calls store the message, then answer after ``seconds``
        (``then="reset"``: close the connection unanswered instead)."""
        with self.lock:
            self.state.faults.append(
                Fault(
                    "chat.postMessage", store_then_wait=seconds, then_reset=then == "reset", remaining=times
                )
            )

    def drop(self, method: str = "chat.postMessage", *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` are read, not acted on, and the connection is closed unanswered."""
        with self.lock:
            self.state.faults.append(Fault(method, drop=True, remaining=times))

    def now(self) -> float:
        """The emulator's clock: real time plus what the test ``advance``d."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward; an outage whose time is up ends (a closed port listens again)."""
        self.offset += seconds
        self._check_outage()

    def outage(self, *, minutes: float | None = None, mode: str = "error", retry_after: int = 1) -> None:
        """Slack is down for ``minutes`` of the emulator's clock (None: until ``end_outage``)."""
        if mode not in ("error", "429", "reset", "refuse"):
            raise ValueError(f"outage mode must be error, 429, reset or refuse, got {mode!r}")
        until = float("inf") if minutes is None else self.now() + minutes * 60
        with self.lock:
            self.state.outage = Outage(mode, until, retry_after)
        if mode == "refuse":
            self.stop()  # connection refused: nothing listens on the port

    def end_outage(self) -> None:
        with self.lock:
            self.state.outage = None
        if self._server is None:
            self._listen()

    @property
    def down(self) -> bool:
        outage = self.state.outage
        return outage is not None and self.now() < outage.until

    def _check_outage(self) -> None:
        if self.state.outage is not None and not self.down:
            self.end_outage()

    def with_marker(self, marker: str, channel: str | None = None) -> list[Message]:
        """Top-level messages stored in ``channel`` whose text, blocks or metadata carry ``marker``."""
        return [
            m
            for m in self.posted(channel)
            if m.thread_ts is None
            and marker in json.dumps({"text": m.text, "blocks": m.blocks, "metadata": m.metadata})
        ]

    def reset(self) -> None:
        with self.lock:
            token = self.state.token
            self.state = SlackState(token=token)
            self.offset = 0.0
        if self._server is None:
            self._listen()

    def channel_id(self, name_or_id: str) -> str | None:
        if name_or_id in self.state.channels.values():
            return name_or_id
        return self.state.channels.get(name_or_id) or self.state.channels.get("#" + name_or_id.lstrip("#"))

    def posted(self, channel: str | None = None) -> list[Message]:
        cid = self.channel_id(channel) if channel else None
        with self.lock:
            return [m for m in self.state.messages if cid is None or m.channel == cid]

    # -- request handling -----------------------------------------------------------
    def _params(self, handler: BaseHTTPRequestHandler) -> dict[str, Any]:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8") if length else ""
        ctype = handler.headers.get("Content-Type", "")
        params: dict[str, Any] = {}
        if "?" in handler.path:
            params.update({k: v[0] for k, v in parse_qs(handler.path.split("?", 1)[1]).items()})
        if raw:
            if "json" in ctype:
                params.update(json.loads(raw))
            else:
                params.update({k: v[0] for k, v in parse_qs(raw).items()})
        for key in ("blocks", "attachments"):
            if isinstance(params.get(key), str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    pass
        return params

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(payload)

    @staticmethod
    def _hang_up(handler: BaseHTTPRequestHandler) -> None:
        """The request was read; the answer never comes (the client sees the connection closed)."""
        handler.close_connection = True
        try:
            handler.connection.shutdown(2)
        except OSError:
            pass

    def _take_fault(self, method: str) -> Fault | None:
        with self.lock:
            for fault in self.state.faults:
                if fault.remaining > 0 and fault.method in ("*", method):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.remaining -= 1
                    return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.path.split("?", 1)[0].rsplit("/", 1)[-1]
        params = self._params(handler)
        auth = handler.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else params.get("token", "")
        with self.lock:
            self.state.requests.append(
                {"method": method, "params": params, "authorization": auth, "time": time.time()}
            )
        outage = self.state.outage
        if outage is not None and self.now() < outage.until:
            if outage.mode == "429":
                return self._send(
                    handler,
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(outage.retry_after)},
                )
            if outage.mode == "reset":
                return self._hang_up(handler)
            return self._send(handler, 500, {"ok": False, "error": "internal_error"})
        fault = self._take_fault(method)
        if fault is not None and fault.drop:
            return self._hang_up(handler)
        if fault is not None and fault.store_then_wait:
            if token != self.state.token:
                return self._send(handler, 200, {"ok": False, "error": "invalid_auth"})
            body = self._post(params)  # stored: it shows in history even though the client gives up waiting
            time.sleep(fault.store_then_wait)
            if fault.then_reset:
                return self._hang_up(handler)
            try:
                return self._send(handler, 200, body)
            except OSError:
                return None  # the client hung up: it timed out
        if fault is not None:
            if fault.status == 429:
                return self._send(
                    handler,
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(fault.retry_after)},
                )
            if fault.status >= 500:
                return self._send(handler, fault.status, {"ok": False, "error": "internal_error"})
            return self._send(handler, 200, {"ok": False, "error": fault.error or "fatal_error"})
        if token != self.state.token:
            return self._send(handler, 200, {"ok": False, "error": "invalid_auth" if token else "not_authed"})
        route = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.list": self._list,
        }.get(method)
        if route is None:
            return self._send(handler, 200, {"ok": False, "error": "unknown_method"})
        return self._send(handler, 200, route(params))

    def _resolve(self, params: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
        cid = self.channel_id(str(params.get("channel", "")))
        if cid is None:
            return None, {"ok": False, "error": "channel_not_found"}
        if cid not in self.state.member_of:
            return None, {"ok": False, "error": "not_in_channel"}
        return cid, None

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "team": "drillbook-test",
            "user": "drillbook",
            "user_id": "UDRILLBOOK",
            "bot_id": "BDRILLBOOK",
        }

    def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        cid, err = self._resolve(params)
        if err:
            return err
        if not params.get("text") and not params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        blocks = params.get("blocks")
        if isinstance(blocks, list) and len(blocks) > 50:
            return {"ok": False, "error": "invalid_blocks", "errors": ["must be less than 51 items"]}
        with self.lock:
            self.state.clock += 1
            ts = f"{int(self.now())}.{self.state.clock:06d}"
            visible = float("inf") if self.state.hidden else self.now() + self.state.visibility_delay
            metadata = params.get("metadata")
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            msg = Message(
                cid,
                ts,
                str(params.get("text", "")),
                blocks,
                params.get("thread_ts"),
                visible,  # type: ignore[arg-type]
                metadata=metadata if isinstance(metadata, dict) else None,
            )
            self.state.messages.append(msg)
        return {
            "ok": True,
            "channel": cid,
            "ts": ts,
            "message": {"text": msg.text, "ts": ts, "user": msg.user, "blocks": blocks or []},
        }

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        cid, err = self._resolve(params)
        if err:
            return err
        with self.lock:
            for m in self.state.messages:
                if m.channel == cid and m.ts == params.get("ts"):
                    m.text = str(params.get("text", m.text))
                    m.blocks = params.get("blocks", m.blocks)
                    return {"ok": True, "channel": cid, "ts": m.ts, "text": m.text}
        return {"ok": False, "error": "message_not_found"}

    def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        cid, err = self._resolve(params)
        if err:
            return err
        with self.lock:
            before = len(self.state.messages)
            self.state.messages = [
                m for m in self.state.messages if not (m.channel == cid and m.ts == params.get("ts"))
            ]
            if len(self.state.messages) == before:
                return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": cid, "ts": params.get("ts")}

    def _visible(
        self, cid: str, oldest: float, thread_ts: str | None = None, *, metadata: bool = False
    ) -> list[dict[str, Any]]:
        now = self.now()
        with self.lock:
            found = [
                {
                    "type": "message",
                    "text": m.text,
                    "ts": m.ts,
                    "user": m.user,
                    "blocks": m.blocks or [],
                    **({"thread_ts": m.thread_ts} if m.thread_ts else {}),
                    **({"metadata": m.metadata} if metadata and m.metadata else {}),
                }
                for m in self.state.messages
                if m.channel == cid
                and m.visible_at <= now
                and float(m.ts) > oldest
                and (thread_ts is None or m.thread_ts == thread_ts or m.ts == thread_ts)
            ]
        return list(reversed(found))  # newest first, like Slack

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.state.strict_ids and str(params.get("channel", "")) not in self.state.channels.values():
            return {"ok": False, "error": "channel_not_found"}
        cid, err = self._resolve(params)
        if err:
            return err
        limit = int(params.get("limit", 100))
        with_meta = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        msgs = [
            m
            for m in self._visible(cid, float(params.get("oldest", 0) or 0), metadata=with_meta)  # type: ignore[arg-type]
            if "thread_ts" not in m or m["thread_ts"] == m["ts"]
        ]
        start = int(params.get("cursor") or 0)
        page = msgs[start : start + limit]
        more = start + limit < len(msgs)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _list(self, params: dict[str, Any]) -> dict[str, Any]:
        chans = [
            {"id": cid, "name": name.lstrip("#"), "is_member": cid in self.state.member_of}
            for name, cid in sorted(self.state.channels.items())
        ]
        return {"ok": True, "channels": chans, "response_metadata": {"next_cursor": ""}}

    def _replies(self, params: dict[str, Any]) -> dict[str, Any]:
        cid, err = self._resolve(params)
        if err:
            return err
        return {"ok": True, "messages": list(reversed(self._visible(cid, 0, str(params.get("ts")))))}  # type: ignore[arg-type]
