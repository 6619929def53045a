"""The decline link in a real browser (headless Chromium through Selenium), on SQLite and
PostgreSQL: the link is taken from the contact request the capturing sink received; the page shows
in German for one case and in English for another, on a 320 px wide phone, with its language, its
heading and its button; clicking the button declines the case (the API says so), the business gets
its notice in the case's language, and a later answer from the reviewer is refused with 550.
Screenshots of each page are kept under pytest's tmp path and their paths printed."""

from __future__ import annotations

import email
import email.policy
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from relay.core import credentials
from relay.core.clock import ManualClock
from relay.store import api_keys
from tests.helpers.browser import chromium, screenshot
from tests.helpers.environment import Sink, new_case
from tests.helpers.links import decline_link
from tests.helpers.smtp import smtp_send

BUSINESS = "service@shop.example"  # the business of tests.helpers.environment.new_case
START = datetime(2026, 11, 2, 9, 0)

CASES = {  # locale: reviewer, what the mail's link says, the page's heading and button, after the click
    "de": ("max.mueller@example.de", "Ich möchte nicht antworten", "Sie möchten Beispiel Shop GmbH nicht antworten?",
           "Erledigt: Sie antworten nicht", "Keine Antwort gewünscht: Ihre Anfrage zu Bewertung R-browser-de"),
    "en": ("erika@example.org", "I do not want to answer", "You do not want to answer Beispiel Shop GmbH?",
           "Done: you will not answer", "The reviewer will not answer your request about review R-browser-en"),
}


def test_a_reviewer_declines_in_a_real_browser(db_url: str, app_factory: Any, relay_factory: Any, sink: Sink,
                                               tmp_path: Path) -> None:
    app = app_factory(db_url, ManualClock(START), outbound={"url": sink.url})
    key = credentials.new_api_key()
    api_keys.create("platform-test", credentials.digest(key), START)
    relay = relay_factory(app)
    api = httpx.Client(base_url=app.settings.api.public_url, headers={"Authorization": f"Bearer {key}"})
    shots: list[Path] = []
    for locale, (reviewer, words, heading, done, subject) in CASES.items():
        opened = new_case(app, reviewer=reviewer, review_id=f"R-browser-{locale}", locale=locale)
        [request] = sink.wait(reviewer)
        link = decline_link(request["raw"], words)
        with chromium(language={"de": "de-DE", "en": "en-GB"}[locale]) as browser:
            browser.get(link)
            assert browser.execute_script("return document.documentElement.lang") == locale
            assert browser.find_element(By.TAG_NAME, "h1").text == heading
            button = browser.find_element(By.CSS_SELECTOR, "form[method=post] button[type=submit]")
            assert button.text == words and button.is_displayed()
            assert browser.execute_script("return window.innerWidth") == 320
            # nothing wider than the phone: no sideways scrolling, the button within the screen
            assert browser.execute_script("return document.documentElement.scrollWidth") <= 320
            assert button.location["x"] >= 0 and button.location["x"] + button.size["width"] <= 320
            shots.append(screenshot(browser, tmp_path / f"decline-{locale}.png"))
            assert api.get(f"/v1/cases/{opened.case_id}").json()["state"] == "awaiting_reply"

            button.click()
            # while the browser swaps pages, asking for the heading may fail in several ways (the old
            # node gone, the new document not there yet): each is only "not yet"
            try:
                WebDriverWait(browser, 20, ignored_exceptions=(WebDriverException,)).until(
                    lambda b, done=done: b.find_element(By.TAG_NAME, "h1").text == done)
            except TimeoutException:
                state = api.get(f"/v1/cases/{opened.case_id}").json()["state"]
                raise AssertionError(f"no confirmation after the click (case {state}): {browser.current_url} "
                                     f"{browser.page_source[:2000]}") from None
            assert browser.execute_script("return document.documentElement.lang") == locale
            assert browser.find_elements(By.TAG_NAME, "form") == []
            shots.append(screenshot(browser, tmp_path / f"decline-done-{locale}.png"))
            problems = [entry["message"] for entry in browser.get_log("browser") if entry["level"] != "INFO"]
            assert problems == [], problems  # no CSP violation, nothing failed to load

        case = api.get(f"/v1/cases/{opened.case_id}").json()
        assert case["state"] == "declined" and case["declined_at"]
        notices = _notices(sink, subject)
        assert len(notices) == 1, [m["Subject"] for m in notices]
        code, text = smtp_send(relay.port, reviewer, opened.reviewer_address,
                               f"From: <{reviewer}>\r\nSubject: Re\r\n\r\nDoch noch: BE-9\r\n".encode())
        assert (code, text[:5]) == (550, "5.1.1"), text
    for shot in shots:
        assert shot.stat().st_size > 1000
        print(f"screenshot: {shot}")


def _notices(sink: Sink, subject: str, timeout: float = 20) -> list[email.message.EmailMessage]:
    """The business's notices with that subject, once there is one."""
    end = time.monotonic() + timeout
    while True:
        found = [m for m in (email.message_from_bytes(n["raw"], policy=email.policy.default)
                             for n in sink.to(BUSINESS, "notice")) if str(m["Subject"]) == subject]
        if found or time.monotonic() > end:
            return found
        time.sleep(0.1)
