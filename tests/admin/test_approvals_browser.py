"""Maker-checker and reversals in a real browser (issue 21): Debian's headless Chromium via
Selenium, on a live server. A teller's freeze becomes a request that an approver approves in
the queue; a teller reverses a deposit from the timeline and sees both rows linked."""

from __future__ import annotations

import pytest

from bank.models import ApprovalRequest
from bank.services import accounts as svc
from projections import runner
from tests.admin.approving import QUEUE_URL, audit_url, ensure_approvers, rule_on
from tests.admin.browsing import grace_hopper, log_in, make_staff, navigate
from tests.support import chromium

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture
def history():
    ensure_approvers()
    account, other = grace_hopper()
    runner.catch_up()
    return account.id


def test_a_tellers_freeze_waits_in_the_queue_until_an_approver_approves_it(
    browser, live_server, history, settings
):
    from selenium.webdriver.common.by import By

    rule_on(settings)
    make_staff("tom", "tellers")
    make_staff("ann", "approvers")
    log_in(browser, live_server, "tom")
    browser.get(f"{live_server.url}{audit_url(history)}")
    browser.find_element(By.ID, "id_freeze-reason").send_keys("Card reported stolen")
    navigate(browser, browser.find_element(By.ID, "submit-freeze").click)
    assert (
        "needs a second person's approval" in browser.find_element(By.ID, "confirm-approval").text
    )
    submit = browser.find_element(By.ID, "confirm-submit")
    assert submit.get_attribute("value") == "Send for approval: freeze the account"
    navigate(browser, submit.click)
    message = browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    assert message.startswith("Sent for approval: request ") and "waits for an approver" in message
    assert browser.find_element(By.ID, "state-status").text == "active"
    row = ApprovalRequest.objects.get()
    link = browser.find_element(By.CSS_SELECTOR, ".messagelist a.approval-link")
    assert link.get_attribute("href").endswith(f"{QUEUE_URL}{row.id}/decide/")

    # The teller sees the request, read-only.
    navigate(browser, link.click)
    assert browser.find_element(By.ID, "request-kind").text == "freeze"
    assert (
        "Only members of the approvers group"
        in browser.find_element(By.ID, "decision-read-only").text
    )
    assert not browser.find_elements(By.ID, "approve-submit")

    # The approver finds it in the queue, sees what it changes, and approves it.
    browser.delete_all_cookies()
    log_in(browser, live_server, "ann")
    browser.get(f"{live_server.url}{QUEUE_URL}")
    assert (
        "Always approved by a second person: freeze, close."
        in browser.find_element(By.ID, "approval-rule").text
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1 and "Grace Hopper" in rows[0].text and "tom" in rows[0].text
    navigate(browser, rows[0].find_element(By.CLASS_NAME, "decide-link").click)
    preview = browser.find_element(By.ID, "preview-table").text
    assert "active" in preview and "frozen" in preview
    browser.find_element(By.ID, "id_approve-note").send_keys("called the customer")
    navigate(browser, browser.find_element(By.ID, "approve-submit").click)
    message = browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    assert "Approved: request" in message and "frozen" in message
    assert not browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr a.decide-link")
    assert svc.get_account(history).status == "frozen"
    assert ApprovalRequest.objects.get().decided_by == "ann"

    browser.get(f"{live_server.url}{audit_url(history)}")
    assert browser.find_element(By.ID, "state-status").text == "frozen"
    top = browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")[0]
    assert top.find_element(By.CLASS_NAME, "event-type").text == "AccountFrozen"
    assert top.find_element(By.CLASS_NAME, "actor").text == "tom"


def test_a_teller_reverses_a_deposit_from_the_timeline_and_sees_both_rows_linked(
    browser, live_server, history
):
    from selenium.webdriver.common.by import By

    make_staff("tom", "tellers")
    log_in(browser, live_server, "tom")
    browser.get(f"{live_server.url}{audit_url(history)}")
    deposit = browser.find_element(By.ID, "version-2")
    assert deposit.find_element(By.CLASS_NAME, "event-type").text == "MoneyDeposited"
    navigate(browser, deposit.find_element(By.CLASS_NAME, "reverse-link").click)
    assert "reverse version 2" in browser.find_element(By.ID, "confirm-summary").text
    assert browser.find_element(By.ID, "confirm-balance-after").text == "107.00 EUR"
    # No reason: the page says so, and nothing is written.
    navigate(browser, browser.find_element(By.ID, "confirm-submit").click)
    assert "give a reason" in browser.find_element(By.ID, "reversal-errors").text
    assert svc.get_account(history).version == 3
    browser.find_element(By.ID, "id_reverse-reason").send_keys("posted to the wrong account")
    navigate(browser, browser.find_element(By.ID, "confirm-submit").click)
    message = browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    assert "Reversal done: version 2" in message and "reversed by version 4" in message
    assert browser.find_element(By.ID, "state-balance").text == "107.00 EUR"

    reversal = browser.find_element(By.ID, "version-4")
    assert reversal.find_element(By.CLASS_NAME, "event-type").text == "PostingReversed"
    assert reversal.find_element(By.CLASS_NAME, "amount").text == "-25.00"
    back = reversal.find_element(By.CLASS_NAME, "reverses-link")
    assert back.text == "reverses v2"
    original = browser.find_element(By.ID, "version-2")
    struck = original.find_element(By.CSS_SELECTOR, "td.amount del")
    assert struck.value_of_css_property("text-decoration-line") == "line-through"
    assert "reversed" in struck.get_attribute("textContent")
    assert not original.find_elements(By.CLASS_NAME, "reverse-link")
    forward = original.find_element(By.CLASS_NAME, "reversed-by-link")
    assert forward.text == "reversed by v4"
    forward.click()
    assert browser.current_url.endswith("#version-4")
    back.click()
    assert browser.current_url.endswith("#version-2")

    # Hiding the reversed pair leaves the other rows.
    navigate(browser, browser.find_element(By.ID, "hide-reversed").click)
    shown = [
        row.get_attribute("data-version")
        for row in browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")
    ]
    assert shown == ["3", "1"]
