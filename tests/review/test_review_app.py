"""End to end: `yolo-ft review` serves the FiftyOne App; headless Chromium sees the samples and saved views.

The CLI runs as a real subprocess (same FiftyOne database as the tests), is driven by Selenium with the
system chromium/chromedriver, and must stop cleanly on SIGINT (exit 0, port released).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fiftyone as fo
import pytest

CHROMEDRIVER = Path("/usr/bin/chromedriver")
NAME = "yolo-ft-test-app"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_url(proc: subprocess.Popen, log: Path, timeout: float) -> str:
    """Poll the command's log file (not a pipe: FiftyOne's services would inherit and hold it open)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("FiftyOne App: "):
                return line.split()[2]
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"App URL never printed (rc={proc.poll()}):\n" + log.read_text(errors="replace")[-3000:])


def _chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,900"):
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}")
    for binary in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(binary).exists():
            opts.binary_location = binary
            break
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


@pytest.mark.browser
@pytest.mark.slow
def test_app_shows_samples_and_saved_views(tiny_yolo_dataset, review_model, artifacts_dir, tmp_path):
    if not CHROMEDRIVER.exists():
        pytest.fail("chromedriver not found at /usr/bin/chromedriver (apt-get install chromium-driver)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    fo.list_datasets()  # start the database from this process, not from the command under test
    log = tmp_path / "review.log"
    log_file = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "yolo_ft", "review", "--data", str(tiny_yolo_dataset), "--model", str(review_model),
         "--name", NAME, "--conf", "0.01", "--port", str(port)],
        stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=os.environ.copy(),
    )
    driver = None
    try:
        url = _wait_for_url(proc, log, timeout=300)
        assert url.startswith(f"http://127.0.0.1:{port}")  # local-only by default
        ds = fo.load_dataset(NAME)
        mistakes_name = next(v for v in ds.list_saved_views() if v.startswith("mistakes-"))
        n_mistakes = len(ds.load_saved_view(mistakes_name))
        assert n_mistakes > 0

        driver = _chrome()
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        loaded = '[data-cy="looker"] canvas[canvas-loaded="true"]'
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, loaded)) >= n_mistakes)
        assert f"/datasets/{NAME}" in driver.current_url and f"view={mistakes_name}" in driver.current_url
        assert driver.find_element(By.CSS_SELECTOR, '[data-cy="entry-count-all"]').text.strip() == str(n_mistakes)
        assert len(driver.find_elements(By.CSS_SELECTOR, '[data-cy="looker"]')) == n_mistakes
        for button in driver.find_elements(By.XPATH, '//*[text()="Dismiss"]'):  # marketing pop-up
            button.click()

        driver.find_element(By.CSS_SELECTOR, '[data-cy="saved-views-selection"] [role="combobox"]').click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '[role="option"]')) >= 3)
        options = {o.text for o in driver.find_elements(By.CSS_SELECTOR, '[role="option"]')}
        tag = mistakes_name.removeprefix("mistakes-")
        assert {f"mistakes-{tag}", f"high-conf-fp-{tag}", f"missed-small-{tag}"} <= options
        assert set(ds.list_saved_views()) <= options
        time.sleep(1.0)  # let the dropdown finish fading in before the screenshot
        shot = artifacts_dir / "review_app.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            log_file.close()
    out = log.read_text(errors="replace")
    assert rc == 0, out[-2000:]
    assert "App stopped" in out
    deadline = time.monotonic() + 30
    while _port_open(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _port_open(port), "the App server outlived the command"
