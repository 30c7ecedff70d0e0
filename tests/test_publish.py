"""The reading copy and the slides open offline in headless Chromium with a heading and a figure."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from recsys_tutorial.publish import NOTEBOOKS, publish

NOTEBOOK = NOTEBOOKS / "00_data_and_evaluation.ipynb"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")  # Debian names it one, Ubuntu the other
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI must test the pages in Chromium: .ci/run installs chromium and chromium-driver")
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver  # in the dev extra: a missing selenium is an install error, not a skip

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp()}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def published(tmp_path_factory, ml100k_dir):
    out = tmp_path_factory.mktemp("published")
    html = publish("html", [NOTEBOOK], out / "html")
    slides = publish("slides", [NOTEBOOK], out / "slides")  # reuses the executed copy
    return html[0], slides[0], out


def _open(browser, page: Path):
    browser.get(page.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], f"console errors in {page.name}: {errors}"
    return browser


def test_reading_copy_has_heading_figures_and_index(browser, published):
    from selenium.webdriver.common.by import By

    html, _, out = published
    page = _open(browser, html)
    assert page.find_element(By.TAG_NAME, "h1").text.startswith("00 · Data and evaluation")
    figures = page.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
    assert len(figures) >= 4 and all(f.get_property("naturalWidth") > 0 for f in figures)
    index = _open(browser, out / "html" / "index.html")
    assert "00 · Data and evaluation" in index.find_element(By.TAG_NAME, "ol").text


def test_slides_show_one_section_at_a_time(browser, published):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, slides, _ = published
    deck = _open(browser, slides)
    sections = deck.find_elements(By.CSS_SELECTOR, "section.slide")
    assert len(sections) >= 5
    assert [s.is_displayed() for s in sections].count(True) == 1
    assert "00 · Data and evaluation" in sections[0].text
    body = deck.find_element(By.TAG_NAME, "body")
    shown_figure = False
    for _ in sections:
        body.send_keys(Keys.ARROW_RIGHT)
        current = deck.find_element(By.CSS_SELECTOR, "section.slide.current")
        shown_figure |= any(
            img.is_displayed() for img in current.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img")
        )
    assert shown_figure, "no slide displayed a figure"


def test_pages_load_nothing_from_the_network(published):
    html, slides, _ = published
    for page in (html, slides):
        text = page.read_text(encoding="utf-8")
        assert "<script src=" not in text and '<link rel="stylesheet" href="http' not in text
