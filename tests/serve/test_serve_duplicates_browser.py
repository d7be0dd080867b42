"""The page's Duplicates view in real headless Chromium: the groups, one row each."""

from __future__ import annotations

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from crossmodal.engine import Collection  # noqa: E402
from crossmodal.serve import ServeSettings, create_app  # noqa: E402
from tests.duplicate_helpers import write_copies_folder  # noqa: E402
from tests.serve.test_serve_browser import browser, pytestmark  # noqa: E402, F401
from tests.serve_helpers import serving  # noqa: E402


@pytest.fixture
def server_url(tmp_path, fake_encoder):
    index = tmp_path / "index"
    Collection.create(index, model="fake:colours", encoder=fake_encoder).add_paths(
        [write_copies_folder(tmp_path / "photos")], progress=False)
    with serving(create_app(index, ServeSettings(), encoder=fake_encoder)) as url:
        yield url


def groups_shown(driver) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#results .group')].map(g => "
        "[...g.querySelectorAll('.card')].map(c => c.dataset.id))")


def test_duplicates_view(server_url, browser):  # noqa: F811 - the imported fixture
    wait = WebDriverWait(browser, 15)
    browser.get(server_url + "/?duplicates=0.99")
    wait.until(lambda d: len(groups_shown(d)) == 2)
    assert sorted(sorted(g) for g in groups_shown(browser)) == [
        ["copy/green.png", "green.png"], ["red.jpg", "small/red.png"]]
    status = browser.find_element(By.ID, "status").text
    assert status.startswith("2 groups, 2 duplicates among 5 images")
    wait.until(lambda d: d.execute_script(  # thumbnails fetched by id and shown
        "return [...document.querySelectorAll('#results img')].every(i => i.naturalWidth > 0)"))
    # The button asks for the model's calibrated threshold: the fake model has none.
    browser.find_element(By.ID, "duplicates-button").click()
    wait.until(lambda d: "no calibrated duplicate threshold" in
               d.find_element(By.ID, "status").text)
