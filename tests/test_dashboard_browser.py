"""The dashboard in a real browser: headless Chromium against the running stack (supervisord,
gunicorn, real workers, real Redis) with API tokens on, used the way an operator would.

Screenshots of each step land in `test-output/dashboard/` (or `$POSTAL_TEST_OUTPUT/dashboard/`)
for a person to look at afterwards.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.job import Job

from tasks.connection import SERIALIZER
from tests.browser import CHROMEDRIVER, chromium, missing_browser
from tests.jobs import FIXED_KEY
from tests.procs import ROOT, RedisServer, wait_for
from tests.stack import Stack, running_stack

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

TOKEN = "dashboard-browser-token-0123456789"  # noqa: S105 - a test token
JOB_ID = "dashboard-demo-1"
WORKERS = 2
MARKUP = "<img src=x onerror=document.title=42>"  # no quotes: shown verbatim in JSON and repr
WAIT_S = 20  # the machine is shared and loaded: generous, the test is quick when all is well

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))


@pytest.fixture
def shots() -> Path:
    """A stable directory for the screenshots, emptied first so none is left from an older run."""
    out = Path(os.environ.get("POSTAL_TEST_OUTPUT", ROOT / "test-output")) / "dashboard"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    return out


@pytest.fixture
def stack(redis: Redis, redis_server: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    """supervisord running the API under gunicorn and the workers, with a token required."""
    with running_stack(redis_server.url, tmp_path, workers=WORKERS, POSTAL_API_TOKENS=TOKEN) as running:
        yield running


def submit(api: str, task: str, payload: dict[str, object], **options: object) -> str:
    """Submit a job through the API over HTTP, as a caller with a token would; its id."""
    body = json.dumps({"task": task, "payload": payload, "options": options}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    request = urllib.request.Request(f"{api}/jobs", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        job_id: str = json.load(response)["id"]
        return job_id


def until(driver: WebDriver, condition: Callable[[WebDriver], object], what: str) -> object:
    """Wait for `condition` in the browser; on time-out say what was awaited and what shows."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(condition)
    except TimeoutException:
        text = driver.execute_script("return document.body ? document.body.innerText : ''")
        raise AssertionError(
            f"timed out waiting for {what} at {driver.current_url}; page shows:\n{text}"
        ) from None


def page_text(driver: WebDriver) -> str:
    text: str = driver.execute_script("return document.body.innerText")
    return text


def rows(driver: WebDriver, selector: str) -> list[list[str]]:
    """The cell texts of the table rows matching `selector`, read in one script: the dashboard
    re-renders its tables every few seconds, so element handles go stale between two reads."""
    script = """return Array.from(document.querySelectorAll(arguments[0]),
        row => Array.from(row.querySelectorAll('td'), cell => cell.innerText.trim()));"""
    found: list[list[str]] = driver.execute_script(script, selector)
    return found


def queue_row(driver: WebDriver, name: str) -> list[str] | None:
    """The queues table's cells for queue `name` (name, queued, deferred, scheduled, started,
    finished, failed, canceled), or None while it is not shown."""
    return next((row for row in rows(driver, "table#queues tr[data-role=queue]") if row[0] == name), None)


def click(driver: WebDriver, selector: str, what: str) -> None:
    """Click the element matching `selector`, again if a re-render replaced it under the click."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked(d: WebDriver) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, selector).click()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return True

    until(driver, clicked, what)


def test_operator_requeues_a_failed_job_from_the_dashboard(
    stack: Stack, redis: Redis, shots: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person logs in to /rq, sees queues, workers and a failed job's traceback, requeues it
    with the button (a POST) after the fix, and watches it finish; another site's forged form is
    refused, a caller's markup is shown as text, and nothing leaves loopback."""
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    queue = Queue("default", connection=redis, serializer=SERIALIZER)
    queue.enqueue("tests.jobs.fails_until_fixed", "nightly report", job_id=JOB_ID)
    wait_for(
        lambda: Job.fetch(JOB_ID, connection=redis, serializer=SERIALIZER).get_status() == "failed",
        WAIT_S,
        "the job to fail on the bug",
    )
    rq = f"{stack.api}/rq"

    with chromium(tmp_path, monkeypatch) as browser:
        driver = browser.driver
        assert driver.service.path == str(CHROMEDRIVER)  # named, so Selenium Manager never ran
        # The browser is challenged for a login; a person who cancels the prompt sees why.
        prompt = driver.network.add_authentication_handler(lambda prompt: prompt.cancel())
        refused = browser.open(f"{rq}/", status=401)
        assert refused.challenges == (("Basic", "postal"),)
        until(driver, lambda d: "any user name and an API token" in page_text(d), "the refusal")
        driver.save_screenshot(shots / "01-login-cancelled.png")
        driver.network.remove_authentication_handler(prompt)

        # Log in at the same prompt as a person does: any user name, a token as the password.
        driver.network.add_authentication_handler(
            lambda prompt: prompt.provide_credentials("operator", TOKEN)
        )
        browser.open(f"{rq}/")
        until(driver, lambda d: (row := queue_row(d, "default")) and row[6] == "1", "1 failed job on default")
        assert queue_row(driver, "default") == ["default", "0", "0", "0", "0", "0", "1", "0"]
        driver.save_screenshot(shots / "02-queues.png")

        click(driver, "a.nav-link[href$='/view/workers']", "the Workers tab")
        expected_workers = sorted(w.name for w in Worker.all(connection=redis))
        assert len(expected_workers) == WORKERS
        until(
            driver,
            lambda d: (
                sorted(row[0] for row in rows(d, "table#workers tr[data-role=worker]")) == expected_workers
            ),
            f"workers {expected_workers}",
        )
        assert all(
            row[1:] == ["idle", "high, default, low"]
            for row in rows(driver, "table#workers tr[data-role=worker]")
        )
        driver.save_screenshot(shots / "03-workers.png")

        # Whatever a caller puts in a job's arguments shows as text: no markup of theirs runs
        # in the operator's logged-in page, neither while the job runs nor in its job view.
        marked = submit(stack.api, "message", {"message": MARKUP, "delay_s": 4}, queue="high")
        until(
            driver,
            lambda d: any(MARKUP in cell for row in rows(d, "table#workers tr") for cell in row),
            "the running job's call, as text",
        )
        assert not driver.find_elements(By.CSS_SELECTOR, "table#workers img")
        browser.open(f"{rq}/0/view/job/{marked}")
        until(driver, lambda d: MARKUP in page_text(d), "the job's description, as text")
        assert not driver.find_elements(By.CSS_SELECTOR, "#job-data img")
        assert driver.title == "RQ dashboard"  # 42 had the markup run

        # From the queue's failed count to the failed-jobs view, with the traceback.
        driver.save_screenshot(shots / "04-markup-shown-as-text.png")
        click(driver, "a.nav-link[href$='/view/queues']", "the Queues tab")
        click(driver, "table#queues tr[data-role=queue] td.failed a[href*='/failed/']", "the failed count")
        job_row = f"tr[data-role=job][data-job-id='{JOB_ID}']"
        until(driver, lambda d: rows(d, job_row), "the failed job's row")
        traceback = driver.execute_script(
            f'return document.querySelector("{job_row} pre.exc_info").innerText'
        )
        assert "Traceback (most recent call last)" in traceback
        assert "fails_until_fixed" in traceback
        assert "NotFixedYet: nightly report: the fix is not deployed yet" in traceback
        driver.save_screenshot(shots / "05-failed-with-traceback.png")
        failed_view = driver.current_url

        # Another site's page cannot act with the operator's login: the browser sends the
        # cached credentials with its form, and the dashboard refuses the action.
        forged = (
            f"<form method=post action='{rq}/requeue/default'></form>"
            "<script>document.forms[0].submit()</script>"
        )
        seen = len(browser.responses)
        driver.get("data:text/html," + quote(forged))
        refused = browser.wait_response(f"{rq}/requeue/default", since=seen)
        assert refused.status == 403, refused
        until(driver, lambda d: "cross_site_request" in page_text(d), "the forged request's refusal")
        driver.save_screenshot(shots / "06-forged-request-refused.png")
        assert Job.fetch(JOB_ID, connection=redis, serializer=SERIALIZER).get_status() == "failed"
        browser.open(failed_view)
        until(driver, lambda d: rows(d, job_row), "the failed job's row again")

        # The fix is deployed; the operator clicks the job's Requeue button.
        redis.set(FIXED_KEY, "1")
        click(driver, f"{job_row} [data-role=requeue-job-btn]", "the job's Requeue button")
        until(driver, lambda d: not rows(d, job_row), "the requeued job to leave the failed list")

        browser.open(f"{rq}/0/view/job/{JOB_ID}")
        until(driver, lambda d: "Status:\nfinished" in page_text(d), "the job view to show it finished")
        assert '"nightly report: fixed"' in page_text(driver)
        driver.save_screenshot(shots / "07-job-finished.png")

        browser.open(f"{rq}/")
        until(
            driver, lambda d: (row := queue_row(d, "default")) and row[5] == "1", "1 finished job on default"
        )
        assert queue_row(driver, "default") == ["default", "0", "0", "0", "0", "1", "0", "0"]
        driver.save_screenshot(shots / "08-queues-after-requeue.png")

        # A link cannot requeue: the same route by GET is refused, in the browser too.
        browser.open(f"{rq}/requeue/default", status=405)
        until(driver, lambda d: "method_not_allowed" in page_text(d), "GET requeue to be refused")

        # Nothing left loopback: every response the pages got came from the app; the browser's
        # own background calls (see tests/browser.py) and a page on another host only ever
        # reached the recorder on loopback, which refused them.
        fetched = {urlsplit(r.url).netloc for r in browser.responses if not r.url.startswith("data:")}
        assert fetched == {urlsplit(stack.api).netloc}, fetched
        elsewhere = "http://postal-outbound-check.invalid/"
        browser.open(elsewhere, status=403)
        assert f"GET {elsewhere} HTTP/1.1" in browser.outbound.requests
        print("held on loopback:", *browser.outbound.requests, sep="\n  ")

    elapsed = time.monotonic() - started
    access_log = (stack.root / "var" / "log" / "api.log").read_text()
    assert f'"POST /rq/job/{JOB_ID}/requeue HTTP/1.1" 200' in access_log
    assert f"GET /rq/job/{JOB_ID}/requeue" not in access_log
    job = Job.fetch(JOB_ID, connection=redis, serializer=SERIALIZER)
    assert job.get_status() == "finished"
    assert job.return_value() == "nightly report: fixed"
    print(f"browser scenario took {elapsed:.1f} s; screenshots in {shots}")
