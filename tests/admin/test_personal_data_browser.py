"""Erasing a holder's personal data in a real browser (issue 20): Debian's headless Chromium
via Selenium, on a live server. A data protection officer erases a closed account's holder
through the confirmation page; the page then reads [erased] and the name is gone."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

import eventstore as es
from bank.domain import ERASED_NAME
from bank.models import PersonalDataKey
from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from tests.admin.browsing import grace_hopper, log_in, make_staff, navigate
from tests.support import chromium, ensure_roles

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture
def closed_account():
    """Grace Hopper's account, emptied and closed; the data_protection group (a
    transactional test's flush removed the groups its migration made)."""
    ensure_roles()
    importlib.import_module("bank.migrations.0007_data_protection_role").create_role(apps, None)
    account, _ = grace_hopper()
    system = Actor.system("tests")
    balance = svc.get_account(account.id).balance_cents
    svc.withdraw(account_id=account.id, amount_cents=balance, description="payout", actor=system)
    svc.close(account_id=account.id, reason="holder asked", actor=system)
    runner.catch_up()
    return account.id


def test_a_data_protection_officer_erases_a_closed_account_through_the_confirmation_page(
    browser, live_server, closed_account
):
    from selenium.webdriver.common.by import By

    make_staff("dana", "data_protection")
    log_in(browser, live_server, "dana")
    audit = f"{live_server.url}/admin/projections/accountbalance/{closed_account}/audit/"
    browser.get(audit)
    assert browser.find_element(By.ID, "state-holder").text == "Grace Hopper"
    assert not browser.find_elements(By.ID, "commands")  # no teller commands for dana
    navigate(browser, browser.find_element(By.ID, "erase-personal-data").click)

    # The confirmation page: what happens, irreversibly, the rules, and a required reason.
    assert "This cannot be undone" in browser.find_element(By.ID, "confirm-consequence").text
    assert "The account is closed" in browser.find_element(By.ID, "erasure-rules").text
    version = es.stream_version(closed_account)
    navigate(browser, browser.find_element(By.ID, "confirm-submit").click)  # no reason
    assert browser.find_element(By.ID, "erasure-errors")
    assert es.stream_version(closed_account) == version  # nothing written
    browser.find_element(By.ID, "id_erase-reason").send_keys("request 2026-114")
    navigate(browser, browser.find_element(By.ID, "confirm-submit").click)

    # Back on the audit page: the message, the name erased, the action gone.
    assert browser.current_url == audit
    message = browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    assert message.startswith("Personal data erased: the holder of account")
    assert browser.find_element(By.ID, "state-holder").text == ERASED_NAME
    assert browser.find_element(By.ID, "personal-data-erased")
    assert not browser.find_elements(By.ID, "erase-personal-data")
    assert "Grace Hopper" not in browser.page_source
    erased = es.read_stream(closed_account)[-1]
    assert erased.event_type == "PersonalDataErased" and erased.version == version + 1
    assert erased.metadata["actor"]["username"] == "dana"
    assert not PersonalDataKey.objects.filter(subject_id=closed_account).exists()
