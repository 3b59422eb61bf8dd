"""Accounts in the admin: the list from the balance read model, the audit view from events.

The audit view answers "how did this account get to this balance, who did it, when, and
is the record intact?": current state, the timeline with balances and chain status, time
travel, CSV export, and (for tellers) the commands the account's state allows, which go
through ``bank/services``; freezing and closing ask for confirmation on a page of their
own first. Commands are withheld from an account whose record failed verification. The
admin index carries an integrity panel: the last recorded ``verify_events`` run and the
immutability triggers. Amounts are shown and typed in currency units (``bank.money_format``).

From the audit page an auditor follows the trail: a counterparty to its own audit page, a
correlation id to every event of its command across accounts, an actor to all their
actions; the balance chart (inline SVG, ``bank.templatetags.charts``); two versions side by
side; statements for a range of days, printable and as CSV. Every read goes through
``bank.selectors``. Each of these pages records who viewed which account in the append-only
access log (``bank.access_log``) before it shows anything; auditors browse and export the
log (``AccessLogAdmin``), nobody changes it.

Maker-checker (issue 21): a withdrawal, freeze or close that crosses the rule
(``approvals.needs_approval``) is sent to the approval queue instead of running, whoever
asks, superusers included; the message links to the request (``bank.admin_approvals`` holds
the queue and the decisions). Each posting of the timeline (a deposit, a withdrawal, a
transfer side) not reversed yet can be reversed from its row, after a confirmation page with
the reason, through ``reversals.reverse_posting`` (or a request, above the threshold); the
timeline strikes a reversed posting through and links it and its reversal both ways, and
hides such pairs on demand; the CSV carries both links.

Personal data (issue 20): the data_protection group (``bank.erase_personal_data``) erases a
closed account's holder data from its audit page, after a confirmation page with the reason,
through ``personal_data.erase``. Every page shows the holder's name decrypted by the
services, or ``[erased]``; pages showing an event's data as stored (the unreadable account's
page here, the event pages in ``bank.admin_events``) show the stored token and, beside it,
the decrypted field (``bank.selectors.personal``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

import eventstore as es
from bank import access_log, selectors
from bank.domain import (
    ACTIVE,
    CLOSED,
    ERASED_NAME,
    FROZEN,
    MAX_CENTS,
    BalanceNotZero,
    DomainError,
    InsufficientFunds,
    InvalidAmount,
    balance_change,
    event_from_data,
)
from bank.forms import MoneyForm, ReasonForm, TimeTravelForm
from bank.models import AccessLogEntry, ApprovalRequest
from bank.money_format import format_money, plain_amount
from bank.selectors.audit import REVERSIBLE_TYPES
from bank.services import Actor, approvals, personal_data, reversals
from bank.services import accounts as svc
from bank.services.errors import (
    AccountNotFound,
    DuplicateRequest,
    ServiceError,
    UnreadableStream,
    VersionMismatch,
)
from bank.templatetags.charts import Marker
from bank.templatetags.ledger import short_id_html
from projections.models import AccountBalance

SITE_NAME = "Ledgerline"
admin.site.site_header = SITE_NAME
admin.site.site_title = SITE_NAME
admin.site.index_title = f"{SITE_NAME} back office"

COMMAND_PERMISSION = "bank.issue_command"
ACCESS_LOG_PERMISSION = "bank.view_accesslogentry"
QUEUE_PERMISSION = "bank.view_approvalrequest"
ERASE_PERMISSION = "bank.erase_personal_data"

# A command POSTed for an account whose record failed verification (the page disables the
# forms, but a disabled button is no guard: the POST is refused here too).
COMMAND_WITHHELD = (
    "{label} refused: commands on this account are withheld because {reason}. Nothing was "
    "changed. Run python manage.py verify_events --full, then restore the account's events "
    "from a verified backup."
)
# A command the account's state does not allow (the page does not offer it; a POST made
# anyway is refused before anything is asked).
COMMAND_NOT_OFFERED = "{label} refused: {why}. Nothing was changed."
COMMAND_INVALID = "{label} was not done: {problems}. Nothing was changed."
COMMAND_DONE = "{label} done: the balance is {balance}, the status {status}, version {version}."
COMMAND_STALE = (
    "{label} refused: the account changed since the confirmation page was shown (version "
    "{actual} now, {expected} then). Nothing was changed: look at its new state and try again."
)

# Maker-checker (bank.services.approvals): a command that crosses the rule is not run but
# sent to the approval queue, superusers' too; the message links to the request.
SENT_FOR_APPROVAL = (
    "Sent for approval: request {request} ({what}) waits for an approver. Nothing was "
    "changed yet: the command runs when a member of the approvers group other than you "
    "approves it, before {expires}."
)
DUPLICATE_REQUEST = (
    "{label} refused: the same command waits for approval already (request {request}). "
    "Nothing was changed: an approver approves or rejects that one."
)
# The command kinds of the audit page's forms that may need an approval.
APPROVAL_KINDS = ("withdraw", "freeze", "close")

# Reversals from the timeline.
REVERSAL_NOT_OFFERED = "Reversal of version {version} refused: {why}. Nothing was changed."
REVERSAL_DONE = (
    "Reversal done: version {version} ({event_type} of {amount}) is reversed by version "
    "{by}; the balance is {balance}."
)
WHY_ALREADY_REVERSED = "it was reversed already, by version {by}"
WHY_NOT_A_POSTING = (
    "a {event_type} is not a posting: only deposits, withdrawals and transfers are reversed "
    "(a reversal is undone by a new command, never reversed)"
)
WHY_NO_VERSION = "the account has no version {version}"


def request_link(approval_id: uuid.UUID | str) -> SafeString:
    """A maker-checker request, shortened and linked to its decision page."""
    url = reverse("admin:bank_approvalrequest_decide", args=[approval_id])
    return format_html(
        '<a href="{}" class="approval-link" title="request {}">{}</a>',
        url,
        approval_id,
        str(approval_id)[:8] + "…",
    )


def describe_request(row: ApprovalRequest, currency: str | None = None) -> str:
    """What a request asks, in words ("withdraw 2,000.00 EUR", "freeze")."""
    if row.amount_cents is not None and currency:
        return f"{row.kind} {format_money(row.amount_cents, currency)}"
    return row.kind


def sent_for_approval(row: ApprovalRequest, currency: str) -> SafeString:
    expires = timezone.localtime(row.expires_at).strftime("%Y-%m-%d %H:%M %Z")
    return format_html(
        SENT_FOR_APPROVAL,
        request=request_link(row.id),
        what=describe_request(row, currency),
        expires=expires,
    )


def duplicate_request(label: str, exc: DuplicateRequest) -> SafeString:
    return format_html(DUPLICATE_REQUEST, label=label, request=request_link(str(exc.pending_id)))


# Erasing a holder's personal data (issue 20): the data_protection group's action.
ERASURE_LABEL = "Erasure of personal data"
ERASURE_REFUSED = "Erasure of personal data refused: {why}. Nothing was changed."
ERASURE_DONE = (
    "Personal data erased: the holder of account {account} reads {erased} from now on "
    "(version {version}, a PersonalDataErased event with your reason). The holder's data key "
    "is deleted: the stored name can never be read again."
)
WHY_ERASED_ALREADY = "the personal data of this account is erased already"
WHY_NOT_CLOSED = (
    "the account is {status}: close it first (its balance must be zero; closing may need an "
    "approval)"
)
WHY_PENDING = (
    "{count} approval request{s} about this account {are} pending: an approver decides "
    "{them} first"
)


def erasure_refusal(state: selectors.AccountState, pending: int) -> str:
    """Why the holder's personal data may not be erased now ("" when it may); the services
    decide in the end (``personal_data.erase``), in the same order."""
    if state.holder_name == ERASED_NAME:
        return WHY_ERASED_ALREADY
    if pending:
        return WHY_PENDING.format(
            count=pending,
            s="s" if pending != 1 else "",
            are="are" if pending != 1 else "is",
            them="them" if pending != 1 else "it",
        )
    if state.status != CLOSED:
        return WHY_NOT_CLOSED.format(status=state.status)
    return ""


# An account whose stream holds an event this release cannot read (a newer release's type,
# or a payload that does not fit its type): its pages other than the audit page send here.
UNREADABLE_REDIRECT = (
    "{what} is not available for this account: its event at version {version} is a "
    "“{event_type}” that this release cannot read. The audit page shows its events as stored."
)

# Why a command is not offered, for the account's state.
WHY_CLOSED = "the account is closed: no command can change it"
WHY_FROZEN_MONEY = "the account is frozen: no money can move until it is unfrozen"
WHY_NOT_ACTIVE = "the account is {status}: only an active account can be frozen"
WHY_NOT_FROZEN = "the account is {status}, not frozen"
WHY_NOT_ZERO = "the account still holds {balance}: withdraw or transfer it to zero before closing"
# Under the offered forms: what is not offered, and why.
NOT_OFFERED_FROZEN = (
    "Deposits and withdrawals are not offered while the account is frozen: unfreeze it first."
)
NOT_OFFERED_CLOSE = (
    "Closing is not offered while the account holds {balance}: withdraw or transfer it to "
    "zero first."
)


@dataclass(frozen=True, slots=True)
class Command:
    """A teller command on the audit page.

    ``label``: the button and the messages; ``legend``: the form's fieldset; ``confirm``:
    whether it asks for confirmation on a page of its own before it runs; ``reason_label``:
    the reason field's label (money commands have an amount and a description instead,
    named after ``noun``: every field on the page has a name of its own).
    """

    label: str
    legend: str
    confirm: bool = False
    reason_label: str = ""
    noun: str = ""

    def form(self, name: str, state: selectors.AccountState, data: Any = None) -> forms.Form:
        if self.reason_label:
            return ReasonForm(data, prefix=name, label=self.reason_label)
        return MoneyForm(data, prefix=name, currency=state.currency, noun=self.noun)


COMMANDS: dict[str, Command] = {
    "deposit": Command("Deposit", "Deposit money", noun="Deposit"),
    "withdraw": Command("Withdraw", "Withdraw money", noun="Withdrawal"),
    "freeze": Command(
        "Freeze", "Freeze the account", confirm=True, reason_label="Reason for freezing"
    ),
    "unfreeze": Command("Unfreeze", "Unfreeze the account", reason_label="Reason for unfreezing"),
    "close": Command(
        "Close", "Close the account", confirm=True, reason_label="Reason for closing"
    ),
}


def command_refusal(name: str, state: selectors.AccountState) -> str:
    """Why the account's state does not allow the command ("" when it does).

    The domain decides in the end (a concurrent command can change the state between the
    page and the POST); this is what the page offers.
    """
    if state.status == CLOSED:
        return WHY_CLOSED
    if name in ("deposit", "withdraw") and state.status == FROZEN:
        return WHY_FROZEN_MONEY
    if name == "freeze" and state.status != ACTIVE:
        return WHY_NOT_ACTIVE.format(status=state.status)
    if name == "unfreeze" and state.status != FROZEN:
        return WHY_NOT_FROZEN.format(status=state.status)
    if name == "close" and state.balance_cents != 0:
        return WHY_NOT_ZERO.format(balance=format_money(state.balance_cents, state.currency))
    return ""


def commands_not_offered(state: selectors.AccountState) -> list[str]:
    """The sentences that explain, under the offered forms, what is missing and why."""
    if state.status == CLOSED:
        return ["This account is closed: no command can change it."]
    notes = []
    if state.status == FROZEN:
        notes.append(NOT_OFFERED_FROZEN)
    if state.balance_cents != 0:
        balance = format_money(state.balance_cents, state.currency)
        notes.append(NOT_OFFERED_CLOSE.format(balance=balance))
    return notes


TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def trace_link(trace_id: str) -> str:
    """The trace viewer's URL for a trace id, from TRACE_URL_TEMPLATE (never from event data)."""
    template = getattr(settings, "TRACE_URL_TEMPLATE", "")
    if not template or not TRACE_ID.match(trace_id):
        return ""
    return template.replace("{trace_id}", trace_id)


def csv_safe(value: object) -> str:
    """Neutralise spreadsheet formulas: a cell starting with = + - @ or a control is quoted."""
    text = "" if value is None else str(value)
    if text and text[0] in "=+-@\t\r":
        return "'" + text
    return text


def refusal_message(exc: DomainError | ServiceError, currency: str) -> str:
    """A refusal in the admin's words: amounts in currency units, not the domain's cents."""

    def money(cents: int) -> str:
        return format_money(cents, currency)

    if isinstance(exc, InsufficientFunds):
        return f"{money(exc.requested)} exceeds the balance of {money(exc.available)}"
    if isinstance(exc, BalanceNotZero):
        balance = exc.details.get("balance_cents")
        if isinstance(balance, int):
            return WHY_NOT_ZERO.format(balance=money(balance))
    if isinstance(exc, InvalidAmount):
        amount = exc.details.get("amount")
        if isinstance(amount, int) and 0 < amount <= MAX_CENTS:
            return f"{money(amount)} would take the balance past the maximum of {money(MAX_CENTS)}"
    return str(exc)


VERSION_OUT_OF_RANGE = (
    "Version {version} does not exist: this account's versions run from 1 to {last}."
)
VERSIONS_REVERSED = (
    "Version A must not be after version B: A is the earlier state (swap them to compare "
    "{a} with {b})."
)
# The days a statement may cover (the day after the last must still be a date).
FIRST_STATEMENT_DAY, LAST_STATEMENT_DAY = date(1900, 1, 1), date(9999, 12, 30)
DAYS_REVERSED = "The last day ({last}) is before the first ({first})."


class CompareForm(forms.Form):
    """Two versions of one account: A, the earlier, and B (both from 1 to its version)."""

    a = forms.IntegerField(min_value=1, label="Version A")
    b = forms.IntegerField(min_value=1, label="Version B")

    def __init__(self, *args: Any, last_version: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_version = last_version
        for field in self.fields.values():
            field.widget.attrs.update({"max": last_version, "class": "version-input"})
            field.help_text = f"1 to {last_version}"

    def _in_range(self, name: str) -> int:
        version: int = self.cleaned_data[name]
        if version > self.last_version:
            raise forms.ValidationError(
                VERSION_OUT_OF_RANGE.format(version=version, last=self.last_version),
                code="version_out_of_range",
            )
        return version

    def clean_a(self) -> int:
        return self._in_range("a")

    def clean_b(self) -> int:
        return self._in_range("b")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        a, b = data.get("a"), data.get("b")
        if a is not None and b is not None and a > b:
            raise forms.ValidationError(
                VERSIONS_REVERSED.format(a=b, b=a), code="versions_reversed"
            )
        return data


class StatementForm(forms.Form):
    """A range of days in the admin's time zone; the fields are ``from`` and ``to``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, label in (("from", "From (first day)"), ("to", "To (last day)")):
            self.fields[name] = forms.DateField(
                label=label,
                input_formats=["%Y-%m-%d"],
                widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("from", "to"):
            day = data.get(name)
            if day is not None and not FIRST_STATEMENT_DAY <= day <= LAST_STATEMENT_DAY:
                self.add_error(
                    name,
                    f"Pick a day from {FIRST_STATEMENT_DAY} to {LAST_STATEMENT_DAY}.",
                )
        first, last = data.get("from"), data.get("to")
        if first is not None and last is not None and last < first:
            raise forms.ValidationError(
                DAYS_REVERSED.format(first=first, last=last), code="days_reversed"
            )
        return data


def statement_defaults(today: date) -> dict[str, str]:
    """This month so far: what a statement shows before its dates are changed."""
    return {"from": today.replace(day=1).isoformat(), "to": today.isoformat()}


def _int_param(request: HttpRequest, name: str) -> int | None:
    try:
        return int(request.GET[name])
    except (KeyError, ValueError):
        return None


@admin.register(AccountBalance)
class AccountAdmin(admin.ModelAdmin):
    # No currency column: the balance carries its code, and the filter selects by currency.
    list_display = (
        "holder_name",
        "account_link",
        "balance",
        "status",
        "chain",
        "version",
        "last_activity",
    )
    list_display_links = ("holder_name",)
    list_filter = ("status", "currency")
    search_fields = ("holder_search",)
    search_help_text = "a holder's name (any case), or an account id"
    ordering = ("holder_name",)
    sortable_by = ("holder_name", "balance", "status", "last_activity")
    list_per_page = 50
    show_full_result_count = False
    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are opened by a command, not by a form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the read model is derived from the events

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The list's page, each row with its stream's recorded verification status (one
        query for the page: ``row.recorded``, None where no run has verified it yet)."""
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        statuses = es.recorded_statuses(row.account_id for row in rows)
        for row in rows:
            row.recorded = statuses.get(row.account_id)
        return changelist

    @admin.display(description="balance", ordering="balance_cents")
    def balance(self, row: AccountBalance) -> str:
        return format_money(row.balance_cents, row.currency)

    @admin.display(description="account id")
    def account_link(self, row: AccountBalance) -> SafeString:
        return short_id_html(
            row.account_id, reverse("admin:bank_account_audit", args=[row.account_id])
        )

    @admin.display(description="chain")
    def chain(self, row: Any) -> SafeString:
        recorded = getattr(row, "recorded", None)
        if recorded is None:
            return mark_safe('<span class="chain-unverified">not verified yet</span>')
        if recorded.problem:
            return format_html(
                '<span class="chain-broken" title="{}">BROKEN at version {}</span>',
                recorded.problem,
                recorded.problem_version or 1,
            )
        if recorded.snapshot_problem:
            return format_html(
                '<span class="chain-broken" title="{}">snapshot REJECTED</span>',
                recorded.snapshot_problem,
            )
        if recorded.verified_version >= row.version:
            return mark_safe('<span class="chain-ok">intact</span>')
        return format_html(
            '<span class="chain-ok">intact to version {}</span>'
            ' <span class="help">({} newer)</span>',
            recorded.verified_version,
            row.version - recorded.verified_version,
        )

    @admin.display(description="last activity", ordering="updated_at")
    def last_activity(self, row: AccountBalance) -> SafeString:
        moment = timezone.localtime(row.updated_at)
        return format_html(
            '<time datetime="{}" title="{}">{} ago</time>',
            moment.isoformat(),
            moment.strftime("%Y-%m-%d %H:%M:%S %Z"),
            timesince(moment, depth=1),
        )

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        return selectors.find_accounts(queryset, search_term), False

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<uuid:account_id>/audit/", view(self.audit_view), name="bank_account_audit"),
            path(
                "<uuid:account_id>/audit/export.csv",
                view(self.export_view),
                name="bank_account_export",
            ),
            path(
                "<uuid:account_id>/command/<str:command>/",
                view(self.command_view),
                name="bank_account_command",
            ),
            path(
                "<uuid:account_id>/reverse/<int:version>/",
                view(self.reverse_view),
                name="bank_account_reverse",
            ),
            path(
                "<uuid:account_id>/erase/",
                view(self.erase_view),
                name="bank_account_erase",
            ),
            path(
                "<uuid:account_id>/audit/compare/",
                view(self.compare_view),
                name="bank_account_compare",
            ),
            path(
                "<uuid:account_id>/audit/statement/",
                view(self.statement_view),
                name="bank_account_statement",
            ),
            path(
                "<uuid:account_id>/audit/statement.csv",
                view(self.statement_csv_view),
                name="bank_account_statement_csv",
            ),
            path(
                "correlation/<uuid:correlation_id>/",
                view(self.correlation_view),
                name="bank_correlation",
            ),
            path("actions/", view(self.actor_view), name="bank_actor_actions"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return redirect("admin:bank_account_audit", uuid.UUID(object_id))
        except ValueError:
            return super().change_view(request, object_id, *args, **kwargs)

    def _check_view(self, request: HttpRequest) -> None:
        if not self.has_view_permission(request):
            raise PermissionDenied

    # --- the audit page -------------------------------------------------------------------

    def audit_view(self, request: HttpRequest, account_id: uuid.UUID) -> HttpResponse:
        self._check_view(request)
        return self._audit_page(request, account_id)

    def _audit_page(
        self,
        request: HttpRequest,
        account_id: uuid.UUID,
        *,
        bound: tuple[str, forms.Form] | None = None,
    ) -> HttpResponse:
        """The audit page; ``bound``: a command form to show with its errors."""
        try:
            page = int(request.GET.get("page", "1"))
        except ValueError:
            page = 1
        hide_reversed = request.GET.get("hide_reversed") == "1"
        try:
            timeline = selectors.account_timeline(
                account_id, page=page, hide_reversed=hide_reversed
            )
        except AccountNotFound:
            self.message_user(request, f"Account {account_id} does not exist.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:projections_accountbalance_changelist"))
        except UnreadableStream as exc:
            return self._unreadable_page(request, account_id, exc, page)
        state = timeline.state
        travel = TimeTravelForm(request.GET or None)
        past, moment, version = None, None, None
        if travel.is_bound and travel.is_valid():
            version, moment = (
                travel.cleaned_data.get("as_of_version"),
                travel.cleaned_data.get("as_of"),
            )
            if version or moment:
                try:
                    if moment is not None and timezone.is_naive(moment):
                        moment = timezone.make_aware(moment)
                    past = selectors.as_shown_now(
                        selectors.account_at(account_id, version=version or None, at=moment),
                        state,
                    )
                except (ServiceError, DomainError) as exc:
                    self.message_user(request, str(exc), messages.WARNING)
        # Logged before the "viewed by" panel is read, so the panel includes this view.
        traveled = bool(version or moment)
        access_log.record(
            request, account_id, access_log.TIME_TRAVEL if traveled else access_log.AUDIT_VIEW
        )
        marker = None
        if past is not None:
            marker = Marker(
                version=past.version,
                at=moment or self._occurred_at(account_id, past.version),
                balance_cents=past.balance_cents,
            )
        labels = selectors.account_labels(row.counterparty for row in timeline.rows)
        may_command = request.user.has_perm(COMMAND_PERMISSION)
        integrity = timeline.integrity
        # Reversing moves money: offered on an active account whose record is intact.
        may_reverse = may_command and integrity.ok and state.status == ACTIVE
        commands = []
        if may_command:
            for name, command in COMMANDS.items():
                if command_refusal(name, state):
                    continue
                if bound is not None and bound[0] == name:
                    form = bound[1]
                else:
                    form = command.form(name, state)
                if not integrity.ok:
                    for field in form.fields.values():
                        field.disabled = True
                commands.append((name, command, form))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{state.holder_name}: audit",
            "timeline": timeline,
            "state": state,
            "travel": travel,
            "past": past,
            "may_command": may_command,
            "integrity": integrity,
            "commands": commands,
            "not_offered": commands_not_offered(state) if may_command else [],
            "rows": [
                (
                    row,
                    trace_link(row.trace_id),
                    _label_of(labels, row.counterparty),
                    self._reversal_links(timeline, row, may_reverse),
                )
                for row in timeline.rows
            ],
            "hide_reversed": hide_reversed,
            "may_reverse": may_reverse,
            "pending_requests": selectors.pending_requests(account_id)
            if request.user.has_perm(QUEUE_PERMISSION)
            else None,
            "series": selectors.balance_series(account_id, version=state.version),
            "marker": marker,
            "compare": CompareForm(
                initial={
                    "a": past.version if past is not None else max(1, state.version - 1),
                    "b": state.version,
                },
                last_version=state.version,
            ),
            "statement": StatementForm(initial=statement_defaults(timezone.localdate())),
            "zone_name": timezone.get_current_timezone_name(),
            # The pages around this one and at both ends, "…" between: a long history's
            # 2,000 page links would cost more to render than the rest of the page.
            "page_range": Paginator(range(timeline.pages), 1).get_elided_page_range(
                timeline.page, on_each_side=3, on_ends=2
            ),
            "ellipsis": Paginator.ELLIPSIS,
            "viewed_by": selectors.viewed_by(account_id),
            "may_view_log": request.user.has_perm(ACCESS_LOG_PERMISSION),
            **self._erasure_context(request, state, integrity),
        }
        return TemplateResponse(request, "admin/bank/accountbalance/audit.html", context)

    @staticmethod
    def _erasure_context(
        request: HttpRequest, state: selectors.AccountState, integrity: selectors.Integrity
    ) -> dict[str, Any]:
        """The audit page's "Personal data" panel, for those who may erase."""
        if not request.user.has_perm(ERASE_PERMISSION):
            return {"may_erase": False}
        why = erasure_refusal(state, len(selectors.pending_requests(state.id)))
        if not why and not integrity.ok:
            why = f"commands on this account are withheld because {integrity.reason}"
        return {
            "may_erase": True,
            "erasure_refusal": why,
            "erased": state.holder_name == ERASED_NAME,
        }

    @staticmethod
    def _reversal_links(
        timeline: selectors.Timeline,
        row: selectors.TimelineRow,
        may_reverse: bool,
    ) -> dict[str, str]:
        """A row's reversal links: to the row of its reversal or of the posting it reverses
        (on this page, or on the page that shows it), and to the reversal's confirmation
        page where a teller may reverse it."""
        audit = reverse("admin:bank_account_audit", args=[timeline.state.id])

        def row_url(version: int) -> str:
            page = timeline.page_of(version)
            if page == timeline.page:  # on this page: no reload
                return f"#version-{version}"
            return f"{audit}?page={page}#version-{version}"

        links = {}
        if row.reversed_by is not None:
            links["reversed_by"] = row_url(row.reversed_by)
        if row.reverses is not None:
            links["reverses"] = row_url(row.reverses)
        if may_reverse and row.reversible:
            links["reverse"] = reverse(
                "admin:bank_account_reverse", args=[timeline.state.id, row.version]
            )
        return links

    def _unreadable_page(
        self, request: HttpRequest, account_id: uuid.UUID, exc: UnreadableStream, page: int
    ) -> HttpResponse:
        """An account this release cannot read: a banner naming the event it cannot read and
        what to do, and the events as stored (type, schema version, data); no balances, no
        state, no commands (nothing about the account can be computed)."""
        access_log.record(request, account_id, access_log.AUDIT_VIEW)
        stored = selectors.stored_events(account_id, page=page)
        culprit = selectors.account_events(account_id, after_version=exc.version - 1, limit=1)
        erased = any(
            selectors.personal_fields(event.event_type, event.data, erased=False)
            for event in stored.events
        ) and selectors.is_erased(account_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Account {account_id}: audit",
            "account_id": account_id,
            "error": exc,
            "schema_version": culprit[0].schema_version if culprit else None,
            "stored": stored,
            # As stored (tokens and all: the chain covers them), and the personal fields
            # decrypted beside them (or [erased]).
            "events": [
                (
                    event,
                    json.dumps(
                        selectors.stored_for_display(event.event_type, event.data, erased=erased),
                        indent=2,
                        sort_keys=True,
                        ensure_ascii=False,
                    ),
                    event.version == exc.version,
                    selectors.personal_fields(event.event_type, event.data, erased=erased),
                )
                for event in stored.events
            ],
            "page_range": Paginator(range(stored.pages), 1).get_elided_page_range(
                stored.page, on_each_side=3, on_ends=2
            ),
            "ellipsis": Paginator.ELLIPSIS,
        }
        return TemplateResponse(
            request, "admin/bank/accountbalance/unreadable.html", context, status=200
        )

    def _unreadable_redirect(
        self, request: HttpRequest, account_id: uuid.UUID, exc: UnreadableStream, what: str
    ) -> HttpResponse:
        self.message_user(
            request,
            UNREADABLE_REDIRECT.format(what=what, version=exc.version, event_type=exc.event_type),
            messages.ERROR,
        )
        return HttpResponseRedirect(reverse("admin:bank_account_audit", args=[account_id]))

    # --- CSV export -----------------------------------------------------------------------

    EXPORT_HEADER = (
        "version",
        "event_type",
        "amount",
        "currency",
        "balance_after",
        "description_or_reason",
        "actor",
        "occurred_at",
        "recorded_at",
        "event_id",
        "correlation_id",
        "trace_id",
        "hash",
        "reverses_version",
        "reversed_by_version",
    )

    def export_view(self, request: HttpRequest, account_id: uuid.UUID) -> HttpResponseBase:
        self._check_view(request)
        try:
            state, reversed_map = selectors.reversal_map(account_id)
        except AccountNotFound:
            raise Http404(f"account {account_id} does not exist") from None
        except UnreadableStream as exc:
            return self._unreadable_redirect(request, account_id, exc, "The CSV export")
        access_log.record(request, account_id, access_log.EXPORT_CSV)

        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())

        def lines() -> Iterator[str]:
            yield writer.writerow(self.EXPORT_HEADER)
            for cells in export_rows(account_id, state.currency, reversed_map=reversed_map):
                yield writer.writerow(cells)

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = (
            f'attachment; filename="account-{account_id}-{stamp}.csv"'
        )
        return response

    # --- links: a command's events, a user's actions --------------------------------------

    @staticmethod
    def _occurred_at(account_id: uuid.UUID, version: int) -> datetime:
        """When the account's event at ``version`` occurred (one query)."""
        return selectors.account_events(account_id, after_version=version - 1, limit=1)[
            0
        ].occurred_at

    def _lines_context(self, lines: list[selectors.EventLine]) -> list[tuple[Any, ...]]:
        """Each event with its account's and its counterparty's labels (one query for all)."""
        labels = selectors.account_labels(
            [line.stream_id for line in lines] + [line.counterparty for line in lines]
        )
        return [
            (line, _label_of(labels, line.stream_id), _label_of(labels, line.counterparty))
            for line in lines
        ]

    def correlation_view(self, request: HttpRequest, correlation_id: uuid.UUID) -> HttpResponse:
        self._check_view(request)
        found = selectors.correlated_events(correlation_id)
        access_log.record_many(
            request, (line.stream_id for line in found.lines), access_log.CORRELATION
        )
        commands = sorted({line.command for line in found.lines if line.command})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Command {correlation_id}",
            "correlation": found,
            "commands": commands,
            "actors": sorted({line.actor for line in found.lines if line.actor}),
            "streams": len({line.stream_id for line in found.lines}),
            "lines": self._lines_context(found.lines),
            "limit": selectors.CORRELATION_MAX,
        }
        return TemplateResponse(request, "admin/bank/accountbalance/correlation.html", context)

    def actor_view(self, request: HttpRequest) -> HttpResponse:
        self._check_view(request)
        actor = request.GET.get("actor", "").strip()
        page = None
        if actor:
            page = selectors.actor_actions(
                actor, before=_int_param(request, "before"), after=_int_param(request, "after")
            )
            access_log.record_many(
                request, (line.stream_id for line in page.lines), access_log.ACTOR_ACTIONS
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Actions of {actor}" if actor else "Actions of a user",
            "actor": actor,
            "page": page,
            "lines": self._lines_context(page.lines) if page is not None else [],
            "page_size": selectors.ACTIONS_PAGE_SIZE,
        }
        return TemplateResponse(request, "admin/bank/accountbalance/actions.html", context)

    # --- two versions side by side --------------------------------------------------------

    def compare_view(self, request: HttpRequest, account_id: uuid.UUID) -> HttpResponse:
        self._check_view(request)
        try:
            state = selectors.get_account(account_id)
        except AccountNotFound:
            raise Http404(f"account {account_id} does not exist") from None
        except UnreadableStream as exc:
            return self._unreadable_redirect(request, account_id, exc, "Comparing versions")
        access_log.record(request, account_id, access_log.COMPARE)
        bound = "a" in request.GET or "b" in request.GET
        form = CompareForm(
            request.GET if bound else None,
            initial={"a": max(1, state.version - 1), "b": state.version},
            last_version=state.version,
        )
        comparison, changes = None, []
        if bound and form.is_valid():
            comparison = selectors.compare_versions(
                account_id, version_a=form.cleaned_data["a"], version_b=form.cleaned_data["b"]
            )
            comparison = dataclasses.replace(
                comparison,
                a=selectors.as_shown_now(comparison.a, state),
                b=selectors.as_shown_now(comparison.b, state),
            )
            changes = _changes(comparison)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{state.holder_name}: compare two versions",
            "state": state,
            "form": form,
            "comparison": comparison,
            "changes": changes,
            "lines": self._lines_context(comparison.events) if comparison else [],
            "limit": selectors.COMPARE_EVENTS_MAX,
        }
        return TemplateResponse(request, "admin/bank/accountbalance/compare.html", context)

    # --- statements -----------------------------------------------------------------------

    def _statement_form(self, request: HttpRequest) -> StatementForm:
        bound = "from" in request.GET or "to" in request.GET
        return StatementForm(request.GET if bound else statement_defaults(timezone.localdate()))

    def statement_view(self, request: HttpRequest, account_id: uuid.UUID) -> HttpResponse:
        self._check_view(request)
        form = self._statement_form(request)
        try:
            if form.is_valid():
                statement = selectors.account_statement(
                    account_id,
                    first_day=form.cleaned_data["from"],
                    last_day=form.cleaned_data["to"],
                )
                state = statement.account
            else:
                statement, state = None, selectors.get_account(account_id)
        except AccountNotFound:
            raise Http404(f"account {account_id} does not exist") from None
        except UnreadableStream as exc:
            return self._unreadable_redirect(request, account_id, exc, "The statement")
        access_log.record(request, account_id, access_log.STATEMENT)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{state.holder_name}: statement",
            "state": state,
            "form": form,
            "statement": statement,
            "lines": self._lines_context(statement.movements) if statement else [],
            "limit": selectors.STATEMENT_ROWS_MAX,
            "zone_name": timezone.get_current_timezone_name(),
            "csv_query": request.GET.urlencode() if statement else "",
        }
        if statement is not None:
            moved = [line.amount_cents or 0 for line in statement.movements]
            context["money_in"] = sum(a for a in moved if a > 0)
            context["money_out"] = sum(a for a in moved if a < 0)
        return TemplateResponse(request, "admin/bank/accountbalance/statement.html", context)

    STATEMENT_HEADER = (
        "occurred_at",
        "version",
        "entry",
        "description_or_reason",
        "counterparty",
        "amount",
        "balance",
        "currency",
    )

    def statement_csv_view(self, request: HttpRequest, account_id: uuid.UUID) -> HttpResponseBase:
        self._check_view(request)
        form = self._statement_form(request)
        if not form.is_valid():
            problems = "; ".join(
                f"{field}: {' '.join(str(e) for e in errors)}"
                for field, errors in form.errors.items()
            )
            return HttpResponseBadRequest(
                f"No statement: {problems}", content_type="text/plain; charset=utf-8"
            )
        first_day, last_day = form.cleaned_data["from"], form.cleaned_data["to"]
        try:
            # The heading rows only: the movements are streamed below, all of them.
            head = selectors.account_statement(
                account_id, first_day=first_day, last_day=last_day, limit=0
            )
        except AccountNotFound:
            raise Http404(f"account {account_id} does not exist") from None
        except UnreadableStream as exc:
            return self._unreadable_redirect(request, account_id, exc, "The statement")
        access_log.record(request, account_id, access_log.STATEMENT_CSV)

        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())

        def lines() -> Iterator[str]:
            yield writer.writerow(self.STATEMENT_HEADER)
            yield from (writer.writerow(cells) for cells in statement_csv_rows(head))

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="statement-{account_id}-{first_day}-{last_day}.csv"'
        )
        return response

    # --- commands -------------------------------------------------------------------------

    def command_view(
        self, request: HttpRequest, account_id: uuid.UUID, command: str
    ) -> HttpResponseBase:
        if not request.user.has_perm(COMMAND_PERMISSION):
            raise PermissionDenied
        spec = COMMANDS.get(command)
        if spec is None:
            raise PermissionDenied  # no such command: nothing a teller may do
        if request.method not in (("GET", "POST") if spec.confirm else ("POST",)):
            return HttpResponseNotAllowed(["GET", "POST"] if spec.confirm else ["POST"])
        back = reverse("admin:bank_account_audit", args=[account_id])
        integrity = selectors.account_integrity(account_id)
        if not integrity.ok:
            self.message_user(
                request,
                COMMAND_WITHHELD.format(label=spec.label, reason=integrity.reason),
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        try:
            state = selectors.get_account(account_id)
        except AccountNotFound:
            self.message_user(request, f"Account {account_id} does not exist.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:projections_accountbalance_changelist"))
        except UnreadableStream as exc:
            return self._unreadable_redirect(request, account_id, exc, spec.label)
        confirmed = request.method == "POST" and request.POST.get("confirm") == "yes"
        if request.method == "GET":
            why = command_refusal(command, state)
            if why:
                return self._refuse(request, back, COMMAND_NOT_OFFERED, spec.label, why)
            return self._confirmation(request, command, spec, state, spec.form(command, state))
        form = spec.form(command, state, request.POST)
        if not form.is_valid():
            if confirmed:  # the confirmation page's own form: show it again with the errors
                return self._confirmation(request, command, spec, state, form)
            problems = "; ".join(
                f"{form.fields[field].label if field in form.fields else field}: "
                + " ".join(str(e) for e in errors)
                for field, errors in form.errors.items()
            )
            self.message_user(
                request,
                COMMAND_INVALID.format(label=spec.label, problems=problems),
                messages.ERROR,
            )
            return self._audit_page(request, account_id, bound=(command, form))
        why = command_refusal(command, state)
        if why:
            return self._refuse(request, back, COMMAND_NOT_OFFERED, spec.label, why)
        if spec.confirm and not confirmed:
            return self._confirmation(request, command, spec, state, form)
        expected = None
        if spec.confirm:
            try:
                expected = int(request.POST.get("expected_version", ""))
            except ValueError:
                return self._confirmation(request, command, spec, state, form)
        actor = Actor.from_user(request.user, auth="admin")
        data = form.cleaned_data
        if command in APPROVAL_KINDS and approvals.needs_approval(
            command, account_id, amount_cents=data.get("amount")
        ):
            if expected is not None and expected != state.version:
                self.message_user(
                    request,
                    COMMAND_STALE.format(
                        label=spec.label, actual=state.version, expected=expected
                    ),
                    messages.ERROR,
                )
                return HttpResponseRedirect(back)
            return self._request_approval(request, back, spec, command, state, data, actor)
        try:
            match command:
                case "deposit":
                    done = svc.deposit(
                        account_id=account_id,
                        amount_cents=data["amount"],
                        description=data["description"],
                        actor=actor,
                    )
                case "withdraw":
                    done = svc.withdraw(
                        account_id=account_id,
                        amount_cents=data["amount"],
                        description=data["description"],
                        actor=actor,
                    )
                case "freeze":
                    done = svc.freeze(
                        account_id=account_id,
                        reason=data["reason"],
                        actor=actor,
                        expected_version=expected,
                    )
                case "unfreeze":
                    done = svc.unfreeze(account_id=account_id, reason=data["reason"], actor=actor)
                case "close":
                    done = svc.close(
                        account_id=account_id,
                        reason=data["reason"],
                        actor=actor,
                        expected_version=expected,
                    )
                case _:  # pragma: no cover - COMMANDS names exactly the cases above
                    raise Http404(f"there is no command {command!r}")
        except VersionMismatch as exc:
            self.message_user(
                request,
                COMMAND_STALE.format(label=spec.label, actual=exc.actual, expected=exc.expected),
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        except (DomainError, ServiceError) as exc:
            self.message_user(
                request,
                f"{spec.label} refused: {refusal_message(exc, state.currency)}. "
                "Nothing was changed.",
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        self.message_user(
            request,
            COMMAND_DONE.format(
                label=spec.label,
                balance=format_money(done.balance_cents, done.currency),
                status=done.status,
                version=done.version,
            ),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(back)

    # --- reversals -------------------------------------------------------------------------

    def reverse_view(
        self, request: HttpRequest, account_id: uuid.UUID, version: int
    ) -> HttpResponseBase:
        """Reverse one posting of the timeline: a confirmation page with the reason, then
        ``reversals.reverse_posting`` (both sides of a transfer), or a request for approval
        when the amount crosses the maker-checker rule."""
        if not request.user.has_perm(COMMAND_PERMISSION):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        back = reverse("admin:bank_account_audit", args=[account_id])
        label = "Reversal"
        integrity = selectors.account_integrity(account_id)
        if not integrity.ok:
            self.message_user(
                request,
                COMMAND_WITHHELD.format(label=label, reason=integrity.reason),
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        try:
            state, reversed_map = selectors.reversal_map(account_id)
        except AccountNotFound:
            self.message_user(request, f"Account {account_id} does not exist.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:projections_accountbalance_changelist"))
        except UnreadableStream as exc:
            return self._unreadable_redirect(request, account_id, exc, label)
        found = (
            selectors.account_events(account_id, after_version=version - 1, limit=1)
            if 1 <= version <= state.version
            else []
        )
        why = ""
        if not found:
            why = WHY_NO_VERSION.format(version=version)
        elif found[0].event_type not in REVERSIBLE_TYPES:
            why = WHY_NOT_A_POSTING.format(event_type=found[0].event_type)
        elif version in reversed_map:
            why = WHY_ALREADY_REVERSED.format(by=reversed_map[version])
        elif state.status != ACTIVE:
            why = f"the account is {state.status}: no money can move on it"
        if why:
            self.message_user(
                request, REVERSAL_NOT_OFFERED.format(version=version, why=why), messages.ERROR
            )
            return HttpResponseRedirect(back)
        event = found[0]
        posting = selectors.line_of(event)
        form = ReasonForm(
            request.POST if request.method == "POST" else None,
            prefix="reverse",
            label="Reason for the reversal",
        )
        amount = abs(posting.amount_cents or 0)
        needs_approval = approvals.needs_approval("reversal", account_id, amount_cents=amount)
        if request.method == "GET" or request.POST.get("confirm") != "yes" or not form.is_valid():
            return self._reversal_confirmation(request, state, posting, form, needs_approval)
        try:
            expected = int(request.POST.get("expected_version", ""))
        except ValueError:
            return self._reversal_confirmation(request, state, posting, form, needs_approval)
        if expected != state.version:
            self.message_user(
                request,
                COMMAND_STALE.format(label=label, actual=state.version, expected=expected),
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        actor = Actor.from_user(request.user, auth="admin")
        reason = form.cleaned_data["reason"]
        try:
            if needs_approval:
                row = approvals.request(
                    "reversal",
                    command={
                        "account_id": str(account_id),
                        "event_id": str(event.event_id),
                        "reason": reason,
                    },
                    actor=actor,
                    reason=reason,
                )
            else:
                done = reversals.reverse_posting(
                    account_id=account_id,
                    event_id=event.event_id,
                    reason=reason,
                    actor=actor,
                    expected_version=expected,
                )
        except DuplicateRequest as exc:
            self.message_user(request, duplicate_request(label, exc), messages.ERROR)
            return HttpResponseRedirect(back)
        except VersionMismatch as exc:
            self.message_user(
                request,
                COMMAND_STALE.format(label=label, actual=exc.actual, expected=exc.expected),
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        except (DomainError, ServiceError) as exc:
            self.message_user(
                request,
                f"{label} refused: {refusal_message(exc, state.currency)}. Nothing was changed.",
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        if needs_approval:
            self.message_user(request, sent_for_approval(row, state.currency), messages.INFO)
            return HttpResponseRedirect(back)
        after = done.accounts[0]
        self.message_user(
            request,
            REVERSAL_DONE.format(
                version=version,
                event_type=event.event_type,
                amount=format_money(amount, state.currency),
                by=after.version,
                balance=format_money(after.balance_cents, after.currency),
            ),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(back)

    def _reversal_confirmation(
        self,
        request: HttpRequest,
        state: selectors.AccountState,
        posting: selectors.EventLine,
        form: forms.Form,
        needs_approval: bool,
    ) -> HttpResponse:
        """What the reversal will record, with the reason to give, Confirm and Cancel."""
        change = -(posting.amount_cents or 0)
        labels = selectors.account_labels([posting.counterparty])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Reverse version {posting.version}: please confirm",
            "state": state,
            "posting": posting,
            "party": _label_of(labels, posting.counterparty),
            "form": form,
            "change": change,
            "balance_after": state.balance_cents + change,
            "next_version": state.version + 1,
            "needs_approval": needs_approval,
            "cancel_url": reverse("admin:bank_account_audit", args=[state.id])
            + f"#version-{posting.version}",
        }
        return TemplateResponse(
            request, "admin/bank/accountbalance/confirm_reversal.html", context
        )

    # --- erasure of personal data ---------------------------------------------------------

    def erase_view(self, request: HttpRequest, account_id: uuid.UUID) -> HttpResponseBase:
        """Erase the holder's personal data (crypto-shredding): a confirmation page with the
        consequences, the rules and the reason, then ``personal_data.erase`` with the staff
        user as actor. Every refusal is a message on the audit page; nothing is changed."""
        if not request.user.has_perm(ERASE_PERMISSION):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        back = reverse("admin:bank_account_audit", args=[account_id])
        integrity = selectors.account_integrity(account_id)
        if not integrity.ok:
            self.message_user(
                request,
                COMMAND_WITHHELD.format(label=ERASURE_LABEL, reason=integrity.reason),
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        try:
            state = selectors.get_account(account_id)
        except AccountNotFound:
            self.message_user(request, f"Account {account_id} does not exist.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:projections_accountbalance_changelist"))
        except UnreadableStream as exc:
            return self._unreadable_redirect(request, account_id, exc, ERASURE_LABEL)
        why = erasure_refusal(state, len(selectors.pending_requests(account_id)))
        if why:
            self.message_user(request, ERASURE_REFUSED.format(why=why), messages.ERROR)
            return HttpResponseRedirect(back)
        form = ReasonForm(
            request.POST if request.method == "POST" else None,
            prefix="erase",
            label="Reason for the erasure",
        )
        if request.method == "GET" or request.POST.get("confirm") != "yes" or not form.is_valid():
            return self._erasure_confirmation(request, state, form)
        try:
            expected = int(request.POST.get("expected_version", ""))
        except ValueError:
            return self._erasure_confirmation(request, state, form)
        # erase() takes no expected version: the page's version is checked here. A closed
        # account changes only by an erasure, which the domain refuses twice.
        if expected != state.version:
            self.message_user(
                request,
                COMMAND_STALE.format(label=ERASURE_LABEL, actual=state.version, expected=expected),
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        try:
            done = personal_data.erase(
                account_id=account_id,
                reason=form.cleaned_data["reason"],
                actor=Actor.from_user(request.user, auth="admin"),
            )
        except (DomainError, ServiceError) as exc:
            self.message_user(
                request,
                ERASURE_REFUSED.format(why=refusal_message(exc, state.currency)),
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        self.message_user(
            request,
            ERASURE_DONE.format(account=account_id, erased=ERASED_NAME, version=done.version),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(back)

    def _erasure_confirmation(
        self, request: HttpRequest, state: selectors.AccountState, form: forms.Form
    ) -> HttpResponse:
        """What the erasure does, irreversibly, and its rules, with the reason to give."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Erase personal data: please confirm",
            "state": state,
            "form": form,
            "next_version": state.version + 1,
            "erased": ERASED_NAME,
            "cancel_url": reverse("admin:bank_account_audit", args=[state.id]),
        }
        return TemplateResponse(request, "admin/bank/accountbalance/confirm_erasure.html", context)

    def _request_approval(
        self,
        request: HttpRequest,
        back: str,
        spec: Command,
        kind: str,
        state: selectors.AccountState,
        data: dict[str, Any],
        actor: Actor,
    ) -> HttpResponse:
        """Send a command that crosses the maker-checker rule to the approval queue."""
        command: dict[str, Any] = {"account_id": str(state.id)}
        if kind == "withdraw":
            command.update(amount_cents=data["amount"], description=data["description"])
            reason = data["description"]
        else:
            command["reason"] = reason = data["reason"]
        try:
            row = approvals.request(kind, command=command, actor=actor, reason=reason)
        except DuplicateRequest as exc:
            self.message_user(request, duplicate_request(spec.label, exc), messages.ERROR)
            return HttpResponseRedirect(back)
        except (DomainError, ServiceError) as exc:
            self.message_user(
                request,
                f"{spec.label} refused: {refusal_message(exc, state.currency)}. "
                "Nothing was changed.",
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        self.message_user(request, sent_for_approval(row, state.currency), messages.INFO)
        return HttpResponseRedirect(back)

    def _refuse(
        self, request: HttpRequest, back: str, template: str, label: str, why: str
    ) -> HttpResponse:
        self.message_user(request, template.format(label=label, why=why), messages.ERROR)
        return HttpResponseRedirect(back)

    def _confirmation(
        self,
        request: HttpRequest,
        name: str,
        spec: Command,
        state: selectors.AccountState,
        form: forms.Form,
    ) -> HttpResponse:
        """Django's intermediate page: what will happen, with Confirm and Cancel.

        Nothing is written until its form comes back with ``confirm=yes`` and the version it
        showed (a command run in between makes the confirmation stale, and it is refused).
        """
        reason = form.cleaned_data.get("reason", "") if form.is_bound and form.is_valid() else ""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{spec.legend}: please confirm",
            "name": name,
            "command": spec,
            "state": state,
            "form": form,
            "reason": reason,
            "next_version": state.version + 1,
            "event_type": {"freeze": "AccountFrozen", "close": "AccountClosed"}.get(name, ""),
            "cancel_url": reverse("admin:bank_account_audit", args=[state.id]),
            "needs_approval": name in APPROVAL_KINDS and approvals.needs_approval(name, state.id),
        }
        return TemplateResponse(request, "admin/bank/accountbalance/confirm_command.html", context)


def _actor_name(metadata: dict[str, Any]) -> str:
    actor = metadata.get("actor")
    return str(actor.get("username", "")) if isinstance(actor, dict) else str(actor or "")


def export_rows(
    account_id: uuid.UUID,
    currency: str,
    *,
    chunk: int = 1000,
    reversed_map: dict[int, int] | None = None,
) -> Iterator[list[Any]]:
    """The CSV's rows, oldest first: numbers as numbers (amounts as plain decimals in
    currency units, unquoted, negative for debits), text through ``csv_safe``; the last two
    columns link reversals both ways (``reversed_map``: original version -> reversal's)."""
    reversed_map = reversed_map or {}
    balance, after = 0, 0
    while True:
        events = selectors.account_events(account_id, after_version=after, limit=chunk)
        if not events:
            return
        for event in events:
            change = balance_change(event_from_data(event.event_type, event.data))
            balance += change
            moved = change or "amount_cents" in event.data
            metadata = event.metadata
            yield [
                event.version,
                csv_safe(event.event_type),
                plain_amount(change, currency) if moved else "",
                csv_safe(currency),
                plain_amount(balance, currency),
                csv_safe(event.data.get("description") or event.data.get("reason") or ""),
                csv_safe(_actor_name(metadata)),
                event.occurred_at.isoformat(),
                event.recorded_at.isoformat(),
                str(event.event_id),
                csv_safe(metadata.get("correlation_id", "")),
                csv_safe(metadata.get("trace_id", "")),
                csv_safe(event.hash),
                event.data.get("reversed_version", "")
                if event.event_type == "PostingReversed"
                else "",
                reversed_map.get(event.version, ""),
            ]
        after = events[-1].version


def _label_of(
    labels: dict[uuid.UUID, selectors.AccountLabel], account_id: uuid.UUID | str | None
) -> selectors.AccountLabel | None:
    """The label of an account id (a UUID or its text), None when unknown or none."""
    if not account_id:
        return None
    try:
        key = account_id if isinstance(account_id, uuid.UUID) else uuid.UUID(str(account_id))
    except ValueError:
        return None
    return labels.get(key)


@dataclass(frozen=True, slots=True)
class Change:
    """One line of "what changed" between two versions (values as shown)."""

    field: str
    a: str
    b: str
    difference: str = ""

    @property
    def changed(self) -> bool:
        return self.a != self.b


def _changes(comparison: selectors.Comparison) -> list[Change]:
    a, b = comparison.a, comparison.b
    difference = b.balance_cents - a.balance_cents
    sign = "+" if difference > 0 else ""
    return [
        Change(
            "Balance",
            format_money(a.balance_cents, a.currency),
            format_money(b.balance_cents, b.currency),
            f"{sign}{format_money(difference, b.currency)}" if difference else "",
        ),
        Change("Status", a.status, b.status),
        Change("Holder", a.holder_name, b.holder_name),
        Change(
            "Version",
            str(a.version),
            str(b.version),
            f"{comparison.event_count} event{'s' if comparison.event_count != 1 else ''}"
            if comparison.event_count
            else "",
        ),
    ]


def statement_csv_rows(head: selectors.Statement) -> Iterable[list[Any]]:
    """The statement CSV's rows after the header: the opening balance, every movement with
    the running balance (read in chunks, however many), the closing balance. Numbers are
    numbers (plain decimals in currency units); text goes through ``csv_safe``."""
    currency = head.account.currency
    account_id = head.account.id
    yield [
        head.start.isoformat(),
        head.opening_version or "",
        "opening balance",
        "",
        "",
        "",
        plain_amount(head.opening_balance_cents, currency),
        csv_safe(currency),
    ]
    balance = head.opening_balance_cents
    for line in selectors.statement_movements(
        account_id,
        after_version=head.opening_version,
        up_to_version=head.closing_version,
        opening_balance_cents=head.opening_balance_cents,
    ):
        balance = line.balance_after_cents or 0
        yield [
            timezone.localtime(line.occurred_at).isoformat(),
            line.version,
            csv_safe(line.event_type),
            csv_safe(line.description),
            csv_safe(line.counterparty or ""),
            plain_amount(line.amount_cents, currency),
            plain_amount(balance, currency),
            csv_safe(currency),
        ]
    yield [
        head.end.isoformat(),
        head.closing_version or "",
        "closing balance",
        "",
        "",
        "",
        plain_amount(balance, currency),
        csv_safe(currency),
    ]


class AccessLogUserFilter(admin.SimpleListFilter):
    """By user: the users the log names (the users table is small; the log is not)."""

    title = "user"
    parameter_name = "user_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in selectors.log_users()]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        if value is None:
            return queryset
        try:
            return queryset.filter(user_id=int(str(value)))
        except ValueError:
            return queryset.none()


@admin.register(AccessLogEntry)
class AccessLogAdmin(admin.ModelAdmin):
    """The access log: browsable and exportable by auditors, changed and purged by nobody."""

    list_display = ("at", "user", "account", "action", "address")
    list_filter = (AccessLogUserFilter, "action", ("at", admin.DateFieldListFilter))
    date_hierarchy = "at"
    search_fields = ("username",)
    search_help_text = "an account id, or a user name (exact)"
    list_per_page = 100
    show_full_result_count = False
    actions = None
    ordering = ("-id",)
    sortable_by = ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # append-only: the ORM and the database triggers refuse it too

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup in ("account_id", "username") or super().lookup_allowed(
            lookup, value, request
        )

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(account_id=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(username=term), False

    @admin.display(description="user")
    def user(self, entry: AccessLogEntry) -> SafeString:
        if entry.user_id is None:
            return mark_safe('<span class="help">(anonymous)</span>')
        return format_html(
            '<a href="?user_id={}" title="user id {}">{}</a>',
            entry.user_id,
            entry.user_id,
            entry.username,
        )

    @admin.display(description="account")
    def account(self, entry: AccessLogEntry) -> SafeString:
        audit = reverse("admin:bank_account_audit", args=[entry.account_id])
        return format_html(
            '<a href="?account_id={}" title="every view of {}">{}</a> '
            '<a href="{}" class="help">audit page</a>',
            entry.account_id,
            entry.account_id,
            str(entry.account_id)[:8] + "…",
            audit,
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_view),
                name="bank_accesslogentry_export",
            ),
            *super().get_urls(),
        ]

    EXPORT_HEADER = ("id", "at", "user_id", "username", "account_id", "action", "address")

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The log as CSV, with the list's filters (the same query string)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        entries = self.get_changelist_instance(request).queryset

        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())

        def lines() -> Iterator[str]:
            yield writer.writerow(self.EXPORT_HEADER)
            for entry in entries.iterator(chunk_size=2000):
                yield writer.writerow(
                    [
                        entry.id,
                        entry.at.isoformat(),
                        "" if entry.user_id is None else entry.user_id,
                        csv_safe(entry.username),
                        str(entry.account_id),
                        csv_safe(entry.action),
                        csv_safe(entry.address),
                    ]
                )

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="access-log-{stamp}.csv"'
        return response


# The events list with the bank's search and date range (it replaces the store's own
# registration, so it is imported once this module's registrations are done), and the
# maker-checker queue (it uses this module's messages and money wording).
from bank import admin_approvals, admin_events  # noqa: E402, F401
