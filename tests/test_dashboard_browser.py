"""The dashboard in a real browser: `streamlit run` plus Debian's headless Chromium driven by selenium.

Run by `make test-all` (which installs `chromium` and `chromium-driver` with apt when they are missing;
nothing is downloaded at run time). Each page is opened on the default embedded model, checked for
its plotly figure and for the absence of error boxes, and photographed into tests/artifacts/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGES = {  # url path (st.navigation derives it from the file name; the default page is the root)
    # A deep link first, on the fresh server: the entry script must run even when "/" was never opened.
    "attention": "attention",
    "walkthrough": "",
    "activations": "activations",
    "heads": "heads",
    "logit_lens": "logit_lens",
    "fact_editor": "fact_editor",
    "sampling": "sampling",
    "probing": "probing",
}
PAGE_TIMEOUT = 600  # the heads and probes pages compute on the real model at first visit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url}/_stcore/health did not answer 'ok' within {timeout}s")


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "apps" / "dashboard.py"),
        "--server.headless", "true", "--server.port", str(port), "--browser.gatherUsageStats", "false",
    ]
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed; run `apt-get install -y chromium chromium-driver`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="interp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1500,1100",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.browser
def test_every_page_draws_its_figure_in_chromium(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems = {}
    for page, path in PAGES.items():
        browser.get(f"{server}/{path}")

        def settled(driver):
            # Done when a figure is drawn and nothing is still computing, or when an error/exception box shows.
            boxes = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"], [data-testid="stAlertContentError"]')
            if boxes:
                return True
            busy = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSpinner"], [data-testid="stStatusWidget"]')
            charts = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"] .main-svg')
            return bool(charts) and not busy

        WebDriverWait(browser, PAGE_TIMEOUT, poll_frequency=1).until(settled)
        time.sleep(1.5)  # let plotly finish its layout animation before the screenshot
        browser.save_screenshot(str(ARTIFACTS / f"dashboard_{page}.png"))
        errors = browser.find_elements(
            By.CSS_SELECTOR, '[data-testid="stException"], [data-testid="stAlertContentError"]'
        )
        charts = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"] .main-svg')
        if errors or not charts:
            problems[page] = [e.text[:300] for e in errors] or ["no plotly chart"]
    assert not problems, problems
