"""The instructor's page in headless Chromium: choosing a time of day changes the list.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and PyPI ``selenium``. Without them the
test is skipped with the reason, except under CI (``$CI`` set, as for the publishing tests; ``.ci/run``
installs Chromium), where a missing browser is a failure: CI must exercise the page.
"""

from __future__ import annotations

import os
import shutil

import pytest
from serving_fixtures import make_store

from recsys_tutorial.serving.server import ApiServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
REQUIRED = bool(os.environ.get("CI"))


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture
def browser(tmp_path):
    if reason := _missing():
        if REQUIRED:
            pytest.fail(f"CI must test the served page in Chromium, but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _rows(driver) -> list[tuple[str, str]]:
    """(item id, title cell text) of each shown row, read in one script call: the page re-renders the table."""
    script = "return [...document.querySelectorAll('#list tbody tr')].map(r => [r.dataset.item, r.cells[1].innerText])"
    return [tuple(row) for row in driver.execute_script(script)]


def test_choosing_a_time_of_day_changes_the_list(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    make_store(tmp_path / "rec.sqlite")
    with ApiServer(tmp_path / "rec.sqlite") as server:
        browser.get(server.url)
        wait = WebDriverWait(browser, 20)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert Select(browser.find_element(By.ID, "model")).first_selected_option.text == "ctx"
        Select(browser.find_element(By.ID, "user")).select_by_value("1")
        wait.until(lambda d: [item for item, _ in _rows(d)] == ["2", "3", "4", "5", "1"])
        morning = _rows(browser)
        assert morning[0][1] == "Film 2"

        Select(browser.find_element(By.ID, "context")).select_by_value("evening")
        wait.until(lambda d: _rows(d) and _rows(d)[0][0] == "12")
        evening = _rows(browser)
        assert [item for item, _ in evening] == ["12", "13", "14", "15", "11"]
        assert evening[0][1].startswith("Film 12")  # title, followed by the "new" badge
        assert len(browser.find_elements(By.CSS_SELECTOR, "#list tbody tr.new")) == 5
        summary = browser.find_element(By.ID, "summary")
        assert summary.get_attribute("data-changed") == "5" and "differ from the morning list" in summary.text
        assert browser.find_element(By.ID, "error").text == ""
