"""Run docker-compose.yaml's Airflow services natively: same commands, same environment, loopback instead of containers.

Rules this module enforces:
- every command and variable comes from the compose file (``composefile``),
  interpolated from an .env mapping; the only native changes are named in
  ``NativeStack.replacements`` (service hosts -> 127.0.0.1, the api-server's port
  -> a free one, ``/opt/airflow`` -> a directory laid out like the image's) and
  ``native_extras`` (free ports for the log and health servers, which
  containers would not share, and the container's hostname, which Docker gives
  each container and the TI ``hostname`` reports);
- each service runs in its own process group, tagged with a per-stack marker in
  its environment; ``stop`` ends every group (TERM, then KILL after a bound) and
  ``leftovers`` finds any process still carrying the marker;
- everything is bounded: init, readiness and every wait have a timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.deploy import composefile

REPO = composefile.REPO
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
HOSTNAME_MODULE = '''"""The container's hostname (Docker sets HOSTNAME per container); used as [core] hostname_callable."""
import os


def hostname():
    return os.environ["HOSTNAME"]
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NativeStack:
    """The compose file's Airflow services on this machine; use as a context manager."""

    def __init__(self, root: Path, dotenv: Mapping[str, str], *, workers: int = 1, var: Path | None = None):
        self.root = root
        self.dotenv = dict(dotenv)
        self.workers = workers
        self.marker = uuid.uuid4().hex
        self.api_port = free_port()
        self.compose = composefile.interpolate_tree(composefile.load(), self.dotenv)
        self.services = self.compose["services"]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.opt = root / "opt-airflow"
        self.var = var or (self.opt / "var")
        self.replacements = {
            "/opt/airflow": str(self.opt),
            "@postgres/": "@127.0.0.1/",
            "@drillbook-db:5432/": "@127.0.0.1:5432/",
            "redis:6379": "127.0.0.1:6379",
            "airflow-apiserver:8080": f"127.0.0.1:{self.api_port}",
        }

    # --- layout and environment -------------------------------------------------------------
    def lay_out(self) -> None:
        """/opt/airflow as the image and the compose mounts make it: dags, plugins, include, config, logs, var."""
        self.opt.mkdir(parents=True, exist_ok=True)
        (self.opt / "dags").symlink_to(REPO / "dags")
        (self.opt / "plugins").symlink_to(REPO / "plugins")
        # a copy, so the catalogue's ../var paths land in this stack's var/, not the repository's
        shutil.copytree(REPO / "include", self.opt / "include")
        (self.opt / "config").mkdir()
        (self.opt / "logs").mkdir()
        if not (self.opt / "var").exists():
            (self.opt / "var").symlink_to(self.var)
        (self.root / "hostmod").mkdir(exist_ok=True)
        (self.root / "hostmod" / "container_hostname.py").write_text(HOSTNAME_MODULE)

    def native_extras(self, service: str) -> dict[str, str]:
        return {
            "AIRFLOW_HOME": str(self.opt),  # the image's AIRFLOW_HOME
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "container_hostname.hostname",
            "HOSTNAME": service,
            "PYTHONPATH": str(self.root / "hostmod"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "DRILLBOOK_E2E_STACK": self.marker,
        }

    def env_of(self, service: str, *, like: str | None = None) -> dict[str, str]:
        raw = composefile.environment(self.services[like or service])
        env = {k: composefile.rewrite(v, self.replacements) for k, v in raw.items()}
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "DRILLBOOK_", "PYTEST"))}
        return {**base, **env, **self.native_extras(service)}

    def argv_of(self, service: str) -> list[str]:
        return [composefile.rewrite(a, self.replacements) for a in composefile.argv(self.services[service])]

    # --- lifecycle -------------------------------------------------------------------------
    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.log(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def init(self, timeout: float = 420) -> None:
        """airflow-init's own command: migrate, admin password, validate the catalogue, create the ledger."""
        with self.log("airflow-init").open("w") as out:
            done = subprocess.run(
                self.argv_of("airflow-init"),
                env=self.env_of("airflow-init"),
                cwd=self.opt,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        assert done.returncode == 0, f"airflow-init failed ({done.returncode}):\n{self.tail('airflow-init')}"

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        out = self.log(name).open("w")
        self.procs[name] = subprocess.Popen(
            argv, env=env, cwd=self.opt, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()

    def start(self) -> None:
        for service in AIRFLOW_SERVICES:
            self.spawn(service, self.argv_of(service), self.env_of(service))
        for n in range(1, self.workers + 1):
            name = "airflow-worker" if n == 1 else f"airflow-worker-{n}"
            argv = self.argv_of("airflow-worker")
            if n > 1:  # `docker compose up --scale airflow-worker=N` gives each its own host and pid file
                argv += ["--celery-hostname", f"{name}@%h", "--pid", str(self.root / f"{name}.pid")]
            self.spawn(name, argv, self.env_of(name, like="airflow-worker"))

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.tail(name)}"

    def stop(self, timeout: float = 60) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for pid in self.leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def leftovers(self) -> list[int]:
        """Processes still running with this stack's marker in their environment (zombies excluded)."""
        import psutil

        found = []
        for proc in psutil.process_iter(["pid", "status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get("DRILLBOOK_E2E_STACK") == self.marker:
                    found.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def __enter__(self) -> NativeStack:
        self.lay_out()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
