"""``drillbook run certificates`` as a user runs it: a real process against real TLS servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.certificates.pki import DAY, make_leaf, now

REPO = Path(__file__).resolve().parents[2]


def drillbook(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "plugins"), **(env or {})}
    full_env.pop("DRILLBOOK_LEDGER_DSN", None)
    script = Path(sys.executable).parent / "drillbook"
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=120, env=full_env, cwd=REPO
    )


def test_adhoc_exit_codes_and_json(pki, serve, refused_address, tmp_path):
    good = serve(make_leaf(pki.inter))
    t = now()
    expired = serve(make_leaf(pki.inter, not_before=t - 100 * DAY, not_after=t - DAY))

    ok = drillbook(
        "run",
        "certificates",
        "--endpoint",
        good.address,
        "--sni",
        "localhost",
        "--ca-bundle",
        str(pki.bundle),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS" in ok.stdout

    bad = drillbook(
        "run",
        "certificates",
        "--endpoint",
        good.address,
        "--endpoint",
        expired.address,
        "--sni",
        "localhost",
        "--ca-bundle",
        str(pki.bundle),
        "--json",
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    payload = json.loads(bad.stdout)
    assert [r["verdict"] for r in payload] == ["PASS", "FAIL"]
    assert [f["code"] for f in payload[1]["findings"]] == ["CERT_EXPIRED"]

    dead = drillbook("run", "certificates", "--endpoint", refused_address, "--timeout", "2s")
    assert dead.returncode == 2, dead.stdout + dead.stderr
    assert "ENDPOINT_UNREACHABLE" in dead.stdout

    cert_file, _ = pki.write(make_leaf(pki.inter), "cli-file", with_chain=False)
    files = drillbook("run", "certificates", "--file", str(cert_file))
    assert files.returncode == 0, files.stdout + files.stderr


def test_catalogue_drill(pki, serve, tmp_path):
    good = serve(make_leaf(pki.inter))
    catalogue = tmp_path / "drills.yaml"
    catalogue.write_text(
        "version: 1\ndrills:\n"
        "  - name: edge\n    kind: certificates\n    schedule: '@daily'\n"
        f"    ca_bundle: {pki.bundle}\n    timeout: 5s\n"
        f"    endpoints:\n      - address: {good.address}\n        sni: localhost\n"
    )
    ok = drillbook("run", "certificates", "--drill", "edge", "--catalogue", str(catalogue))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    both = drillbook(
        "run", "certificates", "--drill", "edge", "--endpoint", good.address, "--catalogue", str(catalogue)
    )
    assert both.returncode == 2 and "not both" in both.stderr
    nothing = drillbook("run", "certificates")
    assert nothing.returncode == 2 and "nothing to check" in nothing.stderr
