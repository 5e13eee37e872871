"""Verify a certificate chain offline exactly as OpenSSL does in a TLS client's handshake.

Rules this module enforces:
- the trust decision is OpenSSL's own ``X509_verify_cert`` from the libcrypto
  that Python's ``ssl`` module is linked to (found in the process's memory map
  after ``import ssl``; ``ctypes.util.find_library`` otherwise), with the
  ``ssl_server`` purpose and trust settings libssl applies to a server's chain
  and OpenSSL's default verify flags (as curl and ``openssl verify`` use them;
  not ``X509_STRICT``, which Python 3.13's default context adds and which
  refuses a leaf without an AKI that OpenSSL, Go and browsers accept). So a
  chain is untrusted here exactly when an OpenSSL client with the same roots
  would refuse it — not when a stricter profile (Web PKI extension rules)
  objects; profile rules are lints (``lints.py``);
- nothing is fetched: the store holds only the anchors given, the untrusted
  certificates are only the ones given, and the instant is the caller's;
- the key-size and signature-hash "security level" checks of libssl are *not*
  applied here: ``WEAK_KEY`` / ``WEAK_SIGNATURE`` report them, once and by name;
- when libcrypto cannot be loaded the verification cannot run: ``OpenSSLMissing``
  is raised (the drill turns it into an ERROR), never a guess.

Every OpenSSL object made here is freed here; pointers never leave this module.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from drillbook.errors import DrillbookError

_P = ctypes.c_void_p
_BYTES = ctypes.POINTER(ctypes.c_ubyte)
# ssl.VerifyFlags values are OpenSSL's X509_V_FLAG_* values; TRUSTED_FIRST is OpenSSL's (and curl's) default
_FLAGS = int(ssl.VERIFY_X509_TRUSTED_FIRST)
MAX_PARSED = 1024  # anchors and intermediates a store keeps parsed (a few kB each); beyond, each verification parses its own


class OpenSSLMissing(DrillbookError, RuntimeError):
    """libcrypto could not be loaded, so no chain can be verified."""


def _libcrypto_path() -> str | None:
    import _ssl  # noqa: F401  (loads the libcrypto Python's ssl uses, so the memory map shows which one)

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if "/libcrypto" in path and ".so" in path:
                    return path
    except OSError:  # no /proc (macOS, BSD): ask the linker
        pass
    return ctypes.util.find_library("crypto")


_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "d2i_X509": (_P, [_P, ctypes.POINTER(_BYTES), ctypes.c_long]),
    "i2d_X509": (ctypes.c_int, [_P, ctypes.POINTER(_BYTES)]),
    "X509_free": (None, [_P]),
    "X509_STORE_new": (_P, []),
    "X509_STORE_free": (None, [_P]),
    "X509_STORE_add_cert": (ctypes.c_int, [_P, _P]),
    "X509_STORE_CTX_new": (_P, []),
    "X509_STORE_CTX_free": (None, [_P]),
    "X509_STORE_CTX_init": (ctypes.c_int, [_P, _P, _P, _P]),
    "X509_STORE_CTX_set_default": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "X509_STORE_CTX_set_time": (None, [_P, ctypes.c_ulong, ctypes.c_long]),
    "X509_STORE_CTX_get0_param": (_P, [_P]),
    "X509_VERIFY_PARAM_set_flags": (ctypes.c_int, [_P, ctypes.c_ulong]),
    "X509_verify_cert": (ctypes.c_int, [_P]),
    "X509_STORE_CTX_get_error": (ctypes.c_int, [_P]),
    "X509_STORE_CTX_get_error_depth": (ctypes.c_int, [_P]),
    "X509_STORE_CTX_get_current_cert": (_P, [_P]),
    "X509_STORE_CTX_get0_chain": (_P, [_P]),
    "X509_verify_cert_error_string": (ctypes.c_char_p, [ctypes.c_long]),
    "OPENSSL_sk_new_null": (_P, []),
    "OPENSSL_sk_push": (ctypes.c_int, [_P, _P]),
    "OPENSSL_sk_free": (None, [_P]),
    "OPENSSL_sk_num": (ctypes.c_int, [_P]),
    "OPENSSL_sk_value": (_P, [_P, ctypes.c_int]),
}


@functools.lru_cache(maxsize=1)
def _lib() -> Any:
    path = _libcrypto_path()
    if not path:
        raise OpenSSLMissing("OpenSSL's libcrypto was not found, so certificate chains cannot be verified")
    try:
        lib = ctypes.CDLL(path)
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
    except (OSError, AttributeError) as exc:
        raise OpenSSLMissing(
            f"OpenSSL's libcrypto at {path!r} cannot be used ({exc}); certificate chains cannot be verified"
        ) from None
    return lib


def _load(lib: Any, der: bytes) -> int:
    buf = (ctypes.c_ubyte * len(der)).from_buffer_copy(der)
    ptr = ctypes.cast(buf, _BYTES)
    x509 = lib.d2i_X509(None, ctypes.byref(ptr), len(der))
    if not x509:
        raise ValueError("OpenSSL cannot parse a certificate that cryptography could")
    return int(x509)


def _der(lib: Any, x509: int) -> bytes:
    size = lib.i2d_X509(x509, None)
    if size <= 0:
        return b""
    buf = (ctypes.c_ubyte * size)()
    ptr = ctypes.cast(buf, _BYTES)
    lib.i2d_X509(x509, ctypes.byref(ptr))
    return bytes(buf)


@dataclass
class Outcome:
    """OpenSSL's answer: trusted, or the X509_V_ERR code, its text and the certificate it was about."""

    trusted: bool
    code: int = 0
    message: str = ""
    depth: int = -1
    at_der: bytes = b""  # the certificate the error is about (may be an anchor from the store)
    chain: list[bytes] = field(default_factory=list)  # the path OpenSSL built, leaf first, as DER


class AnchorStore:
    """An OpenSSL X509_STORE holding exactly the given anchors; shared by every verification of a run.

    OpenSSL's store is safe to share between threads (an SSL_CTX shares it between
    connections); only the per-verification context is private.
    """

    def __init__(self, anchors: list[tuple[bytes, bytes]]) -> None:
        """``anchors``: (subject name as DER, certificate as DER) of each trust anchor."""
        self._lib = _lib()
        # parsed certificates by DER, and their DER by address: OpenSSL 3 takes ~60-300 us to parse one,
        # and a fleet shares its intermediates; the path OpenSSL builds is read back by address
        self._parsed: dict[bytes, int] = {}
        self._der_of: dict[int, bytes] = {}
        self._store = int(self._lib.X509_STORE_new() or 0)
        if not self._store:
            raise MemoryError("X509_STORE_new failed")
        # anchors join the store when a chain names their subject as an issuer: parsing all ~150
        # system roots up front costs ~50 ms, and a run needs a handful
        self._pending: dict[bytes, list[bytes]] = {}
        for subject, der in anchors:
            self._pending.setdefault(subject, []).append(der)
        self._lock = threading.Lock()

    def _add_anchors(self, subjects: list[bytes] | None) -> None:
        """Put the anchors named ``subjects`` (``None``: all that are left) into the store."""
        with self._lock:
            for subject in list(self._pending) if subjects is None else subjects:
                for der in self._pending.pop(subject, []):
                    try:
                        x509 = self._x509(der, cap=False)
                    except ValueError:
                        continue  # an anchor OpenSSL cannot read is one no OpenSSL client trusts either
                    self._lib.X509_STORE_add_cert(self._store, x509)  # the store keeps the same object

    def _x509(self, der: bytes, *, cap: bool = True) -> int:
        """The parsed certificate for ``der``, owned by this store (parsed once; up to ``MAX_PARSED`` when capped)."""
        x509 = self._parsed.get(der)
        if x509 is not None:
            return x509
        if cap and len(self._parsed) >= MAX_PARSED:
            raise OverflowError  # the caller parses a private copy instead
        x509 = _load(self._lib, der)
        kept = self._parsed.setdefault(der, x509)
        if kept != x509:  # another thread parsed it first
            self._lib.X509_free(x509)
        self._der_of[kept] = der
        return kept

    def __del__(self) -> None:
        store, self._store = getattr(self, "_store", 0), 0
        if store:
            self._lib.X509_STORE_free(store)
        for x509 in getattr(self, "_parsed", {}).values():
            self._lib.X509_free(x509)
        self._parsed = {}

    def verify(
        self, leaf_der: bytes, untrusted_der: list[bytes], *, at: datetime, issuers: list[bytes]
    ) -> Outcome:
        """OpenSSL's verdict on ``leaf_der`` with ``untrusted_der`` as the sent intermediates, at instant ``at``.

        ``issuers``: the issuer names (DER) of those certificates, so the anchors they name join the
        store first; a refusal is confirmed with every anchor in the store, so the verdict is the
        one the full store gives.
        """
        self._add_anchors(issuers)
        outcome = self._verify(leaf_der, untrusted_der, at=at)
        if not outcome.trusted and self._pending:
            self._add_anchors(None)
            outcome = self._verify(leaf_der, untrusted_der, at=at)
        return outcome

    def _verify(self, leaf_der: bytes, untrusted_der: list[bytes], *, at: datetime) -> Outcome:
        lib = self._lib
        # leaves are private copies (each endpoint has its own: caching them would only grow),
        # intermediates are shared through the store's cache
        owned: dict[int, bytes] = {}

        def private(der: bytes) -> int:
            x509 = _load(lib, der)
            owned[x509] = der
            return x509

        def parsed(der: bytes) -> int:
            try:
                return self._x509(der)
            except OverflowError:
                return private(der)

        def der_of(x509: int) -> bytes:
            return owned.get(x509) or self._der_of.get(x509) or _der(lib, x509)

        stack = ctx = 0
        try:
            leaf = private(leaf_der)
            stack = int(lib.OPENSSL_sk_new_null() or 0)
            for der in untrusted_der:
                lib.OPENSSL_sk_push(stack, parsed(der))
            ctx = int(lib.X509_STORE_CTX_new() or 0)
            if not ctx or not stack or lib.X509_STORE_CTX_init(ctx, self._store, leaf, stack) != 1:
                raise MemoryError("X509_STORE_CTX_init failed")
            lib.X509_STORE_CTX_set_default(ctx, b"ssl_server")  # what libssl sets for a server's chain
            param = lib.X509_STORE_CTX_get0_param(ctx)
            lib.X509_VERIFY_PARAM_set_flags(param, _FLAGS)
            lib.X509_STORE_CTX_set_time(ctx, 0, int(at.timestamp()))
            ok = lib.X509_verify_cert(ctx) == 1
            chain_stack = lib.X509_STORE_CTX_get0_chain(ctx)
            path = (
                [int(lib.OPENSSL_sk_value(chain_stack, i)) for i in range(lib.OPENSSL_sk_num(chain_stack))]
                if chain_stack
                else []
            )
            chain = [der_of(x) for x in path]
            if ok:
                return Outcome(trusted=True, chain=chain)
            code = int(lib.X509_STORE_CTX_get_error(ctx))
            current = int(lib.X509_STORE_CTX_get_current_cert(ctx) or 0)
            text = lib.X509_verify_cert_error_string(code) or b"unknown error"
            return Outcome(
                trusted=False,
                code=code,
                message=text.decode("utf-8", "replace"),
                depth=int(lib.X509_STORE_CTX_get_error_depth(ctx)),
                at_der=der_of(current) if current else b"",
                chain=chain,
            )
        finally:
            if ctx:
                lib.X509_STORE_CTX_free(ctx)
            if stack:
                lib.OPENSSL_sk_free(stack)
            for x509 in owned:
                lib.X509_free(x509)
