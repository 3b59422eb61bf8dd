"""The Content-Security-Policy as Chromium enforces it: the admin's pages, an account's audit
page and the API docs load with nothing refused (Debian's headless Chromium via Selenium, on
a live server; skipped without Chromium outside CI, like tests/admin/test_browser.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from tests.admin.browsing import replaced
from tests.support import chromium, ensure_roles

pytestmark = pytest.mark.django_db(transaction=True)

ARTIFACTS = Path(
    os.environ.get("TEST_ARTIFACTS_DIR", Path(__file__).resolve().parents[1] / "test-artifacts")
)
CSP = "Content Security Policy"
LIVE_STATUS = ".live-responses-table tr.response .response-col_status"  # Swagger UI's answer

# Injected by the browser itself into every new document, before the page's own code (the
# policy does not apply to it): each violation the page causes, as the DOM reports it.
VIOLATION_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(
  `${e.violatedDirective} refused ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`
));
"""


@pytest.fixture
def browser():
    # The console, where Chromium reports every resource the policy refused.
    with chromium(console=True) as driver:
        driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument", {"source": VIOLATION_LISTENER}
        )
        yield driver


def violations(browser):
    """What the policy refused on the page: the console's reports since the last call
    (reading the log empties it) and the page's ``securitypolicyviolation`` events."""
    reported = [e["message"] for e in browser.get_log("browser") if CSP in e["message"]]
    return reported + (browser.execute_script("return window.__cspViolations || []") or [])


def load(browser, url):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 15).until(
        lambda driver: driver.execute_script("return document.readyState") == "complete"
    )


def csp_header(live_server, path, cookies):
    """The policy the server sent with ``path`` (Selenium does not show response headers)."""
    import urllib.request

    request = urllib.request.Request(
        f"{live_server.url}{path}",
        headers={"Cookie": "; ".join(f"{c['name']}={c['value']}" for c in cookies)},
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.headers["Content-Security-Policy"]


@pytest.fixture
def teller_and_account():
    ensure_roles()
    user = User.objects.create_user("tom", password="s3cret-pass", is_staff=True)
    user.groups.add(Group.objects.get(name="tellers"))
    account = svc.open_account(
        holder_name="Grace Hopper", initial_balance_cents=10_000, actor=Actor.system("seed")
    )
    svc.deposit(
        account_id=account.id, amount_cents=2_500, description="day 1", actor=Actor.system("s")
    )
    runner.catch_up()
    return account.id


def test_the_admin_the_audit_page_and_the_api_docs_work_under_the_policy(
    browser, live_server, teller_and_account
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    account_id = teller_and_account
    load(browser, f"{live_server.url}/admin/login/")
    refused = {"login page": violations(browser)}
    browser.find_element(By.NAME, "username").send_keys("tom")
    browser.find_element(By.NAME, "password").send_keys("s3cret-pass")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "logout-form"))

    pages = {
        "admin index": "/admin/",
        "account list": "/admin/projections/accountbalance/",
        "audit page": f"/admin/projections/accountbalance/{account_id}/audit/",
        "api docs": "/api/docs/",
    }
    headers = {}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, path in pages.items():
        violations(browser)  # whatever the previous page reported late
        load(browser, f"{live_server.url}{path}")
        if name == "api docs":
            # Swagger UI's start-up script ran (a file now, not inline) and drew the schema.
            WebDriverWait(browser, 20).until(
                lambda d: "Ledgerline API" in d.find_element(By.CSS_SELECTOR, ".info .title").text
            )
            # Try one operation: the request goes out (with the session) and its answer shows.
            browser.find_element(By.CSS_SELECTOR, ".opblock-get .opblock-summary").click()
            browser.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
            browser.find_element(By.CSS_SELECTOR, ".execute").click()
            WebDriverWait(browser, 20).until(
                lambda d: (
                    [e.text.strip() for e in d.find_elements(By.CSS_SELECTOR, LIVE_STATUS)]
                    == ["200"]
                )
            )
        elif name == "audit page":
            assert browser.find_element(By.ID, "state-balance").text == "125.00 EUR"
        elif name == "account list":
            assert "Grace Hopper" in browser.find_element(By.ID, "result_list").text
        refused[name] = violations(browser)
        headers[name] = csp_header(live_server, path, browser.get_cookies())
        browser.save_screenshot(str(ARTIFACTS / f"csp-{name.replace(' ', '-')}.png"))

    assert refused == {name: [] for name in refused}, refused
    for name, header in headers.items():
        directives = {d.strip() for d in header.split(";")}
        assert {
            "default-src 'self'",
            "script-src 'self'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        } <= directives, (name, header)
        assert any(d.startswith("style-src 'self'") for d in directives), (name, header)


def test_the_lockout_page_shows_under_the_policy(browser, live_server, settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    User.objects.create_user("ann", password="s3cret-pass", is_staff=True)
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        load(browser, f"{live_server.url}/admin/login/")
        browser.find_element(By.NAME, "username").send_keys("ann")
        browser.find_element(By.NAME, "password").send_keys("wrong")
        old_page = browser.find_element(By.TAG_NAME, "html")
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        WebDriverWait(browser, 15).until(replaced(old_page))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Too many failed logins"
    assert "axes_reset_username ann" in browser.find_element(By.ID, "content").text
    assert violations(browser) == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "login-lockout.png"))
