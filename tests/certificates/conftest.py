"""Real TLS servers on 127.0.0.1 serving certificates made by tests/certificates/pki.py.

Each server runs in daemon threads (one per connection, so a slow handshake
never blocks another client) and can speak plain TLS, SMTP STARTTLS or
PostgreSQL's SSLRequest, or accept TCP and then say nothing.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.certificates.pki import Issued, make_ca


@dataclass
class Pki:
    root: Issued
    inter: Issued
    directory: Path
    bundle: Path  # the root only: what a client of this private CA configures

    def write(
        self, issued: Issued, name: str, *, with_chain: bool = True, with_root: bool = False
    ) -> tuple[Path, Path]:
        return issued.write(self.directory, name, with_chain=with_chain, with_root=with_root)

    def bundle_of(self, name: str, *certs: Issued) -> Path:
        path = self.directory / f"{name}-bundle.pem"
        path.write_bytes(b"".join(c.pem for c in certs))
        return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    root = make_ca("drillbook test root")
    inter = make_ca("drillbook test intermediate", issuer=root)
    bundle = directory / "root-bundle.pem"
    bundle.write_bytes(root.pem)
    return Pki(root=root, inter=inter, directory=directory, bundle=bundle)


@dataclass
class TlsServer:
    """One listening socket on 127.0.0.1 and the threads serving it."""

    sock: socket.socket
    context: ssl.SSLContext | None
    mode: str  # "tls" | "smtp" | "postgres" | "silent"
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def start(self) -> TlsServer:
        if self.mode != "silent":  # a silent server never accepts: the kernel completes TCP, nobody speaks
            threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def _accept_loop(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if self.mode == "smtp":
                f = conn.makefile("rb")
                conn.sendall(b"220 mail.test ESMTP ready\r\n")
                f.readline()  # EHLO
                conn.sendall(b"250-mail.test\r\n250-SIZE 1000000\r\n250 STARTTLS\r\n")
                f.readline()  # STARTTLS
                conn.sendall(b"220 go ahead\r\n")
            elif self.mode == "postgres":
                request = conn.recv(8)
                assert len(request) == 8, request
                conn.sendall(b"S")
            assert self.context is not None
            tls = self.context.wrap_socket(conn, server_side=True)
            with contextlib.suppress(OSError):
                tls.recv(1)  # until the client closes
            tls.close()
        except Exception as exc:  # a failing handshake is expected for some cases; keep it for debugging
            self.errors.append(f"{type(exc).__name__}: {exc}")
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def serve(pki: Pki) -> Iterator:
    """``serve(issued, *, with_chain=True, with_root=False, mode="tls", seclevel0=False, max_tls=None) -> TlsServer``."""
    servers: list[TlsServer] = []
    counter = iter(range(10_000))

    def start(
        issued: Issued | None = None,
        *,
        with_chain: bool = True,
        with_root: bool = False,
        mode: str = "tls",
        seclevel0: bool = False,
        max_tls: ssl.TLSVersion | None = None,
    ) -> TlsServer:
        context = None
        if issued is not None:
            cert, key = pki.write(issued, f"srv{next(counter)}", with_chain=with_chain, with_root=with_root)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            if seclevel0 or max_tls is not None:
                context.set_ciphers("DEFAULT:@SECLEVEL=0")
            if max_tls is not None:
                context.minimum_version = ssl.TLSVersion.TLSv1
                context.maximum_version = max_tls
            context.load_cert_chain(cert, key)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        server = TlsServer(sock=sock, context=context, mode=mode).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def refused_address() -> str:
    """An address on 127.0.0.1 where nothing listens."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"127.0.0.1:{port}"
