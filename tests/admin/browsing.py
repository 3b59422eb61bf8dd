"""What the browser tests of the admin share: staff users, logging in, waiting for a page,
and Grace Hopper's account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User

from bank.services import Actor
from bank.services import accounts as svc
from tests.support import ensure_roles

PASSWORD = "s3cret-pass"


def make_staff(name, *groups):
    ensure_roles()
    user = User.objects.create_user(name, password=PASSWORD, is_staff=True)
    for group in groups:
        user.groups.add(Group.objects.get(name=group))
    return user


def navigate(browser, action):
    """Run ``action`` (a click, a submit, a key that loads a page) and wait until the new
    page is in.

    Selenium returns from ``click()`` before the browser has replaced the page, so reading the
    page straight after can see the old one. Waiting for the old ``<html>`` to go stale and the
    new document to finish loading removes that race.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old_page = browser.find_element(By.TAG_NAME, "html")
    action()
    wait = WebDriverWait(browser, 15)
    wait.until(replaced(old_page))
    wait.until(lambda driver: driver.execute_script("return document.readyState") == "complete")


def replaced(old_page):
    """A wait condition: the page that held ``old_page`` is gone.

    Selenium's ``staleness_of`` expects a StaleElementReferenceException; in the middle of a
    navigation chromedriver can answer "Node with given id does not belong to the document"
    instead (a plain WebDriverException), which is the same fact. Any other error while the
    page changes means "not yet": the wait polls again.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    def gone(_driver):
        try:
            old_page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            return "does not belong to the document" in str(error)
        return False

    return gone


def log_in(browser, live_server, name):
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(name)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    navigate(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click)
    if not browser.find_elements(By.ID, "logout-form"):
        errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".errornote, .errorlist")]
        pytest.fail(f"logging in as {name} failed on {browser.current_url!r}: {errors}")


def grace_hopper(describe: Callable[[int], str] = lambda day: f"day {day}"):
    """Grace Hopper's account, opened three days ago with 100.00 EUR and given a deposit on
    each of the next two days (``describe(day)``), and Someone Else's; both states."""
    start = datetime.now(UTC) - timedelta(days=3)
    system = Actor.system("seed")
    other = svc.open_account(holder_name="Someone Else", actor=system)
    account = svc.open_account(
        holder_name="Grace Hopper", initial_balance_cents=10_000, actor=system, clock=lambda: start
    )
    for day, amount in ((1, 2_500), (2, 700)):
        svc.deposit(
            account_id=account.id,
            amount_cents=amount,
            description=describe(day),
            actor=system,
            clock=lambda d=day: start + timedelta(days=d),
        )
    return account, other
