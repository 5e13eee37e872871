"""A small client of Airflow's REST API (``/api/v2``, JWT from ``/auth/token``) for driving a deployment from outside.

Rules this module enforces: every call has a timeout; every wait has a
deadline and says what it was waiting for when it gives up; the stack's
processes are checked while waiting, so a crashed service fails fast with its log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

TERMINAL = {"success", "failed"}


class AirflowApi:
    def __init__(
        self, base_url: str, *, username: str, password: str, alive: Callable[[], None] = lambda: None
    ):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.alive = alive
        self.client = httpx.Client(base_url=self.base_url, timeout=30)

    def wait_until(self, what: str, probe: Callable[[], Any], *, timeout: float, every: float = 3) -> Any:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            self.alive()
            try:
                value = probe()
                if value:
                    return value
            except (httpx.HTTPError, KeyError) as exc:
                last = exc
            time.sleep(every)
        raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what} (last error: {last!r})")

    def login(self, timeout: float = 300) -> None:
        def token() -> str:
            resp = self.client.post(
                "/auth/token", json={"username": self.username, "password": self.password}
            )
            resp.raise_for_status()
            return str(resp.json()["access_token"])

        self.client.headers["Authorization"] = (
            f"Bearer {self.wait_until('a login at /auth/token', token, timeout=timeout)}"
        )

    def get(self, path: str, **params: Any) -> Any:
        resp = self.client.get(f"/api/v2{path}", params=params)
        resp.raise_for_status()
        return resp.json()

    def dags(self) -> dict[str, dict[str, Any]]:
        return {d["dag_id"]: d for d in self.get("/dags", limit=100)["dags"]}

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.get("/importErrors")["import_errors"])

    def unpause(self, dag_id: str) -> None:
        self.client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def trigger(self, dag_id: str) -> str:
        resp = self.client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {}})
        resp.raise_for_status()
        return str(resp.json()["dag_run_id"])

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/dags/{dag_id}/dagRuns", limit=100)["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"])

    def wait_for_runs(
        self, dag_ids: Iterable[str], *, timeout: float, at_least: int = 1
    ) -> dict[str, list[dict[str, Any]]]:
        """Every run of ``dag_ids`` terminal (and at least ``at_least`` runs each)."""
        wanted = list(dag_ids)

        def done() -> dict[str, list[dict[str, Any]]] | None:
            runs = {d: self.runs(d) for d in wanted}
            if all(len(r) >= at_least and all(x["state"] in TERMINAL for x in r) for r in runs.values()):
                return runs
            return None

        return self.wait_until(f"every run of {wanted} to finish", done, timeout=timeout, every=5)

    def close(self) -> None:
        self.client.close()
