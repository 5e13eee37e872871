"""Reach an endpoint and bring it to a TLS handshake: the socket, STARTTLS for SMTP and PostgreSQL.

Rules this module enforces:
- a connection is a non-blocking socket driven by the event loop, with OpenSSL
  on the socket itself, not asyncio's SSL transport (see ``_Conn``): the
  handshake is the probe's per-endpoint hot path;
- STARTTLS reads a bounded reply (at most ``_SMTP_LINE_LIMIT`` lines of
  ``_MAX_LINE`` bytes) and refuses a server that sends data before the TLS
  handshake; every failure is a ``ConnectionError`` or ``OSError`` the probe
  classifies (probe.py);
- no close_notify: a connection is closed as soon as everything needed is read.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import struct
from typing import Any

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


class _Conn:
    """A non-blocking socket driven by the event loop; TLS is OpenSSL on the socket itself.

    Not asyncio's SSL transport: its memory-BIO state machine costs about a
    millisecond of Python per handshake, which at hundreds of endpoints is most
    of the drill's CPU. Here a handshake is a few ``do_handshake`` calls woken
    by readiness callbacks.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.sock: socket.socket | None = None
        self.tls: ssl.SSLSocket | None = None
        self.buffer = b""

    async def connect(self, host: str, port: int) -> None:
        family = _literal_family(host)
        if family is not None:
            infos: list[tuple[Any, Any]] = [(family, (host, port))]
        else:
            resolved = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            infos = [(family, addr) for family, _, _, _, addr in resolved]
        error: Exception = OSError(f"no address for {host!r}")
        for family, addr in infos:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await self.loop.sock_connect(sock, addr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            self.sock = sock
            return
        raise error

    async def _ready(self, *, write: bool) -> None:
        assert self.sock is not None
        fd = self.sock.fileno()
        future = self.loop.create_future()
        add, remove = (
            (self.loop.add_writer, self.loop.remove_writer)
            if write
            else (self.loop.add_reader, self.loop.remove_reader)
        )

        def wake() -> None:
            if not future.done():  # readiness can fire again before this coroutine resumes
                future.set_result(None)

        add(fd, wake)
        try:
            await future
        finally:
            remove(fd)

    async def send(self, data: bytes) -> None:
        assert self.sock is not None
        await self.loop.sock_sendall(self.sock, data)

    async def recv_line(self) -> bytes:
        assert self.sock is not None
        while b"\n" not in self.buffer:
            if len(self.buffer) > _MAX_LINE:
                raise ConnectionError("line too long")
            chunk = await self.loop.sock_recv(self.sock, 4096)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    async def recv_exact(self, n: int) -> bytes:
        assert self.sock is not None
        while len(self.buffer) < n:
            chunk = await self.loop.sock_recv(self.sock, n - len(self.buffer))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    async def handshake(self, ctx: ssl.SSLContext, server_hostname: str) -> ssl.SSLSocket:
        assert self.sock is not None
        if self.buffer:
            raise ConnectionError("the server sent data before the TLS handshake")
        self.tls = ctx.wrap_socket(self.sock, server_hostname=server_hostname, do_handshake_on_connect=False)
        self.sock = self.tls  # readiness is waited on the same file descriptor
        while True:
            try:
                self.tls.do_handshake()
                return self.tls
            except ssl.SSLWantReadError:
                await self._ready(write=False)
            except ssl.SSLWantWriteError:
                await self._ready(write=True)

    def close(self) -> None:
        # no close_notify: everything needed is read, and a shutdown exchange would hold the slot
        # for another round trip (and wait on servers that never answer it)
        if self.sock is not None:
            self.sock.close()


async def _read_smtp_reply(conn: _Conn) -> tuple[int, list[str]]:
    lines: list[str] = []
    for _ in range(_SMTP_LINE_LIMIT):
        line = (await conn.recv_line()).decode("latin-1").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            code = int(line[:3]) if line[:3].isdigit() else 0
            return code, lines
    raise ConnectionError("SMTP reply too long")


async def _starttls_smtp(conn: _Conn) -> None:
    code, lines = await _read_smtp_reply(conn)
    if code != 220:
        raise ConnectionError(f"SMTP greeting was {lines[-1]!r}, expected 220")
    await conn.send(b"EHLO drillbook.invalid\r\n")
    code, lines = await _read_smtp_reply(conn)
    if code != 250:
        raise ConnectionError(f"SMTP EHLO answered {lines[-1]!r}")
    if not any(line[4:].upper().startswith("STARTTLS") for line in lines):
        raise ConnectionError("SMTP server does not offer STARTTLS")
    await conn.send(b"STARTTLS\r\n")
    code, lines = await _read_smtp_reply(conn)
    if code != 220:
        raise ConnectionError(f"SMTP STARTTLS answered {lines[-1]!r}")


async def _starttls_postgres(conn: _Conn) -> None:
    await conn.send(_PG_SSL_REQUEST)
    answer = await conn.recv_exact(1)
    if answer != b"S":
        raise ConnectionError(f"PostgreSQL answered {answer!r} to SSLRequest: the server does not accept SSL")


_STARTTLS = {"smtp": _starttls_smtp, "postgres": _starttls_postgres}
