"""``make up``: airflow standalone with drillbook's DAGs, started quietly and stopped cleanly.

Rules this module enforces:
- new DAGs stay paused (DAGS_ARE_PAUSED_AT_CREATION) until the API server
  answers; only then does ``make up`` unpause the DAGs it runs, so no task is
  queued before there is an API server to run it against;
- when ready it prints the UI URL, the admin login and the ledger DSN;
- SIGTERM and SIGINT stop the whole process group (TERM, then KILL after 60 s),
  and the demo's embedded PostgreSQL and webhook receiver with it;
- task slots follow the machine: ``parallelism()`` (two per core, 2..16), unless
  AIRFLOW__CORE__PARALLELISM is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from drillbook.settings import load_settings

AIRFLOW_PORT = load_settings().airflow_port


def say(text: str) -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say("")
    say(f"== {text}")


def write_admin_password(home: Path, password: str) -> None:
    """SimpleAuthManager reads the admin password from this file; written before Airflow starts."""
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps({"admin": password}))


def parallelism() -> int:
    """Task slots for this machine: two per core, at least 2, at most 16 (32 idle workers on 2 cores helped nobody)."""
    return max(2, min(16, 2 * (os.cpu_count() or 1)))


def wait_for_api(
    base: str, *, password: str, proc: subprocess.Popen[bytes], stop: list[bool], timeout: float = 600
) -> str | None:
    """A JWT from the api-server once it answers (None when it did not within ``timeout`` or we were stopped)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop and proc.poll() is None:
        try:
            resp = httpx.post(
                f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=5
            )
            if resp.status_code in (200, 201):
                return str(resp.json()["access_token"])
        except httpx.HTTPError:
            pass
        time.sleep(2)
    return None


def unpause_drillbook_dags(
    base: str, token: str, *, proc: subprocess.Popen[bytes], stop: list[bool], timeout: float = 300
) -> list[str]:
    """Unpause the DAGs ``make up`` runs (drillbook's, once the dag-processor has listed them); returns their ids.

    New DAGs start paused (DAGS_ARE_PAUSED_AT_CREATION): only after the API server
    answers are they unpaused, so the first scheduled runs find an API to talk to.
    """
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    from drillbook.airflow.factory import dag_id_for
    from drillbook.catalogue import load_catalogue
    from drillbook.catalogue.common import DEFAULT_CATALOGUE

    wanted = {dag_id_for(d.kind, d.name) for d in load_catalogue(DEFAULT_CATALOGUE).drills if d.enabled} | {
        "dr_watchdog"
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop and proc.poll() is None:
        try:
            listed = {
                d["dag_id"]
                for d in httpx.get(
                    f"{base}/api/v2/dags", params={"limit": 200}, headers=headers, timeout=10
                ).json()["dags"]
            }
            ours = sorted(d for d in listed if d.startswith("dr_"))
            if wanted <= listed:
                for dag_id in ours:
                    httpx.patch(
                        f"{base}/api/v2/dags/{dag_id}", json={"is_paused": False}, headers=headers, timeout=10
                    ).raise_for_status()
                return ours
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(3)
    return []


def demo_checkpoint_key(home: Path) -> str | None:
    """The demo's Ed25519 checkpoint key (made once, mode 0600, under git-ignored ``var/``) put in the environment
    Airflow inherits, so the digest signs checkpoints and the evidence pages' packs are signed; returns the public
    key (hex) to verify a downloaded pack with. A key the user set already is left alone (None)."""
    if os.environ.get("DRILLBOOK_CHECKPOINT_KEY"):
        return None
    from drillbook.ledger.checkpoint import generate_key_hex, load_private_key, public_hex

    path = home.parent / "demo" / "checkpoint.key"
    if path.is_file():
        seed = path.read_text().strip()
    else:
        seed, _ = generate_key_hex()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(seed + "\n")
    public = public_hex(load_private_key(seed, what=str(path)).public_key())
    os.environ["DRILLBOOK_CHECKPOINT_KEY"] = seed
    os.environ.setdefault("DRILLBOOK_CHECKPOINT_PUBLIC_KEY", public)
    return public


def start_airflow(ledger_dsn: str = "") -> int:
    """airflow standalone with drillbook's DAGs until SIGTERM or Ctrl-C; admin password written before start.

    Prints the UI URL and the ledger DSN once the API server answers, then unpauses
    the DAGs it runs. Stops the whole process group on SIGTERM/SIGINT.
    """
    import signal

    from drillbook.resources.pg import describe

    home = Path(os.environ["AIRFLOW_HOME"])
    password = load_settings().admin_password or "drillbook"
    write_admin_password(home, password)
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    public_key = demo_checkpoint_key(home)
    os.environ.setdefault("AIRFLOW__CORE__PARALLELISM", str(parallelism()))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "True")
    heading(
        f"starting Airflow (airflow standalone, parallelism {os.environ['AIRFLOW__CORE__PARALLELISM']}); "
        f"log: {home / 'standalone.log'}"
    )
    stop: list[bool] = []
    previous = {
        sig: signal.signal(sig, lambda *_: stop.append(True)) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    with (home / "standalone.log").open("ab") as log:
        proc = subprocess.Popen(
            ["airflow", "standalone"], start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://localhost:{AIRFLOW_PORT}"
        token = wait_for_api(base, password=password, proc=proc, stop=stop)
        if token:
            unpaused = unpause_drillbook_dags(base, token, proc=proc, stop=stop)
            heading(f"ready: Airflow UI {base} — log in as admin / {password}")
            dsn = load_settings().ledger_dsn or ledger_dsn
            say(
                f"   ledger ({describe(dsn)}): export DRILLBOOK_LEDGER_DSN='{dsn}'  # for `drillbook evidence ...`"
            )
            if public_key:
                say(
                    f"   demo checkpoint key in {home.parent / 'demo' / 'checkpoint.key'}: packs downloaded from the "
                    f"Evidence view verify with `drillbook evidence verify --pack FILE --public-key {public_key}`"
                )
            say(f"   unpaused {len(unpaused)} DAG(s); SIGTERM or Ctrl-C stops everything")
        while not stop and proc.poll() is None:
            time.sleep(1)
        return 0 if stop else (proc.returncode or 0)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        say("Airflow stopped")
