"""The user-interactive flow in a real browser: headless Chromium, driven by Playwright.

The discharge service (``discharge_app`` under 4 gunicorn workers, flows in
SQLite, as in test_discharge_workers.py) serves its own user page. A real
:class:`DischargeClient` starts a discharge; its ``open_user_url`` is the
browser, which opens the user URL and presses the buttons a person would.
Then the client's poll receives the discharge, and the discharged header
authorizes a request with a :class:`Verifier`.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run``);
Playwright never downloads a browser. Without it the test skips, saying
why; under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from test_discharge_workers import FirstParty, Pids, client, serve

from macaroons_authz import new_encryption_key

CHROMIUM = Path("/usr/bin/chromium")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI the browser test must run (.ci/run installs Chromium)")
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A fresh headless Chromium context (no cookies)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install '.[test]'")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = chromium.new_context()
            yield context
            context.close()
        finally:
            chromium.close()


@contextlib.contextmanager
def forging_site(target: str) -> Iterator[str]:
    """Another site (``localhost``, not ``127.0.0.1``) whose page posts "approve" to *target*."""
    form = (
        f'<!DOCTYPE html><form method="post" action="{target}">'
        f'<input name="csrf" value="{"0" * 64}"><input name="decision" value="approve">'
        '<button id="go">go</button></form>'
    ).encode()

    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response(
            "200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(form)))]
        )
        return [form]

    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://localhost:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_user_approves_in_a_real_browser(browser: Any, tmp_path: Path) -> None:
    with serve(
        "gunicorn", tmp_path, f"sqlite:{tmp_path / 'flows.db'}", tp_key=new_encryption_key()
    ) as srv:
        party = FirstParty(srv.location, srv.tp_key)
        page = browser.new_page()
        seen: dict[str, Any] = {}

        def open_user_url(url: str) -> None:
            seen["url"] = url
            response = page.goto(url)
            assert response.status == 200
            assert page.title() == "Approve access"
            assert "Organization" in page.inner_text("body")  # the ticket's conditions
            headers = response.headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["referrer-policy"] == "same-origin"

            # A forged approval from another site: refused, the flow stays pending.
            forger = browser.new_page()
            with forging_site(url) as forged_page:
                forger.goto(forged_page)
                with forger.expect_navigation(wait_until="load"):
                    forger.click("#go")
            assert "must be sent from its own page" in forger.inner_text("body")
            forger.close()

            # Not signed in: the application refuses, and the flow stays pending.
            with page.expect_navigation(wait_until="load"):
                page.get_by_role("button", name="Approve").click()
            assert page.title() == "Not approved", page.inner_text("body")

            # Signed in as Ada: reload the page, approve.
            host = url.split("/")[2].split(":")[0]
            browser.add_cookies([{"name": "session", "value": "ada", "domain": host, "path": "/"}])
            page.goto(url)
            with page.expect_navigation(wait_until="load"):
                page.get_by_role("button", name="Approve").click()
            assert page.title() == "Approved"
            assert "You may close this window." in page.inner_text("body")
            page.screenshot(path=str(tmp_path / "approved.png"))

        pids = Pids()
        bundle, _ = party.bundle()
        (added,) = client(srv.location, pids, open_user_url=open_user_url).fetch(bundle)
        assert added.location == srv.location
        assert party.authorize(bundle) == [7]
        # The user URL is spent once the flow is finished.
        assert page.goto(seen["url"]).status == 404
        assert page.title() == "Link expired"
