"""The evidence plugin inside a real ``airflow api-server``, and the pages driven in a real Chromium.

One api-server (SQLite metadata DB, SimpleAuthManager, a known admin password) serves the
module; the ``drillbook_ledger`` connection is a SELECT-only role on a seeded ledger.
Bounded: the server must answer within 180 s and its whole process group is stopped.
Browser tests need Debian's chromium and chromium-driver: with CI=true a missing browser
fails, elsewhere the tests skip saying how to install it. Screenshots go to
$DRILLBOOK_ARTEFACTS (default: the test's tmp dir) and are copied to docs/ with
DRILLBOOK_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.web.conftest import HOSTILE, Seeded, ledger_writer, seed_ledger

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "evidence-admin-pw"  # a throwaway test login
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str
    token: str
    seeded: Seeded
    public_key: str = (
        ""  # of the drillbook_checkpoint_key connection in Airflow: the downloaded pack is signed with it
    )


def get(url: str, *, token: str | None = None, cookie: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if cookie:
        req.add_header("Cookie", f"_token={cookie}")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def login(base: str) -> str:
    body = json.dumps({"username": "admin", "password": PASSWORD}).encode()
    req = urllib.request.Request(
        f"{base}/auth/token", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["access_token"]


@pytest.fixture(scope="module")
def server(pg, tmp_path_factory) -> Iterator[Server]:
    import yaml
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )
    from scripts.demo import airflow_environment, write_admin_password

    from drillbook.resources.pg import airflow_connection_json
    from tests.evidence.conftest import backup_drill

    home = tmp_path_factory.mktemp("airflow-evidence")
    port = free_port()
    drills = home / "drills.yaml"  # the catalogue the pack's population comes from
    drills.write_text(
        yaml.safe_dump(
            {
                "defaults": {"timezone": "UTC", "watchdog": {"grace": "1h"}},
                "drills": [backup_drill("orders_nightly")],
            }
        )
    )
    key = Ed25519PrivateKey.generate()
    private_hex = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
    public_hex = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    write_admin_password(home, PASSWORD)
    with seed_ledger(pg) as seeded, ledger_writer(pg, seeded) as writer:
        env = {
            **os.environ,
            **airflow_environment(home, port=port),
            "AIRFLOW__API_AUTH__JWT_SECRET": "evidence-test-jwt-secret-0123456789abcdef",
            "AIRFLOW_CONN_DRILLBOOK_LEDGER": airflow_connection_json(seeded.reader_dsn),
            # the verify button's outcome goes to the ledger through this INSERT role, never the reader
            "AIRFLOW_CONN_DRILLBOOK_LEDGER_WRITER": airflow_connection_json(writer),
            # this checkout's drillbook, not whichever one the environment has installed
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO / "plugins"), os.environ.get("PYTHONPATH")) if p
            ),
            "DRILLBOOK_CHECKPOINT_PATH": str(home / "checkpoints.jsonl"),
            "DRILLBOOK_CATALOGUE": str(drills),
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }
        for name in (
            "DRILLBOOK_LEDGER_DSN",
            "DRILLBOOK_CHECKPOINT_KEY",
            "AIRFLOW_CONN_DRILLBOOK_CHECKPOINT_KEY",
            "DRILLBOOK_CONN_DRILLBOOK_CHECKPOINT_KEY",
        ):
            env.pop(name, None)
        airflow = str(Path(sys.executable).parent / "airflow")
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180)
        # the signing key only in Airflow's metadata DB: the plugin finds it as the digest task does
        subprocess.run(
            [
                airflow,
                "connections",
                "add",
                "drillbook_checkpoint_key",
                "--conn-type",
                "generic",
                "--conn-password",
                private_hex,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        log = (home / "api-server.log").open("w")
        proc = subprocess.Popen(
            [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            token = None
            while time.monotonic() < deadline and token is None:
                assert proc.poll() is None, (home / "api-server.log").read_text()[-3000:]
                try:
                    token = login(base)
                except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
                    time.sleep(1)
            assert token, (
                "the api-server never answered a login: " + (home / "api-server.log").read_text()[-3000:]
            )
            yield Server(base, token, seeded, public_hex)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()


PAGES = (
    "/drillbook/history",
    "/drillbook/controls",
    "/drillbook/trends",
    "/drillbook/ledger",
    "/drillbook/api/history",
)


def test_plugin_is_loaded_with_a_navigation_entry(server):
    status, body = get(f"{server.base}/api/v2/plugins", token=server.token)
    assert status == 200
    plugin = next(p for p in json.loads(body)["plugins"] if p["name"] == "drillbook_evidence")
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/drillbook"
    assert plugin["external_views"][0]["href"] == "/drillbook/history"


@pytest.mark.parametrize("path", PAGES)
def test_pages_answer_401_without_a_session_and_200_with_one(server, path):
    assert get(server.base + path)[0] == 401
    assert get(server.base + path, cookie="not-a-jwt")[0] in (401, 403)
    status, body = get(server.base + path, cookie=server.token)  # the UI's cookie
    assert status == 200, body[-2000:]
    assert get(server.base + path, token=server.token)[0] == 200  # an API client's bearer token
    if "/api/" not in path:  # JSON carries the hostile drill name as data; HTML must not carry it as markup
        assert "<script>" not in body


def test_records_come_from_the_read_only_connection(server):
    status, body = get(f"{server.base}/drillbook/api/history", token=server.token)
    records = json.loads(body)["records"]
    assert status == 200 and [r["seq"] for r in records] == [6, 5, 4, 3, 2, 1]
    assert HOSTILE in {r["drill"] for r in records}


def test_the_pack_downloads_with_a_session_and_verifies_offline(server, tmp_path):
    from drillbook.evidence.pack_verify import verify_pack

    url = f"{server.base}/drillbook/pack?control=SOC2%3AA1.2"
    assert get(url)[0] == 401
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        assert resp.headers["Content-Type"] == "application/zip"
        assert resp.headers["Content-Disposition"].startswith('attachment; filename="drillbook-SOC2_A1.2-')
        (tmp_path / "pack.zip").write_bytes(resp.read())
    report = verify_pack(tmp_path / "pack.zip", public_key=server.public_key)
    assert report.ok and report.signed and report.trusted_key and report.records == 4, report.problems


# -- the browser ---------------------------------------------------------------------------------------------


def _browser_or_skip():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = "Chromium and chromedriver are needed: apt-get install chromium chromium-driver"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI must run the browser tests)")
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path) -> Iterator:
    chromium, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.set_page_load_timeout(60)
    drv.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    drv.downloads = downloads
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture
def artefacts(tmp_path) -> Path:
    out = Path(os.environ.get("DRILLBOOK_ARTEFACTS", tmp_path / "artefacts")) / "evidence-pages"
    out.mkdir(parents=True, exist_ok=True)
    return out


def shot(drv, artefacts: Path, name: str) -> None:
    path = artefacts / f"{name}.png"
    drv.save_screenshot(str(path))
    if os.environ.get("DRILLBOOK_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(path, REPO / "docs" / f"evidence-{name}.png")


def log_in_and_open_evidence_from_the_navigation(drv, server: Server, artefacts: Path):
    """As an auditor does: Airflow's login page, then Browse → Evidence in the React UI's navigation.

    Nothing here types a drillbook URL: the test opens Airflow's root, is sent to the login page, and
    reaches the pages only through the navigation entry the plugin registers (``external_views``).
    Returns with the driver switched into the Evidence view's iframe, on Drill history.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(drv, 60)
    drv.get(f"{server.base}/")
    user_field = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "input[name=username], input#username"))
    )
    assert "/auth/login" in drv.current_url  # no session: Airflow's own login, no drillbook login
    user_field.send_keys("admin")
    drv.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(PASSWORD)
    drv.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: any(c["name"] == "_token" for c in d.get_cookies()))

    # Airflow 3.3's sidebar: "Browse" is a menu button; the plugin's external view is an item in it
    browse = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[aria-label='Browse']")))
    browse.click()
    entry = wait.until(
        ec.element_to_be_clickable((By.CSS_SELECTOR, "[role=menu] [role=menuitem][data-value='Evidence']")),
        message="no 'Evidence' item in Airflow's Browse menu: is the plugin's external_views entry registered?",
    )
    shot(drv, artefacts, "airflow-browse-menu")
    entry.click()
    wait.until(lambda d: "/plugin/drillbook-evidence" in d.current_url)
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='Evidence']")))
    assert (frame.get_attribute("src") or "").endswith("/drillbook/history")
    drv.switch_to.frame(frame)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table")))
    assert "Drill history" in drv.page_source
    return frame


def test_auditor_logs_in_filters_by_control_opens_a_record_and_sees_the_chart(server, browser, artefacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 60)
    log_in_and_open_evidence_from_the_navigation(browser, server, artefacts)
    browser.switch_to.default_content()
    time.sleep(1)  # let the sidebar settle for the picture
    shot(browser, artefacts, "airflow-nav")
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[title='Evidence']"))

    browser.find_element(By.NAME, "control").send_keys("SOC2:A1.2")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait.until(lambda d: "control=SOC2" in d.execute_script("return location.href"))
    links = browser.find_elements(By.CSS_SELECTOR, "a[href*='/record/']")
    assert [a.text for a in links] == ["4", "3", "2", "1"]
    browser.switch_to.default_content()
    shot(browser, artefacts, "history-filtered")
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[title='Evidence']"))

    browser.find_element(By.LINK_TEXT, "4").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "svg.waterfall")))
    assert "RTO_EXCEEDED" in browser.page_source
    browser.switch_to.default_content()
    shot(browser, artefacts, "record")
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[title='Evidence']"))

    browser.find_element(By.LINK_TEXT, "Trends").click()  # the pages' own navigation, still in Airflow
    Select(wait.until(ec.presence_of_element_located((By.NAME, "drill")))).select_by_visible_text(
        "orders_nightly"
    )
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait.until(lambda d: "drill=orders_nightly" in d.execute_script("return location.href"))
    chart = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "svg.chart")))
    assert (
        chart.size["width"] > 300 and chart.size["height"] > 100
    )  # rendered, not just present in the markup
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart line.objective")
    browser.switch_to.default_content()
    assert "/plugin/drillbook-evidence" in browser.current_url  # never left Airflow's UI
    shot(browser, artefacts, "trends")
    assert (artefacts / "trends.png").stat().st_size > 5000


def test_auditor_downloads_the_pack_from_the_controls_page(server, browser, artefacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from drillbook.evidence.pack_verify import verify_pack

    wait = WebDriverWait(browser, 60)
    log_in_and_open_evidence_from_the_navigation(browser, server, artefacts)
    browser.find_element(By.LINK_TEXT, "Controls").click()
    link = wait.until(ec.element_to_be_clickable((By.PARTIAL_LINK_TEXT, "Download evidence pack")))
    assert "signed with the checkpoint key" in browser.page_source
    browser.switch_to.default_content()
    shot(browser, artefacts, "controls-download")
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[title='Evidence']"))
    link.click()  # inside Airflow's iframe (its sandbox allows downloads)
    deadline = time.monotonic() + 90
    done: list[Path] = []
    while time.monotonic() < deadline and not done:
        done = [p for p in browser.downloads.glob("drillbook-SOC2_A1.2-*.zip")]
        time.sleep(0.5)
    assert done, (
        f"no pack arrived in {browser.downloads}: {sorted(p.name for p in browser.downloads.iterdir())}"
    )
    report = verify_pack(done[0], public_key=server.public_key)
    assert report.ok and report.signed and report.trusted_key, report.problems


def test_auditor_presses_verify_and_the_outcome_is_kept_in_the_ledger(server, browser, artefacts):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from drillbook.ledger.store import Ledger

    wait = WebDriverWait(browser, 60)
    log_in_and_open_evidence_from_the_navigation(browser, server, artefacts)
    browser.find_element(By.LINK_TEXT, "Ledger status").click()
    button = wait.until(lambda d: d.find_element(By.XPATH, "//button[text()='Verify the chain now']"))
    with Ledger(server.seeded.dsn, spool=None) as ledger:
        before = ledger.count()
    button.click()
    wait.until(lambda d: "by admin" in d.page_source)
    assert "NOT RECORDED" not in browser.page_source
    browser.switch_to.default_content()
    shot(browser, artefacts, "ledger-verified")
    with Ledger(server.seeded.dsn, spool=None) as ledger:
        row = ledger.head()
        assert ledger.count() == before + 1 and row is not None
        assert (row.record_type, row.kind, row.drill, row.verdict) == ("watchdog", "ledger", "verify", "PASS")
        assert row.result["details"]["verify"]["by"] == "admin"  # the Airflow user who pressed
    # read back by the read-only role on a plain request: nothing of it lives in the browser or the process
    status, page = get(f"{server.base}/drillbook/ledger", token=server.token)
    assert status == 200 and f"record {row.seq}</a>)" in page and "OK at" in page
