"""The search page in real headless Chromium: type a query, see results, upload an image."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from crossmodal.serve import ServeSettings, create_app  # noqa: E402
from tests.serve_helpers import build_index, serving  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture
def server_url(tmp_path, colour_folder, fake_encoder):
    app = create_app(build_index(tmp_path, colour_folder, fake_encoder), ServeSettings(),
                     encoder=fake_encoder)
    with serving(app) as url:
        yield url


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1100,900", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def card_ids(driver) -> list[str]:
    # Read in one script: the grid is replaced wholesale on each search.
    return driver.execute_script(
        "return [...document.querySelectorAll('#results .card')].map(c => c.dataset.id)")


def first_card(driver, wait, predicate=lambda card_id: True) -> str:
    return wait.until(lambda d: (ids := card_ids(d)) and predicate(ids[0]) and ids[0])


def test_search_page_in_chromium(server_url, browser, colour_folder, tmp_path):
    wait = WebDriverWait(browser, 15)
    browser.get(server_url + "/")
    wait.until(lambda d: "4 images" in d.find_element(By.ID, "stats").text)

    query = browser.find_element(By.ID, "query")
    query.send_keys("red", Keys.ENTER)  # text -> images
    assert first_card(browser, wait) == "red.jpg"
    assert len(card_ids(browser)) == 4
    score = browser.find_element(By.CSS_SELECTOR, "#results .card .score").text
    assert score.startswith("#1")
    wait.until(lambda d: d.execute_script(  # thumbnails fetched by id and shown
        "return [...document.querySelectorAll('#results img')].every(i => i.naturalWidth > 0)"))

    browser.find_element(By.CSS_SELECTOR, "input[value=texts]").click()  # text -> captions
    assert first_card(browser, wait, lambda i: "#" in i).startswith("red.jpg#")

    browser.find_element(By.CSS_SELECTOR, "input[value=images]").click()
    browser.find_element(By.ID, "image-input").send_keys(str(colour_folder / "green.png"))
    assert first_card(browser, wait, lambda i: i != "red.jpg") == "green.png"  # image -> images
    wait.until(lambda d: "green.png" in d.find_element(By.ID, "status").text)

    browser.find_elements(By.CSS_SELECTOR, "#results .card")[1].click()  # search by a result
    wait.until(lambda d: "for green.png" not in d.find_element(By.ID, "status").text
               and "images for" in d.find_element(By.ID, "status").text)
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.naturalWidth > 0)"))
    screenshot = tmp_path / "serve-page.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 5_000

    query.clear()
    query.send_keys("   ", Keys.ENTER)  # bad input shows a message, not a broken page
    wait.until(lambda d: "type something" in d.find_element(By.ID, "status").text)
