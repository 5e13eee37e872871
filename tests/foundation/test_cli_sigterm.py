"""SIGTERM to any `drillbook run ...` records an ERROR result before the process exits (issue 11, item 2).

`run backup-restore` had this; the other run commands died on the spot and left no row. Real parts: the
CLI as a child process, a TCP listener that accepts and never answers (the certificate check waits
on it), a real ledger; the signal is sent once the drill is inside its check.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from drillbook.ledger.store import Ledger

CLI = [sys.executable, "-m", "drillbook"]


def _silent_listener() -> tuple[socket.socket, threading.Event]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    accepted = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # never answers the TLS hello
            accepted.set()

    threading.Thread(target=serve, daemon=True).start()
    return server, accepted


def test_sigterm_to_run_certificates_records_an_interrupted_error(ledger_dsn, tmp_path):
    server, accepted = _silent_listener()
    port = server.getsockname()[1]
    env = {
        **os.environ,
        "DRILLBOOK_LEDGER_DSN": ledger_dsn,
        "DRILLBOOK_SPOOL": str(tmp_path / "spool.jsonl"),
        "DRILLBOOK_OUTBOX": str(tmp_path / "outbox.jsonl"),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [*CLI, "run", "certificates", "--endpoint", f"127.0.0.1:{port}", "--timeout", "60s", "--no-notify"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert accepted.wait(120), "the drill never connected"
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, out, err)
    assert time.monotonic() - started < 30
    assert "Traceback" not in err
    rows = [r for r in Ledger(ledger_dsn).query(kind="certificates") if r.record_type == "drill"]
    assert rows, f"no evidence row after SIGTERM:\n{out}\n{err}"
    assert all(r.verdict == "ERROR" for r in rows) and any("DRILL_INTERRUPTED" in r.codes for r in rows)
