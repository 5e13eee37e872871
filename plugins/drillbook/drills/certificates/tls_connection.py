"""Reach an endpoint and bring it to a TLS handshake: the socket, STARTTLS for SMTP and PostgreSQL.

Rules this module enforces:
- a connection is a blocking socket in the probing thread (probe.py runs one per
  slot) with OpenSSL on the socket itself; every blocking step (name lookup,
  connect, each read and write of STARTTLS, the whole handshake) waits at most
  what is left of the connection's one deadline, so a server that answers a
  byte at a time still costs at most its ``timeout``;
- a name lookup runs in a daemon thread of its own and is abandoned at the
  deadline (``getaddrinfo`` has no timeout of its own);
- STARTTLS reads a bounded reply (at most ``_SMTP_LINE_LIMIT`` lines of
  ``_MAX_LINE`` bytes) and refuses a server that sends data before the TLS
  handshake; every failure is a ``ConnectionError``, ``OSError`` or
  ``TimeoutError`` the probe classifies (probe.py);
- no close_notify: a connection is closed as soon as everything needed is read.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import struct
import threading
import time
from typing import Any

from drillbook.errors import DrillbookError

_PG_SSL_REQUEST = struct.pack("!II", 8, 80877103)
_SMTP_LINE_LIMIT = 100  # lines of EHLO reply we are willing to read
_MAX_LINE = 4096


@functools.lru_cache(maxsize=4096)
def _literal_family(host: str) -> int | None:
    """The address family of an IP literal, None for a name to resolve (cached: parsing one is ~10 us)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class NameLookupTimeout(DrillbookError, TimeoutError):
    """The endpoint's name did not resolve before its deadline."""


def _resolve(host: str, port: int, timeout: float) -> list[tuple[Any, Any]]:
    """``getaddrinfo`` bounded by ``timeout``: a resolver that hangs is left behind in its daemon thread."""
    found: dict[str, Any] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            found["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # UnicodeError for a name IDNA cannot encode, OSError otherwise
            found["error"] = exc
        finally:
            done.set()

    threading.Thread(target=lookup, name="drillbook-resolve", daemon=True).start()
    if not done.wait(timeout):
        raise NameLookupTimeout(f"the name {host!r} did not resolve within {timeout:g}s")
    if "error" in found:
        raise found["error"]
    return [(family, addr) for family, _, _, _, addr in found["infos"]]


class _Conn:
    """A blocking socket under one deadline (``time.monotonic()`` seconds); TLS is OpenSSL on the socket itself.

    Not asyncio: an event loop's readiness callbacks cost more Python per handshake
    than the handshake's own work in OpenSSL, and a blocking handshake releases the
    GIL, so the probing threads' handshakes run on every core while the caller's
    thread judges (probe.py).
    """

    __slots__ = ("buffer", "deadline", "sock")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.sock: socket.socket | None = None
        self.buffer = b""

    def _left(self) -> float:
        """Seconds left before the deadline; ``TimeoutError`` when none are."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        return left

    def connect(self, host: str, port: int) -> None:
        family = _literal_family(host)
        if family is not None:
            infos: list[tuple[Any, Any]] = [(family, (host, port))]
        else:
            infos = _resolve(host, port, self._left())
        error: Exception = OSError(f"no address for {host!r}")
        for family, addr in infos:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._left())
                sock.connect(addr)
            except TimeoutError:  # the deadline covers every address: no time is left for the next
                sock.close()
                raise
            except OSError as exc:
                sock.close()
                error = exc
                continue
            self.sock = sock
            return
        raise error

    def send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.settimeout(self._left())
        self.sock.sendall(data)

    def _recv(self, n: int) -> bytes:
        assert self.sock is not None
        self.sock.settimeout(self._left())
        chunk = self.sock.recv(n)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def recv_line(self) -> bytes:
        while b"\n" not in self.buffer:
            if len(self.buffer) > _MAX_LINE:
                raise ConnectionError("line too long")
            self.buffer += self._recv(4096)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def recv_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._recv(n - len(self.buffer))
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def handshake(self, ctx: ssl.SSLContext, server_hostname: str) -> ssl.SSLSocket:
        assert self.sock is not None
        if self.buffer:
            raise ConnectionError("the server sent data before the TLS handshake")
        # Python's do_handshake takes the socket's timeout as one deadline for the whole
        # handshake (not per read), so a server dribbling its records cannot stretch it
        self.sock.settimeout(self._left())
        tls = ctx.wrap_socket(self.sock, server_hostname=server_hostname, do_handshake_on_connect=False)
        self.sock = tls  # the wrapped socket owns the descriptor now
        tls.do_handshake()
        return tls

    def close(self) -> None:
        # no close_notify: everything needed is read, and a shutdown exchange would hold the slot
        # for another round trip (and wait on servers that never answer it)
        if self.sock is not None:
            self.sock.close()


def _read_smtp_reply(conn: _Conn) -> tuple[int, list[str]]:
    lines: list[str] = []
    for _ in range(_SMTP_LINE_LIMIT):
        line = conn.recv_line().decode("latin-1").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            code = int(line[:3]) if line[:3].isdigit() else 0
            return code, lines
    raise ConnectionError("SMTP reply too long")


def _starttls_smtp(conn: _Conn) -> None:
    code, lines = _read_smtp_reply(conn)
    if code != 220:
        raise ConnectionError(f"SMTP greeting was {lines[-1]!r}, expected 220")
    conn.send(b"EHLO drillbook.invalid\r\n")
    code, lines = _read_smtp_reply(conn)
    if code != 250:
        raise ConnectionError(f"SMTP EHLO answered {lines[-1]!r}")
    if not any(line[4:].upper().startswith("STARTTLS") for line in lines):
        raise ConnectionError("SMTP server does not offer STARTTLS")
    conn.send(b"STARTTLS\r\n")
    code, lines = _read_smtp_reply(conn)
    if code != 220:
        raise ConnectionError(f"SMTP STARTTLS answered {lines[-1]!r}")


def _starttls_postgres(conn: _Conn) -> None:
    conn.send(_PG_SSL_REQUEST)
    answer = conn.recv_exact(1)
    if answer != b"S":
        raise ConnectionError(f"PostgreSQL answered {answer!r} to SSLRequest: the server does not accept SSL")


_STARTTLS = {"smtp": _starttls_smtp, "postgres": _starttls_postgres}
