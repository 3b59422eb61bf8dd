"""The admin in a real browser: Debian's headless Chromium via Selenium, on a live server."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

import eventstore as es
from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from tests.admin.browsing import grace_hopper, log_in, make_staff, navigate
from tests.support import chromium, triggers_disabled

pytestmark = pytest.mark.django_db(transaction=True)

ARTIFACTS = Path(
    os.environ.get("TEST_ARTIFACTS_DIR", Path(__file__).resolve().parents[2] / "test-artifacts")
)


@pytest.fixture
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture
def history():
    account, other = grace_hopper()
    runner.catch_up()
    return account.id, other.id


def test_an_auditor_finds_an_account_travels_in_time_and_opens_an_event(
    browser, live_server, history
):
    from selenium.webdriver.common.by import By

    account_id, _ = history
    make_staff("audrey", "auditors")
    log_in(browser, live_server, "audrey")
    browser.get(f"{live_server.url}/admin/projections/accountbalance/")
    search = browser.find_element(By.ID, "searchbar")
    search.send_keys("grace")
    navigate(browser, search.submit)
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1 and "Grace Hopper" in rows[0].text
    navigate(browser, rows[0].find_element(By.LINK_TEXT, "Grace Hopper").click)
    assert browser.find_element(By.ID, "state-balance").text == "132.00 EUR"
    assert "intact" in browser.find_element(By.ID, "chain-status").text
    assert not browser.find_elements(By.ID, "commands")  # auditors change nothing

    version = browser.find_element(By.ID, "id_as_of_version")
    version.send_keys("2")
    navigate(browser, browser.find_element(By.ID, "travel-submit").click)
    assert browser.find_element(By.ID, "past-version").text == "2"
    assert browser.find_element(By.ID, "past-balance").text == "125.00 EUR"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-audit-view.png"))

    first_row = browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")[0]
    assert first_row.get_attribute("data-version") == "3"
    navigate(browser, first_row.find_element(By.CLASS_NAME, "event-link").click)
    page = browser.page_source
    assert "MoneyDeposited" in page and "day 2" in page and str(account_id) in page
    assert not browser.find_elements(By.NAME, "_save")


def test_a_teller_freezes_an_account_and_sees_the_event_on_top(browser, live_server, history):
    from selenium.webdriver.common.by import By

    account_id, _ = history
    make_staff("tom", "tellers")
    log_in(browser, live_server, "tom")
    browser.get(f"{live_server.url}/admin/projections/accountbalance/{account_id}/audit/")
    browser.find_element(By.ID, "id_freeze-reason").send_keys("Card reported stolen")
    navigate(browser, browser.find_element(By.ID, "submit-freeze").click)
    # Django's intermediate page: it says what will happen; nothing has happened yet.
    summary = browser.find_element(By.ID, "confirm-summary").text
    assert (
        "freeze the account of Grace Hopper" in summary and "Nothing has been changed" in summary
    )
    assert browser.find_element(By.ID, "confirm-reason").text == "“Card reported stolen”"
    assert svc.get_account(account_id).status == "active"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-confirm-freeze.png"))
    navigate(browser, browser.find_element(By.ID, "confirm-submit").click)
    assert "Freeze done" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    assert browser.find_element(By.ID, "state-status").text == "frozen"
    top = browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")[0]
    assert top.find_element(By.CLASS_NAME, "event-type").text == "AccountFrozen"
    assert top.find_element(By.CLASS_NAME, "actor").text == "tom"
    assert "Card reported stolen" in top.text

    # A frozen account offers unfreezing, not money movements, and says why.
    assert not browser.find_elements(By.ID, "command-deposit")
    assert browser.find_element(By.ID, "command-unfreeze").is_displayed()
    notes = browser.find_element(By.ID, "commands-not-offered").text
    assert "Deposits and withdrawals are not offered" in notes and "132.00 EUR" in notes
    assert svc.get_account(account_id).version == 4


def test_a_teller_sees_a_tampered_account_withheld_with_every_command_disabled(
    browser, live_server, history
):
    from selenium.webdriver.common.by import By

    account_id, _ = history
    victim = es.read_stream(account_id)[1]
    cast = "%s::jsonb" if connection.vendor == "postgresql" else "%s"
    with triggers_disabled(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE events SET data = {cast} WHERE position = %s",
            ['{"amount_cents": 99999, "description": "day 1"}', victim.position],
        )
    make_staff("tess", "tellers")
    log_in(browser, live_server, "tess")
    browser.get(f"{live_server.url}/admin/projections/accountbalance/{account_id}/audit/")
    banner = browser.find_element(By.ID, "integrity-banner")
    assert banner.get_attribute("role") == "alert" and banner.is_displayed()
    assert "version 2" in banner.text and "verify_events --full" in banner.text
    assert "BROKEN" in browser.find_element(By.ID, "chain-status").text
    assert "Withheld" in browser.find_element(By.ID, "commands-withheld").text
    for name in ("deposit", "withdraw", "freeze"):  # what an active account with money offers
        assert not browser.find_element(By.ID, f"submit-{name}").is_enabled(), name
    assert not browser.find_elements(By.ID, "submit-close")
    for field in ("id_deposit-amount", "id_withdraw-description", "id_freeze-reason"):
        assert not browser.find_element(By.ID, field).is_enabled(), field
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-audit-withheld.png"))


def test_the_index_shows_the_integrity_panel_beside_the_app_list(browser, live_server, history):
    from selenium.webdriver.common.by import By

    call_command("verify_events", "--full", verbosity=0)
    root = es.last_run().root
    make_staff("audrey", "auditors")
    log_in(browser, live_server, "audrey")  # the login lands on the index
    panel = browser.find_element(By.ID, "integrity-panel")
    assert "integrity of the event store" in panel.text.lower()  # the caption is upper-cased
    assert browser.find_element(By.ID, "integrity-result").text == "OK"
    assert browser.find_element(By.ID, "integrity-root").text == root
    assert not panel.find_elements(By.CSS_SELECTOR, "[role=alert]")
    assert browser.find_element(By.CSS_SELECTOR, "#content-main .app-projections").is_displayed()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-index-integrity.png"))


def test_a_teller_deposits_in_euros_and_copies_an_account_id(browser, live_server, history):
    from selenium.webdriver.common.by import By

    account_id, _ = history
    make_staff("tom", "tellers")
    log_in(browser, live_server, "tom")
    browser.get(f"{live_server.url}/admin/projections/accountbalance/{account_id}/audit/")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=id_deposit-amount]").text == (
        "Deposit amount (EUR):"
    )
    amount = browser.find_element(By.ID, "id_deposit-amount")
    amount.send_keys("1.234")
    navigate(browser, browser.find_element(By.ID, "submit-deposit").click)
    error = browser.find_element(By.CSS_SELECTOR, "#command-deposit .errorlist").text
    assert "1.234 has too many decimals for EUR" in error
    assert browser.find_element(By.ID, "id_deposit-amount").get_attribute("value") == "1.234"
    assert svc.get_account(account_id).version == 3

    amount = browser.find_element(By.ID, "id_deposit-amount")
    amount.clear()
    amount.send_keys("12.50")
    navigate(browser, browser.find_element(By.ID, "submit-deposit").click)
    assert (
        "the balance is 144.50 EUR" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    )
    assert browser.find_element(By.ID, "state-balance").text == "144.50 EUR"
    top = browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")[0]
    cell = top.find_element(By.CSS_SELECTOR, "td.amount")
    assert cell.text == "12.50" and cell.value_of_css_property("text-align") == "right"
    assert "tabular-nums" in cell.value_of_css_property("font-variant-numeric")
    assert es.read_stream(account_id)[-1].data["amount_cents"] == 1250

    runner.catch_up()  # the list is the balance read model
    browser.get(f"{live_server.url}/admin/projections/accountbalance/")
    assert browser.title.endswith("| Ledgerline")
    row = next(
        r
        for r in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        if "Grace Hopper" in r.text
    )
    shown = row.find_element(By.CSS_SELECTOR, ".short-id-value")
    assert shown.text == str(account_id)[:8] + "…"
    assert shown.get_attribute("title") == str(account_id)
    assert row.find_element(By.CSS_SELECTOR, "td.field-balance").text == "144.50 EUR"
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {
            "origin": live_server.url,
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
        },
    )
    button = row.find_element(By.CSS_SELECTOR, "button.copy-id")
    button.click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 5).until(lambda driver: button.text == "Copied")
    pasted = browser.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, function (e) { done('error: ' + e); });"
    )
    assert pasted == str(account_id)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-account-list.png"))


# --- issue 17, part 2: links, the chart, two versions, statements ---------------------------


def test_an_auditor_follows_a_transfer_to_its_other_leg_its_command_and_its_teller(
    browser, live_server, history
):
    from selenium.webdriver.common.by import By

    account_id, other_id = history
    svc.transfer(
        from_account=account_id,
        to_account=other_id,
        amount_cents=200,
        description="lunch",
        actor=Actor("tom", None, "admin"),
    )
    runner.catch_up()
    make_staff("audrey", "auditors")
    log_in(browser, live_server, "audrey")
    browser.get(f"{live_server.url}/admin/projections/accountbalance/{account_id}/audit/")

    # The chart: an image with a name, one point per balance change (opening, two deposits,
    # the transfer), and a data table that only screen readers get.
    chart = browser.find_element(By.ID, "balance-chart-svg")
    assert chart.get_attribute("role") == "img" and chart.is_displayed()
    assert chart.accessible_name.startswith("Balance of Grace Hopper over time, in EUR")
    assert len(chart.find_elements(By.CSS_SELECTOR, "circle.chart-point")) == 4
    hidden = browser.find_element(By.ID, "balance-chart-data")  # 1 pixel, clipped
    assert hidden.size["width"] <= 1 and hidden.size["height"] <= 1
    assert len(hidden.find_elements(By.TAG_NAME, "tr")) == 5
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-audit-chart.png"))

    # The counterparty by name, to its own audit page.
    top = browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")[0]
    assert "TransferSent" in top.text and "(to Someone Else)" in top.text
    correlation = top.find_element(By.CSS_SELECTOR, "td.correlation a").get_attribute("href")
    navigate(browser, top.find_element(By.LINK_TEXT, "Someone Else").click)
    assert browser.find_element(By.ID, "state-holder").text == "Someone Else"
    assert browser.find_element(By.ID, "state-balance").text == "2.00 EUR"

    # The command: both legs, each on its account.
    browser.get(correlation)
    rows = browser.find_elements(By.CSS_SELECTOR, "#correlation-lines tbody tr")
    legs = {r.find_element(By.CLASS_NAME, "event-type").text: r for r in rows}
    assert set(legs) == {"TransferSent", "TransferReceived"}
    assert "Grace Hopper" in legs["TransferSent"].text and "-2.00 EUR" in legs["TransferSent"].text
    assert "Someone Else" in legs["TransferReceived"].text
    assert browser.find_element(By.ID, "correlation-command").text == "transfer"
    browser.save_screenshot(str(ARTIFACTS / "admin-correlation.png"))

    # The teller: everything tom did, newest first.
    navigate(browser, browser.find_element(By.CSS_SELECTOR, "#correlation-actors a").click)
    assert browser.find_element(By.ID, "id_actor").get_attribute("value") == "tom"
    types = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#actor-lines .event-type")]
    assert sorted(types) == ["TransferReceived", "TransferSent"]


def test_an_auditor_compares_two_versions_and_prints_a_statement(browser, live_server, history):
    from selenium.webdriver.common.by import By

    account_id, _ = history
    make_staff("audrey", "auditors")
    log_in(browser, live_server, "audrey")
    audit = f"{live_server.url}/admin/projections/accountbalance/{account_id}/audit/"
    browser.get(audit)
    browser.find_element(By.ID, "id_as_of_version").send_keys("2")
    navigate(browser, browser.find_element(By.ID, "travel-submit").click)
    marker = browser.find_element(By.ID, "chart-marker")
    assert marker.get_attribute("data-version") == "2" and marker.is_displayed()

    # Compare: A is prefilled with the version travelled to.
    assert browser.find_element(By.ID, "id_a").get_attribute("value") == "2"
    navigate(browser, browser.find_element(By.ID, "compare-submit").click)
    balance = browser.find_element(By.ID, "compare-balance").text
    assert "125.00 EUR" in balance and "132.00 EUR" in balance and "+7.00 EUR" in balance
    assert len(browser.find_elements(By.CSS_SELECTOR, "#compare-lines tbody tr")) == 1
    version_b = browser.find_element(By.ID, "id_b")
    version_b.clear()
    version_b.send_keys("9")
    navigate(browser, browser.find_element(By.ID, "compare-submit").click)
    error = browser.find_element(By.ID, "errors-b").text
    assert "Version 9 does not exist" in error and "from 1 to 3" in error
    assert not browser.find_elements(By.ID, "comparison")

    # A statement of the last two days: the opening balance, the day-2 deposit, the closing.
    browser.get(audit)
    today = timezone.localdate()
    for field, day in (("id_from", today - timedelta(days=1)), ("id_to", today)):
        browser.execute_script(
            "arguments[0].value = arguments[1];", browser.find_element(By.ID, field), str(day)
        )
    navigate(browser, browser.find_element(By.ID, "statement-submit").click)
    assert browser.find_element(By.ID, "statement-opening").text == "125.00 EUR"
    assert browser.find_element(By.ID, "statement-closing").text == "132.00 EUR"
    rows = browser.find_elements(By.CSS_SELECTOR, "#statement-lines tbody tr")
    assert len(rows) == 1 and "day 2" in rows[0].text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "admin-statement.png"))
    # On paper: the statement alone (no admin header, no forms).
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        assert not browser.find_element(By.ID, "header").is_displayed()
        assert not browser.find_element(By.ID, "statement-form").is_displayed()
        assert not browser.find_element(By.ID, "statement-print").is_displayed()
        assert browser.find_element(By.ID, "statement-lines").is_displayed()
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    assert browser.find_element(By.ID, "statement-print").is_displayed()
