"""The status page in a real browser (issue 11, "HTTP"): headless Chromium (Debian's
``chromium`` and ``chromium-driver``) driven by selenium opens the page of a real Daemon
while it separates files against the emulator: a song filed, one failed at MVSEP, one in
flight. The test checks what the page shows, clicks Retry and waits until the failed job is
filed. Screenshots are saved under the test's tmp folder and their paths printed. Skipped,
saying why, only when chromium, its driver or selenium is missing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import wait_until
from http_harness import base_url, daemons, http_config, jobs, start

from daemon.emulator.faults import Fault
from daemon.jobs import Job, JobState
from daemon.service import Daemon

__all__ = ["daemons"]  # the fixture, imported
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
HTTP_TOKEN = "http-token-page-7777"  # configured (unused on loopback): never on the page
API_TOKEN = "harness-token-1"  # daemon_harness's API token
COPY_TO = "MVSEP_WATCH_SCREENSHOT_TO"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium ([dev] extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)  # no download
    try:
        yield driver
    finally:
        driver.quit()


def by_name(journal: Path, name: str) -> Job | None:
    return next((j for j in jobs(journal) if j.source.path.name == name), None)


def in_state(journal: Path, name: str, state: JobState) -> bool:
    job = by_name(journal, name)
    return (
        job is not None
        and job.state is state
        and (state is not JobState.FAILED or bool(job.source_disposed))
    )


def separate_three(
    tmp: Path, emulator: Any, daemon: Daemon, audio: Callable[..., Path]
) -> tuple[int, int]:
    """One song filed, one failed at MVSEP, one slow at MVSEP: (failed id, slow id); new
    jobs are quick again (the slow one keeps its times)."""
    journal = daemon.settings.journal.path
    audio("in/filed song.wav", seconds=1.0)
    wait_until(lambda: in_state(journal, "filed song.wav", JobState.FILED), "a song filed")
    emulator.add_fault(Fault(kind="job_failed", endpoint="create", times=1))
    audio("in/failed <song>.wav", seconds=1.2)  # a name the page must escape
    wait_until(lambda: in_state(journal, "failed <song>.wav", JobState.FAILED), "a song failed")
    slow = dataclasses.replace(
        emulator.state.options, waiting_s=3.0, processing_s=4.0, chunk_seconds=0.5
    )  # waiting 3 s (a queue position), processing 4 s, distributing 4 s (3 chunks)
    emulator.state.options = slow
    audio("in/slow song.wav", seconds=1.4)
    wait_until(lambda: in_state(journal, "slow song.wav", JobState.QUEUED), "a song at MVSEP")
    failed, queued = by_name(journal, "failed <song>.wav"), by_name(journal, "slow song.wav")
    assert failed is not None and queued is not None
    emulator.state.options = dataclasses.replace(slow, waiting_s=0.0, processing_s=0.2)
    return failed.id, queued.id


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return "\n".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))


def shows(driver: Any, url: str, css: str, wanted: str) -> bool:
    driver.get(url)
    return wanted in text_of(driver, css)


def credits_left(driver: Any, url: str) -> float | None:
    driver.get(url)
    try:
        return float(text_of(driver, "#credits-left"))
    except ValueError:  # "unknown" while the account is read in the background
        return None


def test_the_page_in_chromium_shows_the_daemon_and_retry_files_the_failed_job(
    tmp_path: Path,
    make_emulator: Callable[..., Any],
    audio_file: Callable[..., Path],
    daemons: list[Daemon],
    browser: Any,
) -> None:
    from selenium.webdriver.common.by import By

    emulator = make_emulator(premium=True)
    http = {"listen": "127.0.0.1:0", "token": HTTP_TOKEN}
    daemon = start(http_config(tmp_path, emulator.base_url, http), daemons)
    failed_id, queued_id = separate_three(tmp_path, emulator, daemon, audio_file)
    url = base_url(daemon) + "/"

    wait_until(lambda: credits_left(browser, url) is not None, "credits left on the page")
    left = credits_left(browser, url)  # MVSEP's figure: the emulator's 1000 less what was used
    assert left is not None and 990 <= left < 1000
    assert "Credits used today" in text_of(browser, "#credits")
    inbox = text_of(browser, "tr.inbox")
    assert str(tmp_path / "in") in inbox and "vocals" in inbox and "native" in inbox
    failure = text_of(browser, f'tr.failed[data-job="{failed_id}"]')
    assert "failed <song>.wav" in failure and "Separation failed (injected fault)" in failure
    row = f'tr.in-flight[data-job="{queued_id}"]'
    wait_until(lambda: shows(browser, url, row, "queue position"), "the queue position shown")
    flight = text_of(browser, row)
    assert "slow song.wav" in flight and "queued/waiting" in flight
    wait_until(lambda: shows(browser, url, row, "chunks"), "the chunks' progress bar")
    bars = browser.find_elements(By.CSS_SELECTOR, f"{row} progress")
    assert [b.get_attribute("max") for b in bars] == ["3"]  # 1.4 s in chunks of 0.5 s
    assert "distributing" in text_of(browser, row)
    results = text_of(browser, "tr.filed .folder")
    assert str(tmp_path / "out" / "filed song") in results
    source = browser.page_source
    assert HTTP_TOKEN not in source and API_TOKEN not in source
    assert "<song>" not in source  # escaped, not markup
    before = tmp_path / "status-page.png"
    browser.save_screenshot(str(before))
    print(f"\nscreenshot of the status page: {before}")
    if os.environ.get(COPY_TO):  # how docs/status-page.png was made
        shutil.copyfile(before, os.environ[COPY_TO])

    journal = daemon.settings.journal.path
    browser.find_element(By.CSS_SELECTOR, f'tr.failed[data-job="{failed_id}"] button.retry').click()
    wait_until(lambda: "/?request=" in browser.current_url, "the page after the retry")
    wait_until(lambda: in_state(journal, "failed <song>.wav", JobState.FILED), "the retry filed")
    wait_until(lambda: shows(browser, browser.current_url, "#request", "done"), "the answer")
    assert "put back at" in text_of(browser, "#request")
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr.failed[data-job="{failed_id}"]')
    assert str(tmp_path / "out" / "failed _song_") in text_of(browser, "tr.filed .folder")
    after = tmp_path / "status-page-after-retry.png"
    browser.save_screenshot(str(after))
    print(f"screenshot after the retry: {after}")
    assert before.stat().st_size > 10_000 and after.stat().st_size > 10_000
