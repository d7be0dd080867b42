"""The search page in headless Chromium: the order control (newest / oldest photo first) and
the filter live in the URL, and each card says when and with what its photo was taken."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from crossmodal.serve import ServeSettings, create_app  # noqa: E402
from tests.exif_helpers import write_paris_photos  # noqa: E402
from tests.image_helpers import write_image  # noqa: E402
from tests.serve.test_serve_browser import (  # noqa: E402, F401 - the browser fixture
    browser,
    card_ids,
    pytestmark,
    status,
    url_params,
)
from tests.serve_helpers import build_index, serving  # noqa: E402


@pytest.fixture
def photo_server(tmp_path, fake_encoder):
    photos = tmp_path / "photos"
    write_paris_photos(photos)
    write_image(photos / "scan.png", (245, 15, 15))
    app = create_app(build_index(tmp_path, photos, fake_encoder), ServeSettings(),
                     encoder=fake_encoder)
    with serving(app) as url:
        yield url


def test_sort_and_filter_controls(photo_server, browser):  # noqa: F811 - the fixture
    wait = WebDriverWait(browser, 15)
    browser.get(photo_server + "/")
    browser.find_element(By.ID, "query").send_keys("red", Keys.ENTER)
    wait.until(lambda d: len(card_ids(d)) == 3)

    Select(browser.find_element(By.ID, "sort")).select_by_value("taken:desc")  # re-runs
    wait.until(lambda d: card_ids(d) == ["paris.jpg", "louvre.jpg", "scan.png"])
    assert url_params(browser) == {"q": "red", "target": "images", "sort": "taken:desc"}
    taken = browser.execute_script(
        "return [...document.querySelectorAll('#results .card')].map(c => "
        "(c.querySelector('.taken') || {}).textContent || '')")
    assert taken == ["2024-06-01 14:03 · Apple iPhone 13", "2023-12-24 09:00 · NIKON D750", ""]

    where = browser.find_element(By.ID, "where")
    where.send_keys("near(48.8584, 2.2945, 1km)", Keys.ENTER)
    wait.until(lambda d: card_ids(d) == ["paris.jpg"])
    assert url_params(browser)["where"] == "near(48.8584, 2.2945, 1km)"

    browser.back()  # the order and filter go back with the search
    wait.until(lambda d: card_ids(d) == ["paris.jpg", "louvre.jpg", "scan.png"])
    assert browser.find_element(By.ID, "where").get_attribute("value") == ""

    # A shared link opens with its order and filter in the controls.
    browser.get(photo_server + "/?q=red&target=images&sort=taken&where=taken%20%3E%3D%20%222023%22")
    wait.until(lambda d: card_ids(d) == ["louvre.jpg", "paris.jpg"])
    assert Select(browser.find_element(By.ID, "sort")).first_selected_option.text == \
        "oldest photo first"

    where = browser.find_element(By.ID, "where")
    where.clear()
    where.send_keys("near(48.85, 2.35)", Keys.ENTER)  # a bad filter: the API's one line
    wait.until(lambda d: "near takes (latitude, longitude, distance)" in status(d))
