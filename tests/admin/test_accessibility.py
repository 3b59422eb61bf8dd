"""The auditor's pages in a real browser against axe-core's WCAG 2.2 AA rules, the audit page
by keyboard alone, at 200% zoom, and its command forms' names (issue 17).

axe-core is the npm package pinned in package.json (``npm ci``, which ``make test`` runs,
installs it into node_modules); its script is injected through WebDriver, which the pages'
strict Content-Security-Policy does not govern (the pages themselves run no inline script).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import eventstore as es
from bank.services import Actor
from bank.services import accounts as svc
from projections import runner
from tests.admin.browsing import grace_hopper, log_in, make_staff, navigate
from tests.support import ROOT, chromium, require

pytestmark = pytest.mark.django_db(transaction=True)

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING = ("critical", "serious")


@pytest.fixture
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture
def axe_source() -> str:
    require(AXE.exists(), f"axe-core ({AXE})", "npm ci installs it (package.json)")
    return Path(AXE).read_text(encoding="utf-8")


@pytest.fixture
def history():
    """Grace Hopper's account: opened, two deposits, a transfer to Someone Else."""
    account, other = grace_hopper(
        lambda day: f"a rather long description of deposit number {day} for the timeline"
    )
    svc.transfer(
        from_account=account.id,
        to_account=other.id,
        amount_cents=200,
        description="lunch",
        actor=Actor("tom", None, "admin"),
    )
    runner.catch_up()
    return account.id


def axe_findings(browser, source):
    """The blocking (critical or serious) findings of axe's WCAG 2.2 AA rules on the page."""
    if not browser.execute_script("return typeof window.axe !== 'undefined'"):
        browser.execute_script(source)
    assert browser.execute_script("return typeof window.axe"), "axe-core did not load"
    result = browser.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: "
        "['violations']}).then(function (r) { done(JSON.stringify(r.violations)); },"
        "function (e) { done(JSON.stringify({error: String(e)})); });",
        TAGS,
    )
    violations = json.loads(result)
    assert not isinstance(violations, dict), violations
    return [v for v in violations if v.get("impact") in BLOCKING]


def describe(findings):
    lines = []
    for finding in findings:
        lines.append(f"{finding['id']} ({finding['impact']}): {finding['help']}")
        for node in finding["nodes"][:10]:
            lines.append(f"    {' '.join(map(str, node['target']))}: {node['html'][:200]}")
            if node.get("failureSummary"):
                lines.append("      " + node["failureSummary"].replace("\n", "\n      "))
    return "\n".join(lines)


def auditor_pages(live_server, account_id):
    event = es.read_stream(account_id)[1]
    audit = f"{live_server.url}/admin/projections/accountbalance/{account_id}/audit/"
    return {
        "index": f"{live_server.url}/admin/",
        "account list": f"{live_server.url}/admin/projections/accountbalance/",
        "audit page": audit,
        "audit page, time travel": f"{audit}?as_of_version=2",
        "comparison": f"{audit}compare/?a=1&b=4",
        "statement": f"{audit}statement/",
        "events": f"{live_server.url}/admin/eventstore/event/?q=grace",
        "event page": f"{live_server.url}/admin/eventstore/event/{event.position}/change/",
        "access log": f"{live_server.url}/admin/bank/accesslogentry/",
    }


def test_the_auditors_pages_have_no_serious_or_critical_axe_finding(
    browser, live_server, history, axe_source
):
    make_staff("audrey", "auditors")
    log_in(browser, live_server, "audrey")
    problems = {}
    for name, url in auditor_pages(live_server, history).items():
        browser.get(url)
        findings = axe_findings(browser, axe_source)
        if findings:
            problems[name] = describe(findings)
    assert not problems, "\n\n".join(f"== {page} ==\n{text}" for page, text in problems.items())


def test_the_events_date_range_and_an_unreadable_account_have_no_serious_or_critical_finding(
    browser, live_server, history, axe_source
):
    from datetime import date

    account = svc.open_account(holder_name="Newer Release", actor=Actor.system("seed")).id
    es.append(
        account,
        [
            es.NewEvent(
                event_type="InterestAccrued",
                data={"amount_cents": 3},
                occurred_at=datetime.now(UTC),
            )
        ],
        stream_type=svc.STREAM_TYPE,
        expected_version=1,
    )
    make_staff("audrey", "auditors")
    log_in(browser, live_server, "audrey")
    problems = {}
    today = date.today().isoformat()
    for name, url in {
        "events in a date range": f"{live_server.url}/admin/eventstore/event/?occurred_from={today}&occurred_to={today}",
        "an unreadable account": f"{live_server.url}/admin/projections/accountbalance/{account}/audit/",
    }.items():
        browser.get(url)
        findings = axe_findings(browser, axe_source)
        if findings:
            problems[name] = describe(findings)
    assert not problems, "\n\n".join(f"== {page} ==\n{text}" for page, text in problems.items())


def test_a_tellers_audit_page_has_no_serious_or_critical_axe_finding(
    browser, live_server, history, axe_source
):
    make_staff("tom", "tellers")
    log_in(browser, live_server, "tom")
    browser.get(f"{live_server.url}/admin/projections/accountbalance/{history}/audit/")
    findings = axe_findings(browser, axe_source)
    assert not findings, describe(findings)


def active(browser):
    """The focused element's id, tag and whether its focus is drawn (an outline)."""
    return browser.execute_script(
        "var e = document.activeElement, s = getComputedStyle(e);"
        "return {id: e.id, tag: e.tagName.toLowerCase(), name: e.name || '',"
        " outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2};"
    )


def tab_to(browser, element_id, limit=80):
    """Press Tab until ``element_id`` has the focus; every stop on the way shows its focus."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    unseen = []
    for _ in range(limit):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        now = active(browser)
        if not now["outline"]:
            unseen.append(now["id"] or now["name"] or now["tag"])
        if now["id"] == element_id:
            return unseen
    pytest.fail(f"{element_id} was not reached in {limit} presses of Tab")


def test_an_auditor_travels_in_time_by_keyboard_and_lands_on_the_result(
    browser, live_server, history
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    make_staff("audrey", "auditors")
    log_in(browser, live_server, "audrey")
    browser.get(f"{live_server.url}/admin/projections/accountbalance/{history}/audit/")
    unseen = tab_to(browser, "id_as_of_version")
    assert not [u for u in unseen if u not in ("", "body")], f"focus not drawn on {unseen}"
    ActionChains(browser).send_keys("2").perform()
    navigate(browser, lambda: ActionChains(browser).send_keys(Keys.ENTER).perform())
    now = active(browser)
    assert now["id"] == "past-state-heading" and now["outline"], now
    assert browser.find_element(By.ID, "past-state-heading").text == "The state at version 2"
    assert browser.find_element(By.ID, "past-balance").text == "125.00 EUR"
    # A version that does not exist: the message says so, and has the focus.
    field = browser.find_element(By.ID, "id_as_of_version")
    field.clear()
    field.send_keys("99")
    navigate(browser, lambda: field.send_keys(Keys.ENTER))
    now = active(browser)
    assert now["id"] == "messages" and now["outline"], now
    assert "99" in browser.find_element(By.ID, "messages").text
    # A version and a moment: the form's error gets the focus, and says what to do.
    browser.execute_script(
        "arguments[0].value = '2026-01-01T10:00';", browser.find_element(By.ID, "id_as_of")
    )
    field = browser.find_element(By.ID, "id_as_of_version")
    field.clear()
    field.send_keys("2")
    navigate(browser, lambda: field.send_keys(Keys.ENTER))
    now = active(browser)
    assert now["id"] == "travel-errors" and now["outline"], now
    errors = browser.find_element(By.ID, "travel-errors")
    assert errors.get_attribute("role") == "alert" and "not both" in errors.text


def test_a_tellers_command_result_is_focused_in_a_live_region(browser, live_server, history):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    make_staff("tom", "tellers")
    log_in(browser, live_server, "tom")
    browser.get(f"{live_server.url}/admin/projections/accountbalance/{history}/audit/")
    tab_to(browser, "id_deposit-amount")
    ActionChains(browser).send_keys("12.50").perform()
    navigate(browser, lambda: ActionChains(browser).send_keys(Keys.ENTER).perform())
    region = browser.find_element(By.ID, "messages")
    assert region.get_attribute("aria-live") == "polite" and region.get_attribute("role") == (
        "status"
    )
    assert "Deposit done" in region.text and "142.50 EUR" in region.text
    now = active(browser)
    assert now["id"] == "messages" and now["outline"], now
    # An amount the currency cannot hold: the refusal is focused the same way.
    tab_to(browser, "id_deposit-amount")
    ActionChains(browser).send_keys("1.234").perform()
    navigate(browser, lambda: ActionChains(browser).send_keys(Keys.ENTER).perform())
    assert active(browser)["id"] == "messages"
    assert "1.234 has too many decimals for EUR" in browser.find_element(By.ID, "messages").text


def test_the_command_forms_are_fieldsets_whose_fields_have_names_of_their_own(
    browser, live_server, history
):
    from selenium.webdriver.common.by import By

    make_staff("tom", "tellers")
    log_in(browser, live_server, "tom")
    browser.get(f"{live_server.url}/admin/projections/accountbalance/{history}/audit/")
    forms = browser.find_elements(By.CSS_SELECTOR, "#commands form.command-form")
    assert len(forms) == 3  # deposit, withdraw, freeze (closing needs a zero balance)
    names = []
    for form in forms:
        legend = form.find_element(By.CSS_SELECTOR, "fieldset > legend")
        assert legend.text
        fields = form.find_elements(By.CSS_SELECTOR, "fieldset input:not([type=hidden])")
        names += [field.accessible_name for field in fields]
    assert all(names), names
    assert len(names) == len(set(names)), f"names heard twice: {names}"
    assert "Deposit amount (EUR):" in names or "Deposit amount (EUR)" in names, names


@pytest.mark.parametrize("role", ["auditors", "tellers"])
def test_at_200_percent_zoom_no_page_scrolls_sideways(browser, live_server, history, role):
    make_staff("zoe", role)
    log_in(browser, live_server, "zoe")
    width = browser.execute_script("return window.innerWidth")
    # 200% zoom: the same window, half as many CSS pixels across.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width // 2, "height": 900, "deviceScaleFactor": 2, "mobile": False},
    )
    try:
        wide = {}
        for name, url in auditor_pages(live_server, history).items():
            browser.get(url)
            sizes = browser.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]"
            )
            if sizes[0] > sizes[1]:
                wide[name] = browser.execute_script(
                    "var w = window.innerWidth, out = [];"
                    "document.querySelectorAll('body *').forEach(function (e) {"
                    " var r = e.getBoundingClientRect();"
                    " if (r.right > w + 1 && out.length < 5) {"
                    "  out.push(e.tagName + '#' + e.id + '.' + e.className + ' ' + r.right); } });"
                    "return [document.documentElement.scrollWidth, w, out];"
                )
        assert not wide, f"pages wider than the window at 200% zoom (scroll, window): {wide}"
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_approval_and_reversal_pages_have_no_serious_or_critical_axe_finding(
    browser, live_server, history, axe_source, settings
):
    """Issue 21's pages: the queue, a decision page (for an approver and read-only), the
    bulk confirmation, the timeline with a reversed pair, the reversal's confirmation."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from bank.services import approvals, reversals
    from tests.admin.approving import QUEUE_URL, audit_url, ensure_approvers, rule_on

    rule_on(settings, threshold_cents=5_000)
    ensure_approvers()
    tom = make_staff("tom", "tellers")
    make_staff("ann", "approvers")
    reversals.reverse_posting(
        account_id=history,
        event_id=es.read_stream(history)[1].event_id,
        reason="posted twice",
        actor=Actor("tom", tom.pk, "admin"),
    )
    maker = Actor.from_user(tom, auth="admin")
    freeze = approvals.request(
        "freeze",
        command={"account_id": str(history), "reason": "card stolen"},
        actor=maker,
        reason="card stolen",
    )
    approvals.request(
        "withdraw",
        command={"account_id": str(history), "amount_cents": 6_000, "description": "rent"},
        actor=maker,
        reason="rent",
    )
    runner.catch_up()
    problems = {}

    def check(name):
        findings = axe_findings(browser, axe_source)
        if findings:
            problems[name] = describe(findings)

    log_in(browser, live_server, "ann")
    for name, url in {
        "approval queue": QUEUE_URL,
        "approval queue, every status": f"{QUEUE_URL}?status=all",
        "decision page": f"{QUEUE_URL}{freeze.id}/decide/",
    }.items():
        browser.get(f"{live_server.url}{url}")
        check(name)
    browser.get(f"{live_server.url}{QUEUE_URL}")
    browser.find_element(By.ID, "action-toggle").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("reject_selected")
    navigate(browser, browser.find_element(By.CSS_SELECTOR, "button[name=index]").click)
    assert browser.find_element(By.ID, "bulk-confirm")
    check("bulk confirmation")
    navigate(browser, browser.find_element(By.ID, "bulk-submit").click)  # no reason
    assert browser.find_element(By.ID, "bulk-errors")
    check("bulk confirmation with its error")

    browser.delete_all_cookies()
    log_in(browser, live_server, "tom")
    for name, url in {
        "timeline with a reversed pair": audit_url(history),
        "timeline, reversed pairs hidden": f"{audit_url(history)}?hide_reversed=1",
        "reversal confirmation": f"/admin/projections/accountbalance/{history}/reverse/3/",
        "decision page, read-only": f"{QUEUE_URL}{freeze.id}/decide/",
    }.items():
        browser.get(f"{live_server.url}{url}")
        check(name)
    assert not problems, "\n\n".join(f"== {page} ==\n{text}" for page, text in problems.items())


def test_the_erasure_pages_have_no_serious_or_critical_axe_finding(
    browser, live_server, history, axe_source
):
    """Issue 20's pages: a data protection officer's audit page with its "Personal data"
    panel, the erasure's confirmation (and with its error), an event page with a personal
    field decrypted, and an erased account's audit page."""
    import importlib

    from django.apps import apps
    from selenium.webdriver.common.by import By

    from tests.support import ensure_roles

    ensure_roles()
    importlib.import_module("bank.migrations.0007_data_protection_role").create_role(apps, None)
    system = Actor.system("tests")
    balance = svc.get_account(history).balance_cents
    svc.withdraw(account_id=history, amount_cents=balance, description="payout", actor=system)
    svc.close(account_id=history, reason="holder asked", actor=system)
    runner.catch_up()
    make_staff("dana", "data_protection")
    log_in(browser, live_server, "dana")
    problems = {}

    def check(name):
        findings = axe_findings(browser, axe_source)
        if findings:
            problems[name] = describe(findings)

    audit = f"{live_server.url}/admin/projections/accountbalance/{history}/audit/"
    opened = es.read_stream(history)[0]
    for name, url in {
        "audit page with the personal data panel": audit,
        "erasure confirmation": f"{audit.removesuffix('audit/')}erase/",
        "event page with a personal field": (
            f"{live_server.url}/admin/eventstore/event/{opened.position}/change/"
        ),
    }.items():
        browser.get(url)
        check(name)
    browser.get(f"{audit.removesuffix('audit/')}erase/")
    navigate(browser, browser.find_element(By.ID, "confirm-submit").click)  # no reason
    assert browser.find_element(By.ID, "erasure-errors")
    check("erasure confirmation with its error")
    browser.find_element(By.ID, "id_erase-reason").send_keys("request 2026-114")
    navigate(browser, browser.find_element(By.ID, "confirm-submit").click)
    assert browser.find_element(By.ID, "personal-data-erased")
    check("an erased account's audit page")
    assert not problems, "\n\n".join(f"== {page} ==\n{text}" for page, text in problems.items())
