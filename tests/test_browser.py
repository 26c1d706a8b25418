"""The admin in a real browser: an operator replays a failed task instance.

Drives a headless Chromium with Selenium against the example project served
by ``live_server``, and saves a screenshot of the session's admin page to
``test-artifacts/admin-session.png``.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from django_triggers.manager import TriggerManager
from django_triggers.models import TaskInstance
from django_triggers.runners import ThreadingTaskRunner

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parent.parent / "test-artifacts" / "admin-session.png"
PASSWORD = "correct horse battery staple"

pytestmark = [
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason=(
            f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian packages chromium and chromium-driver)"
        ),
    ),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A headless Chromium with a fresh profile; nothing is downloaded."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,1024",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def failed_instance() -> TaskInstance:
    """``t_flaky#0``, failed on its first attempt; a replay of it succeeds."""
    manager = TriggerManager("browser-replay")
    manager.update_configuration(
        {"t_flaky": {"after": ["start"], "run": "tests.FailUntilReplayed", "using": "threading"}}
    )
    manager.fire("start", {"order": 42})
    ThreadingTaskRunner.join_all(timeout=60)
    instance = manager.get_instance("t_flaky#0")
    assert instance.status == TaskInstance.FAILED
    return instance


def wait_for(browser: WebDriver, css_selector: str) -> Any:
    return WebDriverWait(browser, 20).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css_selector))
    )


def log_in(browser: WebDriver, base_url: str, username: str) -> None:
    browser.get(f"{base_url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    wait_for(browser, "#user-tools")


def test_replaying_a_failed_instance_from_the_admin_finishes_its_clone(
    browser: WebDriver, live_server: Any, django_user_model: Any, failed_instance: TaskInstance
) -> None:
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    log_in(browser, live_server.url, admin.username)

    browser.get(f"{live_server.url}/admin/django_triggers/taskinstance/")
    wait_for(browser, f"input[name=_selected_action][value='{failed_instance.pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("replay_instances")
    browser.find_element(By.NAME, "index").click()
    wait_for(browser, "textarea[name=replacement_kwargs]")
    browser.find_element(By.NAME, "apply").click()
    assert "Replayed t_flaky#0 as t_flaky#1." in wait_for(browser, ".messagelist .success").text
    ThreadingTaskRunner.join_all(timeout=60)

    manager = TriggerManager.for_existing_session("browser-replay")
    clone = manager.get_instance("t_flaky#1")
    assert (clone.status, clone.parent_id) == (TaskInstance.FINISHED, failed_instance.pk)
    assert manager.get_instance("t_flaky#0").status == TaskInstance.REPLAYED

    browser.get(
        f"{live_server.url}/admin/django_triggers/triggersession/{clone.session_id}/change/"
    )
    row = WebDriverWait(browser, 20).until(
        ec.presence_of_element_located((By.XPATH, "//tr[td[1][normalize-space()='t_flaky#1']]"))
    )
    assert "finished" in row.text.split()
    save_full_page_screenshot(browser, SCREENSHOT)


def save_full_page_screenshot(browser: WebDriver, path: Path) -> None:
    """Grow the window to the page's height, so that the screenshot holds all of it."""
    page_height, frame_height = browser.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
    )
    browser.set_window_size(1280, int(page_height) + int(frame_height))
    path.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(path))


BIG_SCREENSHOT = SCREENSHOT.parent / "admin-big-session.png"
BIG_TOP_SCREENSHOT = SCREENSHOT.parent / "admin-big-session-top.png"
SESSIONS_SCREENSHOT = SCREENSHOT.parent / "admin-sessions.png"


def overflow(browser: WebDriver) -> tuple[int, int]:
    """The document's width and the window's: the first wider means a horizontal scroll."""
    width, window = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    return int(width), int(window)


def test_the_page_of_a_big_session_fits_the_window_and_lists_its_failures(
    browser: WebDriver, live_server: Any, django_user_model: Any
) -> None:
    from bench.big_session import build_big_session, build_small_sessions

    build_small_sessions(20)
    big = build_big_session("big-session")
    admin = django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    log_in(browser, live_server.url, admin.username)

    browser.get(f"{live_server.url}/admin/django_triggers/triggersession/{big.session.pk}/change/")
    wait_for(browser, "#workflow svg.triggers-graph")
    width, window = overflow(browser)
    assert width <= window, "the session page scrolls sideways at 1280 px"
    failed = browser.find_elements(By.CSS_SELECTOR, "#attention-failed + ul > li")
    assert sorted(item.find_element(By.TAG_NAME, "a").text for item in failed) == sorted(
        f"{name}#0" for name in big.failed
    )
    panel, svg = browser.execute_script(
        "var panel = document.querySelector('#workflow .dt-graph');"
        "var svg = panel.querySelector('svg');"
        "var p = panel.getBoundingClientRect(), s = svg.getBoundingClientRect();"
        "return [[p.left, p.right, p.width], [s.left, s.right, s.width, s.height]];"
    )
    assert svg[2] > 200 and svg[3] > 100, "the diagram is not visible"
    assert panel[0] <= svg[0] and svg[1] <= panel[1] + 0.5, "the diagram overflows its panel"
    assert "See the whole workflow" in browser.find_element(By.ID, "workflow").text
    assert browser.find_element(By.CSS_SELECTOR, "#instances .dt-pages").is_displayed()
    BIG_TOP_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(BIG_TOP_SCREENSHOT))

    # Zoomed in, the diagram pans inside its panel; the page still does not scroll sideways.
    browser.find_element(By.CSS_SELECTOR, ".dt-graph-tools [data-zoom=in]").click()
    browser.find_element(By.CSS_SELECTOR, ".dt-graph-tools [data-zoom=in]").click()
    assert overflow(browser)[0] <= window
    browser.find_element(By.CSS_SELECTOR, ".dt-graph-tools [data-zoom=fit]").click()
    save_full_page_screenshot(browser, BIG_SCREENSHOT)

    browser.set_window_size(1280, 1024)
    browser.get(f"{live_server.url}/admin/django_triggers/triggersession/")
    wait_for(browser, "#result_list")
    width, window = overflow(browser)
    assert width <= window, "the list of sessions scrolls sideways at 1280 px"
    lines = browser.execute_script(
        "return Array.from(document.querySelectorAll("
        "'#result_list td.field-created_at, #result_list td.field-last_fire'))"
        ".map(function (cell) { var range = document.createRange();"
        " range.selectNodeContents(cell); return range.getClientRects().length; })"
    )
    assert lines and set(lines) == {1}, "a date wraps onto several lines"
    browser.save_screenshot(str(SESSIONS_SCREENSHOT))
