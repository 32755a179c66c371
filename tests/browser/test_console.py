"""The console in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium against a gateway and a simulator on loopback.

One admin's rollout, as a person does it: log in, see the route, its ramp and its live figures,
pause and resume the ramp, ramp it by hand (set a weight), roll it back with a reason, see the
audit entry, try a change the latch refuses (the 409 is shown), release it, watch the guard roll
a broken candidate back with its evidence, log out, and find the console gone. Every wait is an
explicit, bounded Selenium wait. With
``CONSOLE_SCREENSHOT=PATH`` the test also saves a screenshot of the console there
(``docs/console.png`` is made this way).

Skipped, saying why, only when Chromium or its driver is not installed (``.ci/run`` installs
both).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import (
    ADMIN_KEY,
    CANDIDATE_MODEL,
    CLIENT_KEY,
    GatewayProcess,
    SimulatorProcess,
    routes_yaml,
    start_gateway,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver; .ci/run installs them)",
    ),
]

ROUTE = "support-triage"
WAIT_S = 30
"""Longest explicit wait for one thing on the page (the page polls every 0.3 s here)."""


class Traffic:
    """Chat requests in a background thread until stopped, so the page has live figures."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def _run(self) -> None:
        with httpx.Client(base_url=self._url, timeout=10) as client:
            while not self._stop.is_set():
                client.post(
                    "/v1/chat/completions",
                    headers={"authorization": f"Bearer {CLIENT_KEY}"},
                    json={
                        "model": ROUTE,
                        "messages": [{"role": "user", "content": "I was charged twice"}],
                        "user": uuid.uuid4().hex,
                    },
                )
                self.sent += 1
                self._stop.wait(0.05)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.fixture
def gateway(sim: SimulatorProcess, tmp_path: Path) -> Iterator[GatewayProcess]:
    sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=0.02)
    # A ramp that will not climb by itself during the test (the dwell is 10 minutes).
    route_extra = (
        "guard: {min_samples: 30}\n"
        "ramp: {steps: ['10%', '50%', '100%'], min_samples: 30, min_dwell_s: 600}"
    )
    routes = routes_yaml(sim.url, weight=10_000, route_extra=route_extra)
    # The page reads the admin API every 0.3 s (default 2 s): the waits for live figures, the
    # guard's rollback and the re-render after it each take a poll or two.
    with start_gateway(tmp_path, routes, env={"GATEWAY_CONSOLE__REFRESH_S": "0.3"}) as gw:
        yield gw


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1250",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def test_an_admin_runs_a_rollout_from_the_console(
    gateway: GatewayProcess, sim: SimulatorProcess, browser: Any
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    # The page re-renders parts of itself at every poll: an element found may be replaced
    # before it is read, so waits retry on stale elements and reads go through a wait. A wait
    # checks its condition every 50 ms (Selenium's default, 500 ms, added ~0.5 s to most
    # waits for a change that had already happened).
    wait = WebDriverWait(
        browser,
        WAIT_S,
        poll_frequency=0.05,
        ignored_exceptions=[StaleElementReferenceException],
    )
    card = f'section[data-route="{ROUTE}"]'

    def text(selector: str) -> str:
        return str(wait.until(lambda d: d.find_element(By.CSS_SELECTOR, selector).text or None))

    def confirm(reason: str) -> None:
        dialog = wait.until(ec.visibility_of_element_located((By.ID, "confirm")))
        assert ROUTE in dialog.find_element(By.ID, "confirm-text").text
        dialog.find_element(By.ID, "confirm-reason").send_keys(reason)
        dialog.find_element(By.ID, "confirm-ok").click()
        wait.until(ec.invisibility_of_element_located((By.ID, "confirm")))

    # Anyone without a session lands on the login page; a client key is refused there.
    browser.get(gateway.url + "/admin/ui")
    wait.until(ec.url_to_be(gateway.url + "/admin/ui/login"))
    browser.find_element(By.ID, "key").send_keys(CLIENT_KEY)
    browser.find_element(By.ID, "login").click()
    assert (
        "not an admin key"
        in wait.until(ec.visibility_of_element_located((By.ID, "login-error"))).text
    )
    assert browser.get_cookies() == []

    # Log in with the admin key and a name for the audit; the route shows.
    browser.find_element(By.ID, "key").send_keys(ADMIN_KEY)
    browser.find_element(By.ID, "name").send_keys("alice")
    browser.find_element(By.ID, "login").click()
    wait.until(ec.url_to_be(gateway.url + "/admin/ui"))
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"{card} h2")))
    assert text(f"{card} h2") == ROUTE
    assert text(f'{card} [data-field="flag-weight"]') == "10%"
    ramp = f'{card} [data-field="ramp"]'
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ramp), "ramp ramping"))
    assert "step 1 of 3 (10% → 50% → 100%)" in text(ramp)
    pause = browser.find_element(By.CSS_SELECTOR, f'{card} button[data-action="pause"]')
    resume = browser.find_element(By.CSS_SELECTOR, f'{card} button[data-action="resume"]')
    assert pause.is_enabled()
    assert not resume.is_enabled()  # nothing to resume while it climbs
    cookie = browser.get_cookie("gateway_console")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert "alice" in text("#who")

    with Traffic(gateway.url):
        # Steer the ramp: pause it, then resume it, each with a reason and a confirmation.
        pause.click()
        confirm("hold for the weekend")
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ramp), "ramp paused"))
        assert "pause done" in text("#banner")
        wait.until(ec.element_to_be_clickable(resume)).click()
        confirm("back to work")
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ramp), "ramp ramping"))

        # Ramp it by hand: 20% for the candidate (a person's weight change pauses the ramp).
        weight = browser.find_element(By.CSS_SELECTOR, f'{card} [data-field="weight-input"]')
        weight.send_keys("20%")
        browser.find_element(By.CSS_SELECTOR, f'{card} button[data-action="weight"]').click()
        confirm("held-out eval passed")
        wait.until(
            ec.text_to_be_present_in_element(
                (By.CSS_SELECTOR, f'{card} [data-field="flag-weight"]'), "20%"
            )
        )
        assert "weight done" in text("#banner")
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ramp), "ramp paused"))

        # Live figures: requests per variant, the decision mix, the guard's chart and replicas.
        wait.until(
            ec.text_to_be_present_in_element(
                (By.CSS_SELECTOR, f'{card} [data-field="mix-text"]'), "rollout"
            )
        )
        wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, f"{card} svg polyline.candidate"))
        )
        assert "candidate" in text(f'{card} [data-field="quality"]')
        assert "(store)" in text(f'{card} [data-field="replicas"]')
        variants = wait.until(
            lambda d: {
                row.get_attribute("data-variant")
                for row in d.find_elements(By.CSS_SELECTOR, f"{card} tr[data-variant]")
            }
        )
        assert variants == {"finetuned", "prompted"}

        screenshot = os.environ.get("CONSOLE_SCREENSHOT")
        if screenshot:
            # A few more polls, so the chart has a history worth showing.
            wait.until(
                lambda d: (
                    len(
                        d.find_element(By.CSS_SELECTOR, f"{card} svg polyline.candidate")
                        .get_attribute("points")
                        .split()
                    )
                    >= 8
                )
            )
            browser.save_screenshot(screenshot)

        # Roll it back with a reason; the audit shows the entry with that reason.
        browser.find_element(By.CSS_SELECTOR, f'{card} button[data-action="rollback"]').click()
        confirm("complaints about tone")
        wait.until(
            ec.text_to_be_present_in_element(
                (By.CSS_SELECTOR, f'{card} [data-field="status"]'), "rolled_back"
            )
        )
        # The timeline is drawn again at every poll: read it through text(), which finds the
        # element afresh inside the wait (a reference kept across a poll goes stale).
        entry = text(f'#audit li[data-action="rollback"][data-route="{ROUTE}"]')
        assert "complaints about tone" in entry
        assert "ops (alice)" in entry

        # The latch refuses a new weight: the 409 is shown, not swallowed, and nothing changes.
        weight = browser.find_element(By.CSS_SELECTOR, f'{card} [data-field="weight-input"]')
        weight.clear()
        weight.send_keys("30%")
        browser.find_element(By.CSS_SELECTOR, f'{card} button[data-action="weight"]').click()
        confirm("try again")
        wait.until(ec.text_to_be_present_in_element((By.ID, "banner"), "409"))
        assert "rolled_back" in text("#banner")
        assert text(f'{card} [data-field="status"]') == "rolled_back"

        # Release it at 5%: a new rollout, active again.
        weight.clear()
        weight.send_keys("5%")
        browser.find_element(By.CSS_SELECTOR, f'{card} button[data-action="release"]').click()
        confirm("tone fixed in the prompt")
        wait.until(
            ec.text_to_be_present_in_element(
                (By.CSS_SELECTOR, f'{card} [data-field="status"]'), "active"
            )
        )
        assert text(f'{card} [data-field="flag-weight"]') == "5%"
        wait.until(
            ec.presence_of_element_located(
                (By.CSS_SELECTOR, f'#audit li[data-action="release"][data-route="{ROUTE}"]')
            )
        )

        # The candidate breaks at 100%: the guard rolls it back by itself, and its entry in the
        # audit unfolds the evidence it decided on.
        weight.clear()
        weight.send_keys("100%")
        browser.find_element(By.CSS_SELECTOR, f'{card} button[data-action="weight"]').click()
        confirm("all in")
        wait.until(
            ec.text_to_be_present_in_element(
                (By.CSS_SELECTOR, f'{card} [data-field="flag-weight"]'), "100%"
            )
        )
        sim.set_behaviour(CANDIDATE_MODEL, invalid_label_rate=1.0)
        by_guard = f'#audit li.guard[data-action="rollback"][data-route="{ROUTE}"]'
        # Found and clicked in one step of the wait, retried if a poll redrew it in between.
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"{by_guard} summary").click() or 1)
        # Unfolded, and still unfolded after the next polls re-render the timeline.
        evidence = text(f"{by_guard} details[open] pre")
        assert '"candidate"' in evidence
        updated = text("#updated")
        wait.until(lambda d: d.find_element(By.ID, "updated").text != updated)
        assert '"candidate"' in text(f"{by_guard} details[open] pre")
        assert "guard's evidence" in text(f"{by_guard} summary")
        wait.until(
            ec.text_to_be_present_in_element(
                (By.CSS_SELECTOR, f'{card} [data-field="status"]'), "rolled_back"
            )
        )

    # Nothing went wrong in the page: no script error, no CSP violation, no missing asset (the
    # refused client key's 403 and the latch's 409 are the failed requests meant to be).
    expected = (
        "/admin/ui/login - Failed to load resource: the server responded with a status of 403",
        "status of 409",
    )
    errors = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and not any(e in entry["message"] for e in expected)
    ]
    assert errors == []

    # Log out: back at the login page, and the console is gone.
    browser.find_element(By.ID, "logout").click()
    wait.until(ec.url_to_be(gateway.url + "/admin/ui/login"))
    assert browser.get_cookie("gateway_console") is None
    browser.get(gateway.url + "/admin/ui")
    wait.until(ec.url_to_be(gateway.url + "/admin/ui/login"))
    assert ROUTE not in browser.page_source
    assert httpx.get(f"{gateway.url}/admin/audit", params={"route": ROUTE}).status_code == 401
    audit = gateway.http.get(
        "/admin/audit",
        params={"route": ROUTE},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    ).json()["data"]
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("rollback", "guard"),
        ("set", "ops (alice)"),
        ("release", "ops (alice)"),
        ("rollback", "ops (alice)"),
        ("set", "ops (alice)"),
        ("ramp_resume", "ops (alice)"),
        ("ramp_pause", "ops (alice)"),
        ("ramp_start", "guard"),
    ]
