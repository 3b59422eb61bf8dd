"""Accounts in the admin: the list from the balance read model, the audit view from events.

The audit view answers "how did this account get to this balance, who did it, when, and
is the record intact?": current state, the timeline with balances and chain status, time
travel, CSV export, and (for tellers) commands that go through ``bank/services``. Commands
are withheld from an account whose record failed verification. The admin index carries an
integrity panel: the last recorded ``verify_events`` run and the immutability triggers.
"""

from __future__ import annotations

import csv
import re
import uuid
from datetime import datetime
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
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from bank import selectors
from bank.domain import MAX_CENTS, DomainError
from bank.domain.text import DESCRIPTION_MAX, REASON_MAX
from bank.services import Actor
from bank.services import accounts as svc
from bank.services.errors import AccountNotFound, ServiceError
from projections.models import AccountBalance

COMMAND_PERMISSION = "bank.issue_command"

# A command POSTed for an account whose record failed verification (the page disables the
# forms, but a disabled button is no guard: the POST is refused here too).
COMMAND_WITHHELD = (
    "{label} refused: commands on this account are withheld because {reason}. Nothing was "
    "changed. Run python manage.py verify_events --full, then restore the account's events "
    "from a verified backup."
)


class MoneyForm(forms.Form):
    amount_cents = forms.IntegerField(min_value=1, max_value=MAX_CENTS, label="Amount (cents)")
    description = forms.CharField(max_length=DESCRIPTION_MAX, required=False)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=REASON_MAX, required=True)


COMMANDS: dict[str, tuple[type[forms.Form], str]] = {
    "deposit": (MoneyForm, "Deposit"),
    "withdraw": (MoneyForm, "Withdraw"),
    "freeze": (ReasonForm, "Freeze"),
    "unfreeze": (ReasonForm, "Unfreeze"),
    "close": (ReasonForm, "Close"),
}


class TimeTravelForm(forms.Form):
    as_of_version = forms.IntegerField(min_value=1, required=False, label="Version")
    as_of = forms.DateTimeField(
        required=False,
        label="Date and time",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}),
    )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("as_of_version") and data.get("as_of"):
            raise forms.ValidationError("Pick a version or a date and time, not both.")
        return data


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


@admin.register(AccountBalance)
class AccountAdmin(admin.ModelAdmin):
    list_display = (
        "holder_name",
        "account_link",
        "currency",
        "balance",
        "status",
        "version",
        "updated_at",
    )
    list_display_links = ("holder_name",)
    list_filter = ("status", "currency")
    search_fields = ("holder_search",)
    search_help_text = "a holder's name (any case), or an account id"
    ordering = ("holder_name",)
    sortable_by = ("holder_name", "balance", "status", "updated_at", "currency")
    list_per_page = 50
    show_full_result_count = False
    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are opened by a command, not by a form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the read model is derived from the events

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="balance", ordering="balance_cents")
    def balance(self, row: AccountBalance) -> str:
        return f"{row.balance_cents / 100:,.2f} {row.currency}"

    @admin.display(description="account id")
    def account_link(self, row: AccountBalance) -> str:
        return format_html(
            '<a href="{}"><code>{}</code></a>',
            reverse("admin:bank_account_audit", args=[row.account_id]),
            row.account_id,
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

    def audit_view(self, request: HttpRequest, account_id: uuid.UUID) -> HttpResponse:
        self._check_view(request)
        try:
            page = int(request.GET.get("page", "1"))
        except ValueError:
            page = 1
        try:
            timeline = selectors.account_timeline(account_id, page=page)
        except AccountNotFound:
            self.message_user(request, f"Account {account_id} does not exist.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:projections_accountbalance_changelist"))
        travel = TimeTravelForm(request.GET or None)
        past = None
        if travel.is_bound and travel.is_valid():
            version, moment = (
                travel.cleaned_data.get("as_of_version"),
                travel.cleaned_data.get("as_of"),
            )
            if version or moment:
                try:
                    if moment is not None and timezone.is_naive(moment):
                        moment = timezone.make_aware(moment)
                    past = selectors.account_at(account_id, version=version or None, at=moment)
                except (ServiceError, DomainError) as exc:
                    self.message_user(request, str(exc), messages.WARNING)
        may_command = request.user.has_perm(COMMAND_PERMISSION)
        integrity = timeline.integrity
        commands = []
        if may_command:
            for name, (form_class, label) in COMMANDS.items():
                form = form_class(prefix=name)
                if not integrity.ok:
                    for field in form.fields.values():
                        field.disabled = True
                commands.append((name, label, form))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{timeline.state.holder_name}: audit",
            "subtitle": str(account_id),
            "timeline": timeline,
            "state": timeline.state,
            "travel": travel,
            "past": past,
            "may_command": may_command,
            "integrity": integrity,
            "commands": commands,
            "rows": [(row, trace_link(row.trace_id)) for row in timeline.rows],
            # The pages around this one and at both ends, "…" between: a long history's
            # 2,000 page links would cost more to render than the rest of the page.
            "page_range": Paginator(range(timeline.pages), 1).get_elided_page_range(
                timeline.page, on_each_side=3, on_ends=2
            ),
            "ellipsis": Paginator.ELLIPSIS,
        }
        return TemplateResponse(request, "admin/bank/accountbalance/audit.html", context)

    def export_view(self, request: HttpRequest, account_id: uuid.UUID) -> HttpResponseBase:
        self._check_view(request)
        try:
            selectors.get_account(account_id)
        except AccountNotFound:
            raise Http404(f"account {account_id} does not exist") from None

        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())
        header = [
            "version",
            "position",
            "event_id",
            "event_type",
            "amount_cents",
            "balance_after_cents",
            "description",
            "counterparty",
            "actor",
            "occurred_at",
            "trace_id",
            "chain",
        ]

        def lines() -> Any:
            yield writer.writerow(header)
            for row in selectors.timeline_rows(account_id):
                yield writer.writerow(
                    [
                        csv_safe(getattr(row, name))
                        if name != "occurred_at"
                        else row.occurred_at.isoformat()
                        for name in header
                    ]
                )

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = (
            f'attachment; filename="account-{account_id}-{stamp}.csv"'
        )
        return response

    def command_view(
        self, request: HttpRequest, account_id: uuid.UUID, command: str
    ) -> HttpResponse:
        if request.method != "POST" or command not in COMMANDS:
            raise PermissionDenied
        if not request.user.has_perm(COMMAND_PERMISSION):
            raise PermissionDenied
        form_class, label = COMMANDS[command]
        form = form_class(request.POST, prefix=command)
        back = reverse("admin:bank_account_audit", args=[account_id])
        integrity = selectors.account_integrity(account_id)
        if not integrity.ok:
            self.message_user(
                request,
                COMMAND_WITHHELD.format(label=label, reason=integrity.reason),
                messages.ERROR,
            )
            return HttpResponseRedirect(back)
        if not form.is_valid():
            problems = "; ".join(
                f"{field}: {' '.join(str(e) for e in errors)}"
                for field, errors in form.errors.items()
            )
            self.message_user(request, f"{label} was not done: {problems}", messages.ERROR)
            return HttpResponseRedirect(back)
        service = getattr(svc, command)
        try:
            state = service(
                account_id=account_id,
                actor=Actor.from_user(request.user, auth="admin"),
                **form.cleaned_data,
            )
        except (DomainError, ServiceError) as exc:
            self.message_user(request, f"{label} refused: {exc}", messages.ERROR)
            return HttpResponseRedirect(back)
        self.message_user(
            request,
            f"{label} done: the balance is {state.balance_cents} cents, the status {state.status}, "
            f"version {state.version}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(back)
