"""The instructor's page in headless Chromium: models side by side for one user, with the user's history.

Changing the user or the time of day changes the lists (context-free columns keep their one list), and the
history shows latest first. Runs on SQLite and, where ``$RECSYS_TUTORIAL_TEST_PG`` is set, on PostgreSQL.

Needs the Debian packages ``chromium`` and ``chromium-driver`` and PyPI ``selenium``. Without them the
test is skipped with the reason, except under CI (``$CI`` set, as for the publishing tests; ``.ci/run``
installs Chromium), where a missing browser is a failure: CI must exercise the page.
"""

from __future__ import annotations

import os
import shutil

import pytest
from serving_fixtures import BACKENDS, fresh_db, make_store

from recsys_tutorial.data.context import TIME_OF_DAY
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


def _columns(driver) -> dict[str, list[tuple[str, str]]]:
    """model -> (item id, title cell text) of each shown row, read in one script call (the page re-renders)."""
    script = """return Object.fromEntries([...document.querySelectorAll('section.model')].map(s => [s.dataset.model,
        [...s.querySelectorAll('tbody tr')].map(r => [r.dataset.item, r.cells[1].innerText])]))"""
    return {m: [tuple(row) for row in rows] for m, rows in driver.execute_script(script).items()}


def _items(driver) -> dict[str, list[str]]:
    return {m: [item for item, _ in rows] for m, rows in _columns(driver).items()}


def _history(driver) -> list[tuple[str, str]]:
    script = "return [...document.querySelectorAll('#history li')].map(li => [li.dataset.item, li.innerText])"
    return [tuple(row) for row in driver.execute_script(script)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_models_side_by_side_follow_the_user_and_the_time_of_day(browser, tmp_path, backend):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    with fresh_db(backend, tmp_path) as db:
        make_store(db)
        with ApiServer(db) as server:
            browser.get(server.url)
            wait = WebDriverWait(browser, 20)
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
            assert browser.find_element(By.ID, "error").text == ""
            contexts = [o.text for o in Select(browser.find_element(By.ID, "context")).options]
            assert contexts == list(TIME_OF_DAY)  # generated from data.context, not typed into the page
            notes = {
                s.get_attribute("data-model"): s.text for s in browser.find_elements(By.CSS_SELECTOR, "section.model")
            }
            assert "valid_ndcg10 0.0500" in notes["ctx"] and "one list at any time of day" in notes["pop"]

            def choose(user: str, context: str) -> None:
                Select(browser.find_element(By.ID, "user")).select_by_value(user)
                Select(browser.find_element(By.ID, "context")).select_by_value(context)
                wait.until(
                    lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-shown") == f"{user}/{context}/10"
                )

            choose("1", "morning")
            assert _items(browser) == {"ctx": ["2", "3", "4", "5", "1"], "pop": ["6", "7", "8", "9", "10"]}
            assert _columns(browser)["ctx"][0][1] == "Film 2 (1992)"
            assert [item for item, _ in _history(browser)] == ["18", "17", "16"]  # latest first
            assert _history(browser)[0][1].startswith("Film 18 (2008), Comedy, Romance (rated 1998-03-01)")

            choose("1", "evening")  # the context-aware column changes, the context-free one keeps its list
            assert _items(browser) == {"ctx": ["12", "13", "14", "15", "11"], "pop": ["6", "7", "8", "9", "10"]}
            assert len(browser.find_elements(By.CSS_SELECTOR, "section[data-model=ctx] tr.new")) == 5
            assert not browser.find_elements(By.CSS_SELECTOR, "section[data-model=pop] tr.new")
            summary = browser.find_element(By.CSS_SELECTOR, "section[data-model=ctx] .summary")
            assert summary.get_attribute("data-changed") == "5" and "differ from the morning list" in summary.text

            choose("2", "evening")  # another user: other lists, other history, nothing marked new
            assert _items(browser)["ctx"] == ["13", "14", "15", "11", "12"]
            assert [item for item, _ in _history(browser)] == ["20", "19"]
            assert not browser.find_elements(By.CSS_SELECTOR, "tr.new")
            assert browser.find_element(By.ID, "error").text == ""
