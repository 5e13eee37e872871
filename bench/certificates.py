"""Benchmark: the certificates drill over N TLS endpoints on loopback vs the ssl-cert-check way.

    .venv/bin/python bench/certificates.py [--endpoints 300] [--concurrency 100] [--rounds 3]

Starts N TLS listeners (a distinct RSA-2048 leaf each + intermediate, a private root) in a
separate server process, then in this one process times:
  1. the drill: ``check_endpoints`` over all N (probe, chain verification, judging);
  2. the baseline: a sequential loop of ``openssl s_client`` piped into
     ``openssl x509 -checkend`` per endpoint — what ssl-cert-check does
     (minus its date arithmetic, which only favours the baseline).
``--rounds`` times each side that many times, alternating (drill, loop, drill, loop, ...), and
reports each side's median: on a shared 2-core machine one wall-clock sample of either side
swings +-15% with what else runs. Every drill round starts cold: the drill's caches (parsed
certificates, facts, trust stores) are cleared first, so each round is a first run in a fresh
process but for Python's imports. Prints both times, the ratio and the drill's peak RSS.
Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]


def serve(n: int, directory: Path) -> None:
    """Server process: N TLS listeners; prints their ports, serves until stdin closes.

    One selector thread accepts on all N sockets and hands each connection to a
    small thread pool that does the blocking handshake (OpenSSL releases the GIL),
    which costs far less CPU per handshake than an asyncio TLS server: on this
    2-core machine the servers share the CPUs with the drill they are measured by,
    while real endpoints spend their CPU elsewhere.
    """
    import selectors
    import socket
    import threading
    from concurrent.futures import ThreadPoolExecutor

    contexts = {}
    selector = selectors.DefaultSelector()
    ports = []
    for i in range(n):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(directory / f"leaf{i}.pem", directory / "leaf.key")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        contexts[sock.fileno()] = ctx
        ports.append(sock.getsockname()[1])
    pool = ThreadPoolExecutor(max_workers=16)
    stop = threading.Event()

    def handshake(conn: socket.socket, ctx: ssl.SSLContext) -> None:
        conn.setblocking(True)
        conn.settimeout(30)
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except OSError:
            conn.close()

    def accept_loop() -> None:
        while not stop.is_set():
            for key, _ in selector.select(timeout=0.2):
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                pool.submit(handshake, conn, contexts[key.fileobj.fileno()])  # type: ignore[union-attr]

    threading.Thread(target=accept_loop, daemon=True).start()
    print(json.dumps(ports), flush=True)
    for _ in sys.stdin:  # each line asks for the CPU used so far; EOF (the parent closes stdin) stops us
        print(json.dumps({"cpu": time.process_time()}), flush=True)
    stop.set()


def make_pki(directory: Path, n: int, key_type: str = "rsa") -> None:
    """A private root and intermediate, and a distinct leaf per endpoint (one shared leaf key: RSA keygen is slow)."""
    from tests.certificates.pki import ec_key, make_ca, make_leaf, rsa_key

    root = make_ca("bench root")
    inter = make_ca("bench intermediate", issuer=root)
    key = ec_key() if key_type == "ec" else rsa_key()
    for i in range(n):
        make_leaf(inter, key=key, cn=f"endpoint-{i}.bench").write(directory, f"leaf{i}")
    (directory / "leaf0.key").rename(directory / "leaf.key")
    for i in range(1, n):
        (directory / f"leaf{i}.key").unlink()
    (directory / "root.pem").write_bytes(root.pem)


def baseline(ports: list[int], directory: Path) -> tuple[float, int, float]:
    """The sequential ssl-cert-check loop; returns (seconds, endpoints judged not expiring, CPU seconds of its processes)."""
    ok = 0
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for port in ports:
        cmd = (
            f"openssl s_client -connect 127.0.0.1:{port} -servername localhost -CAfile {directory}/root.pem "
            f"</dev/null 2>/dev/null | openssl x509 -noout -checkend 2592000 >/dev/null"
        )
        if subprocess.run(cmd, shell=True, timeout=30).returncode == 0:
            ok += 1
    seconds = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return seconds, ok, cpu


def drill_run(ports: list[int], directory: Path, concurrency: int) -> tuple[float, float, list]:
    """The drill over every port: (wall seconds, CPU seconds of this process, results).

    Both clocks start after the catalogue model is built (validating its schedule
    imports croniter, ~35 ms of CPU that is configuration, not the drill).
    """
    from drillbook.drills.certificates import check_endpoints
    from drillbook.drills.certificates.catalogue import CertificatesDrill, EndpointSpec

    drill = CertificatesDrill(
        name="bench",
        kind="certificates",
        schedule="@daily",
        timeout=10,
        concurrency=concurrency,
        ca_bundle=str(directory / "root.pem"),
        endpoints=[EndpointSpec(address=f"127.0.0.1:{p}", sni="localhost") for p in ports],
    )
    start, cpu = time.perf_counter(), time.process_time()
    results = check_endpoints(drill)
    return time.perf_counter() - start, time.process_time() - cpu, results


def bare_handshakes(ports: list[int], directory: Path, concurrency: int) -> tuple[float, float]:
    """The floor under any TLS probe here: blocking connect + handshake + close per port, ``concurrency`` at once.

    The drill's own verifying context (its trust store built beforehand), in threads (OpenSSL
    releases the GIL for the handshake), no deadline, no chain kept, no judging, no result:
    (wall seconds, CPU seconds).
    """
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from drillbook.drills.certificates.verify import trust_store

    ctx = trust_store(str(directory / "root.pem")).handshake_context

    def handshake(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            ctx.wrap_socket(sock, server_hostname="localhost").close()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(handshake, ports[:concurrency]))  # start the threads outside the clocks
        start, cpu = time.perf_counter(), time.process_time()
        list(pool.map(handshake, ports))
        return time.perf_counter() - start, time.process_time() - cpu


def cold_caches() -> None:
    """Forget everything a previous drill round cached, so each round does a first run's work."""
    import gc

    from drillbook.drills.certificates import tls_connection, verify, x509facts

    for cached in (
        x509facts.load_der,
        x509facts.facts_of_der,
        verify._bundle,
        verify._system,
        verify._store_of,
    ):
        cached.cache_clear()
    tls_connection._literal_family.cache_clear()
    gc.collect()


def server_cpu(server: subprocess.Popen) -> float:
    """CPU seconds the TLS server process has used so far."""
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write("cpu\n")
    server.stdin.flush()
    return float(json.loads(server.stdout.readline())["cpu"])


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of each side, alternating; the medians are reported (default 3)",
    )
    parser.add_argument(
        "--key",
        choices=["rsa", "ec"],
        default="rsa",
        help="leaf key: RSA-2048 (default) or ECDSA P-256 (certbot's default since 2.0)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time bare blocking handshakes (no deadline, no judging) each round: the ceiling of the ratio",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, Path(args.dir))
        return 0

    directory = Path(tempfile.mkdtemp(prefix="drillbook-bench-certs-"))
    make_pki(directory, args.endpoints, args.key)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(args.endpoints), "--dir", str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ports = json.loads(server.stdout.readline())
        # import everything the drill needs first, so the timing is the drill and not Python's imports
        # (its submodules too: they import lazily, ~40 ms of the first run otherwise).
        # Loading the trust store stays inside the timing: that is the drill's own work.
        # The two below were imported inside the first run otherwise (~15 ms): cryptography's
        # serialization module (x509facts and verify import it in their functions) and the IDNA
        # codec that ssl encodes every SNI with.
        import encodings.idna  # noqa: F401

        import cryptography.hazmat.primitives.serialization
        import cryptography.x509.verification  # noqa: F401

        import drillbook.drills.certificates
        import drillbook.drills.certificates.endpoints
        import drillbook.drills.certificates.files
        import drillbook.drills.certificates.probe
        import drillbook.drills.certificates.tls_connection
        import drillbook.drills.certificates.verify
        import drillbook.drills.certificates.x509facts  # noqa: F401

        rss_before = rss_mb()
        drills: list[tuple[float, float, float]] = []  # (wall, CPU, TLS server CPU) per round
        bases: list[tuple[float, int, float]] = []
        floors: list[tuple[float, float]] = []
        verdicts: dict[str, int] = {}
        for _ in range(max(1, args.rounds)):
            cold_caches()
            server_cpu_before = server_cpu(server)  # loading 300 certificates and keys is not serving them
            seconds, cpu, results = drill_run(ports, directory, args.concurrency)
            if not drills:  # the drill's peak: the floor's 100 threads come later and would count
                rss_after = rss_mb()
            drills.append((seconds, cpu, server_cpu(server) - server_cpu_before))
            for r in results:
                verdicts[r.verdict.value] = verdicts.get(r.verdict.value, 0) + 1
            probe = sorted(r.measurements.phase_seconds.get("probe", 0.0) for r in results)
            bases.append(baseline(ports, directory))
            if args.floor:
                floors.append(bare_handshakes(ports, directory, args.concurrency))
        drill_seconds, drill_cpu, served_cpu = (statistics.median(d[i] for d in drills) for i in range(3))
        base_seconds, base_cpu = (statistics.median(b[i] for b in bases) for i in (0, 2))
        base_ok = min(b[1] for b in bases)
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)  # 300 certificates per run were left in /tmp

    key = "RSA-2048" if args.key == "rsa" else "ECDSA P-256"
    rounds = len(drills)
    each = "medians of " + (f"{rounds} alternating rounds" if rounds > 1 else "1 round")
    print(
        f"endpoints               {len(ports)} TLS listeners on 127.0.0.1 (a distinct {key} leaf each + intermediate), {os.cpu_count()} CPUs"
    )
    print(
        f"drill                   {drill_seconds:7.2f} s   verdicts {verdicts} (all rounds)   concurrency {args.concurrency}   ({each})"
    )
    print(
        f"  CPU                   drill process {drill_cpu:.2f} s, TLS server process {served_cpu:.2f} s while serving the drill "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(
        f"  per-endpoint probe    p50 {probe[len(probe) // 2] * 1000:.0f} ms, max {probe[-1] * 1000:.0f} ms (last round; includes waiting for the server)"
    )
    print(
        f"baseline (sequential)   {base_seconds:7.2f} s   openssl s_client | openssl x509 -checkend, {base_ok} ok, "
        f"{base_cpu:.2f} s CPU in its processes"
    )
    if floors:
        floor_seconds, floor_cpu = (statistics.median(f[i] for f in floors) for i in (0, 1))
        print(
            f"floor (--floor)         {floor_seconds:7.2f} s   bare handshakes in {args.concurrency} threads, no judging, "
            f"{floor_cpu:.2f} s CPU: any probe's ceiling here is {base_seconds / floor_seconds:.1f}x"
        )
    if rounds > 1:
        print(
            "rounds (drill / loop)   "
            + ", ".join(
                f"{d[0]:.2f}/{b[0]:.1f} s {b[0] / d[0]:.1f}x" for d, b in zip(drills, bases, strict=True)
            )
        )
    print(
        f"ratio                   {base_seconds / drill_seconds:7.1f}x faster (wall clock, median / median); "
        f"{base_cpu / drill_cpu:.1f}x less CPU"
    )
    print(
        f"peak RSS                {rss_after:7.1f} MB after the first drill round (before it: {rss_before:.1f} MB after imports)"
    )
    target = drill_seconds < 5 and base_seconds / drill_seconds >= 20
    print(f"target (< 5 s, >= 20x)  {'met' if target else 'NOT met'}")
    return 0 if verdicts.get("PASS") == len(ports) * rounds else 1


if __name__ == "__main__":
    sys.exit(main())
