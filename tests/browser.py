"""Headless Chromium for tests, driven by Selenium through Debian's chromedriver, that can reach
loopback only and says so.

- Browser and driver are the Debian packages (`chromium`, `chromium-driver`, listed in
  tests/system-packages.txt), named by absolute path. Passing the driver's path to `Service`
  skips Selenium Manager, the binary inside the selenium wheel that otherwise looks up and
  downloads browsers and drivers (selenium/webdriver/common/driver_finder.py). `SE_MANAGER_PATH`
  is pointed at a file that does not exist, so should Selenium Manager ever run it fails the
  test at once instead of reaching the network (selenium/webdriver/common/selenium_manager.py).
- Chromium's proxy is an `OutboundRecorder` on loopback. Chromium bypasses the proxy only for
  loopback (its implicit bypass rules), so a request for any other host, the browser's own
  background traffic included, reaches the recorder instead of the network: it is refused and
  written down for the test to assert on.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.procs import wait_for

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here (with how to fix it), or None when they can."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        return (
            f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
            "(`make system-packages` as root)"
        )
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed: `make install` (the `test` extra)"
    return None


class OutboundRecorder:
    """A proxy on loopback that answers every request with 403 and records its first line."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="outbound-recorder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            with conn:
                conn.settimeout(5)
                try:
                    line = conn.recv(4096).split(b"\r\n", 1)[0]
                    self.requests.append(line.decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def stop(self) -> None:
        # close() alone leaves accept() blocked in its thread; shutdown() wakes it (Linux).
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)


@dataclass(frozen=True)
class Response:
    """One response the browser finished receiving, as WebDriver BiDi reports it."""

    url: str
    status: int
    challenges: tuple[tuple[str, str], ...]  # (scheme, realm) of each WWW-Authenticate


class Browser:
    """A Chromium session, the responses it received, and what tried to leave loopback."""

    def __init__(self, driver: WebDriver, outbound: OutboundRecorder) -> None:
        self.driver = driver
        self.outbound = outbound
        self.responses: list[Response] = []
        driver.network.add_event_handler("response_completed", self._record)

    def _record(self, params: Any) -> None:
        response = params.response or {}
        challenges = tuple((c["scheme"], c["realm"]) for c in response.get("authChallenges") or ())
        self.responses.append(Response(response.get("url", ""), response.get("status", 0), challenges))

    def open(self, url: str, status: int = 200, timeout: float = 20) -> Response:
        """Navigate to `url` and wait until its response (with `status`) has arrived.

        The wait is on the BiDi event, not on a WebDriver command: chromedriver runs one command
        at a time per session and its commands wait for pending navigations, so a command sent
        while a login prompt is open would hold up the BiDi answer to that prompt (the session
        uses the "none" page-load strategy for the same reason).
        """
        seen = len(self.responses)
        self.driver.get(url)
        return self.wait_response(url, status, timeout, since=seen)

    def wait_response(
        self, url: str, status: int | None = None, timeout: float = 20, since: int = 0
    ) -> Response:
        """The first response for `url` (with `status`, if given) received since `since`."""

        def arrived() -> Response | None:
            return next(
                (
                    r
                    for r in self.responses[since:]
                    if r.url == url and (status is None or r.status == status)
                ),
                None,
            )

        response = wait_for(arrived, timeout, f"the browser to receive {status or 'a response'} from {url}")
        assert isinstance(response, Response)
        return response


@contextmanager
def chromium(
    log_dir: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int] = (1280, 1000)
) -> Iterator[Browser]:
    """A headless Chromium session with WebDriver BiDi (for login prompts and network events)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_MANAGER_PATH", str(log_dir / "selenium-manager-must-not-run"))
    monkeypatch.setenv("SE_OFFLINE", "true")
    recorder = OutboundRecorder()
    profile = log_dir / "chromium-profile"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.enable_bidi = True
    options.page_load_strategy = "none"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        f"--window-size={size[0]},{size[1]}",
        f"--user-data-dir={profile}",
        f"--proxy-server=http://127.0.0.1:{recorder.port}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        # Fewer background calls to Google (Debian's wrapper, /etc/chromium.d/apikeys, gives the
        # browser API keys). The component updater and the sign-in check still try, whatever
        # the flags: they reach the recorder and no further.
        "--disable-features=NetworkTimeServiceQuerying,AutofillServerCommunication,"
        "OptimizationHints,Translate,MediaRouter",
        "--disable-client-side-phishing-detection",
        "--safebrowsing-disable-auto-update",
    ):
        options.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log_dir / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except BaseException:
        recorder.stop()
        raise
    try:
        yield Browser(driver, recorder)
    finally:
        driver.quit()
        recorder.stop()
        shutil.rmtree(profile, ignore_errors=True)
