"""The maker-checker queue in the admin: requests waiting for a second person, and decisions.

The queue (``ApprovalRequest``, read-only for everyone) lists the requests, pending ones by
default, oldest first, filtered by status, kind, account, requester and age, with the rule
itself (``approvals.policy().describe()``) above the list. Each request has a decision page
that shows what approving it would change (the accounts now and after, from
``approvals.preview``; the business rule it would break now, if any). Members of the
approvers group (``bank.decide_approval``) approve (with an optional note) or reject (with a
reason) there, or several at once through the list's actions and a confirmation page; the
requester never decides their own request (the services refuse it, superusers included, and
the page says so before anyone tries). Everyone else who may view the queue sees it
read-only. Every decision goes through ``bank.services.approvals`` with the staff user as
actor; every refusal is a message, never an error page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil

from bank import selectors
from bank.admin import (
    describe_request,
    refusal_message,
    request_link,
)
from bank.domain import DomainError, SelfApproval
from bank.domain.approval import KINDS, PENDING, STATUSES
from bank.forms import ApproveForm, RejectForm
from bank.models import ApprovalRequest
from bank.money_format import format_money
from bank.services import Actor, approvals
from bank.services.errors import ApprovalNotFound, ServiceError

DECIDE_PERMISSION = "bank.decide_approval"

APPROVED = "Approved: request {request} ({what}) ran. {outcome}"
APPROVED_OUTCOME = "{holder}'s account is now at {balance}, {status}, version {version}."
REJECTED = "Rejected: request {request} ({what}) will not run. Reason recorded: “{reason}”."
# A decision the services refused: the request's own state, or the command's rule now.
DECISION_REFUSED = "{action} refused for request {request}: {why}."
APPROVAL_BROKE_A_RULE = (
    "the command would break a rule now ({why}); the request stays pending: reject it, or "
    "approve it once the account allows it"
)
NOT_FOUND = "Approval request {approval_id} does not exist."
# Several at once: what was decided, the approver's own (refused), the rest (with why).
BULK_DONE = "{decided} {count} request{s}: {requests}."
BULK_OWN = (
    "Refused {count} request{s} of your own: {requests}. You asked for {them}, so another "
    "approver must decide."
)
BULK_FAILED = "Not {decided}: {requests}."
NO_DECISION = "Choose Approve or Reject: nothing was decided."

# The ages the queue filters by: waiting longer than each.
AGES = (
    ("1h", "more than 1 hour", timedelta(hours=1)),
    ("4h", "more than 4 hours", timedelta(hours=4)),
    ("24h", "more than 1 day", timedelta(days=1)),
    ("72h", "more than 3 days", timedelta(days=3)),
)


def _why(exc: DomainError | ServiceError, currency: str) -> str:
    """A refusal in the admin's words; a business rule of the command says the request
    stays pending."""
    if isinstance(exc, DomainError) and exc.code not in (
        "self_approval",
        "approval_not_pending",
        "approval_expired",
        "invalid_input",
    ):
        return APPROVAL_BROKE_A_RULE.format(why=refusal_message(exc, currency))
    return refusal_message(exc, currency)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _currency_of(account_id: uuid.UUID, labels: dict[uuid.UUID, Any]) -> str:
    """The account's currency: from the read model's label, else from its events ("" when
    it cannot be read: amounts are then shown in minor units, never in a guessed currency)."""
    label = labels.get(account_id)
    if label is not None:
        return str(label.currency)
    try:
        return selectors.get_account(account_id).currency
    except ServiceError:
        return ""


# --- the list's filters ------------------------------------------------------------------


class StatusFilter(admin.SimpleListFilter):
    """By status: pending unless another is chosen ("all" shows every request)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(status, status) for status in STATUSES] + [("all", "all")]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value() or PENDING
        if value == "all":
            return queryset
        if value not in STATUSES:
            return queryset.none()
        return queryset.filter(status=value)

    def choices(self, changelist: Any) -> Any:
        current = self.value() or PENDING
        for lookup, title in self.lookup_choices:
            yield {
                "selected": current == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


class KindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(kind, kind) for kind in KINDS]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        return queryset.filter(kind=value) if value else queryset


class AccountFilter(admin.SimpleListFilter):
    """By account: the accounts requests name, by holder (either side of a transfer)."""

    title = "account"
    parameter_name = "account_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = selectors.approval_accounts()
        labels = selectors.account_labels(ids)
        choices = [
            (str(account_id), labels[account_id].holder_name)
            if account_id in labels
            else (str(account_id), str(account_id)[:8] + "…")
            for account_id in ids
        ]
        return sorted(choices, key=lambda choice: choice[1].casefold())

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        if not value:
            return queryset
        try:
            key = uuid.UUID(str(value))
        except ValueError:
            return queryset.none()
        return queryset.filter(Q(account_id=key) | Q(counterparty_id=key))


class RequesterFilter(admin.SimpleListFilter):
    title = "requester"
    parameter_name = "requested_by"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in selectors.approval_requesters()]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        return queryset.filter(requested_by=value) if value else queryset


class AgeFilter(admin.SimpleListFilter):
    title = "waiting"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, label, _ in AGES]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        value = self.value()
        if not value:
            return queryset
        for key, _, age in AGES:
            if key == value:
                return queryset.filter(requested_at__lt=timezone.now() - age)
        return queryset.none()


# --- what a decision page shows ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviewLine:
    """One account on the decision page: its state now and after approval."""

    account_id: uuid.UUID
    holder_name: str
    balance_now: str
    balance_after: str
    status_now: str
    status_after: str
    version_now: int
    version_after: int

    @property
    def balance_changes(self) -> bool:
        return self.balance_now != self.balance_after

    @property
    def status_changes(self) -> bool:
        return self.status_now != self.status_after


@dataclass(frozen=True, slots=True)
class Outcome:
    """A bulk decision's result for one request."""

    row: ApprovalRequest
    done: bool
    own: bool
    why: str = ""


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    list_display = (
        "kind_label",
        "account",
        "amount",
        "requester",
        "reason_text",
        "requested",
        "expires",
        "status_label",
    )
    list_display_links = None
    list_filter = (StatusFilter, KindFilter, AccountFilter, RequesterFilter, AgeFilter)
    search_fields = ("requested_by",)
    search_help_text = "a holder's name, an account or request id, or a requester (exact)"
    ordering = ("requested_at", "id")
    sortable_by = ("requested", "expires", "amount")
    list_per_page = 50
    show_full_result_count = False
    actions = ["approve_selected", "reject_selected"]
    change_list_template = "admin/bank/approvalrequest/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a request is made by a command that crosses the rule

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # decided through the services, recorded in its own stream

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(DECIDE_PERMISSION))

    def get_queryset(self, request: HttpRequest) -> Any:
        # The queue's own read: the due requests are recorded as expired first, so that an
        # expired request never shows as pending.
        return approvals.queue()

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        return selectors.find_requests(queryset, search_term), False

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The list's page, each row with the labels of the accounts it names (one query for
        the page: ``row.label``, ``row.party``)."""
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        labels = selectors.account_labels(
            [row.account_id for row in rows] + [row.counterparty_id for row in rows]
        )
        for row in rows:
            row.label = labels.get(row.account_id)
            row.party = labels.get(row.counterparty_id) if row.counterparty_id else None
        return changelist

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        context = {
            "title": "Approval queue",
            "rule": approvals.policy().describe(),
            "may_decide": self.has_decide_permission(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    # --- columns ------------------------------------------------------------------------

    @admin.display(description="kind")
    def kind_label(self, row: ApprovalRequest) -> SafeString:
        return format_html(
            '<a href="{}" class="decide-link" title="request {}">{}</a>',
            reverse("admin:bank_approvalrequest_decide", args=[row.id]),
            row.id,
            row.kind,
        )

    @admin.display(description="account")
    def account(self, row: ApprovalRequest) -> SafeString:
        html = self._account_html(row.account_id, getattr(row, "label", None))
        if row.counterparty_id:
            other = self._account_html(row.counterparty_id, getattr(row, "party", None))
            html = format_html("{} <span class='counterparty'>(to {})</span>", html, other)
        return html

    @staticmethod
    def _account_html(account_id: uuid.UUID, label: Any) -> SafeString:
        url = reverse("admin:bank_account_audit", args=[account_id])
        if label is None:
            return format_html(
                '<a href="{}" title="{}"><code>{}</code></a>', url, account_id, str(account_id)[:8]
            )
        return format_html(
            '<a href="{}" class="account-link" title="{}">{}</a>',
            url,
            account_id,
            label.holder_name,
        )

    @admin.display(description="amount", ordering="amount_cents")
    def amount(self, row: ApprovalRequest) -> str:
        if row.amount_cents is None:
            return ""
        label = getattr(row, "label", None)
        if label is None:
            return f"{row.amount_cents} minor units"
        return format_money(row.amount_cents, label.currency)

    @admin.display(description="requester")
    def requester(self, row: ApprovalRequest) -> str:
        return row.requested_by

    @admin.display(description="reason")
    def reason_text(self, row: ApprovalRequest) -> str:
        return row.reason

    @admin.display(description="requested at", ordering="requested_at")
    def requested(self, row: ApprovalRequest) -> SafeString:
        moment = timezone.localtime(row.requested_at)
        return format_html(
            '<time datetime="{}">{}</time> <span class="help">({} ago)</span>',
            moment.isoformat(),
            moment.strftime("%Y-%m-%d %H:%M"),
            timesince(moment, depth=1),
        )

    @admin.display(description="expires at", ordering="expires_at")
    def expires(self, row: ApprovalRequest) -> SafeString:
        moment = timezone.localtime(row.expires_at)
        when = (
            format_html(' <span class="help">(in {})</span>', timeuntil(moment, depth=1))
            if row.status == PENDING
            else ""
        )
        return format_html(
            '<time datetime="{}">{}</time>{}',
            moment.isoformat(),
            moment.strftime("%Y-%m-%d %H:%M"),
            when,
        )

    @admin.display(description="status")
    def status_label(self, row: ApprovalRequest) -> SafeString:
        if row.status == PENDING or not row.decided_by:
            return format_html('<span class="approval-status">{}</span>', row.status)
        return format_html(
            '<span class="approval-status">{}</span> <span class="help">by {}</span>',
            row.status,
            row.decided_by,
        )

    # --- the decision page --------------------------------------------------------------

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path(
                "<uuid:approval_id>/decide/",
                view(self.decide_view),
                name="bank_approvalrequest_decide",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        try:
            key = uuid.UUID(object_id)
        except ValueError:
            return super().change_view(request, object_id, *args, **kwargs)
        return HttpResponseRedirect(reverse("admin:bank_approvalrequest_decide", args=[key]))

    def _queue_url(self) -> str:
        return reverse("admin:bank_approvalrequest_changelist")

    def decide_view(self, request: HttpRequest, approval_id: uuid.UUID) -> HttpResponseBase:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        try:
            row = approvals.get(approval_id)
        except ApprovalNotFound:
            self.message_user(request, NOT_FOUND.format(approval_id=approval_id), messages.ERROR)
            return HttpResponseRedirect(self._queue_url())
        approve_form, reject_form = ApproveForm(prefix="approve"), RejectForm(prefix="reject")
        if request.method == "POST":
            if not self.has_decide_permission(request):
                raise PermissionDenied
            decision = request.POST.get("decision")
            if decision == "approve":
                approve_form = ApproveForm(request.POST, prefix="approve")
                if approve_form.is_valid():
                    self._approve(request, row, approve_form.cleaned_data["note"])
                    return HttpResponseRedirect(self._queue_url())
            elif decision == "reject":
                reject_form = RejectForm(request.POST, prefix="reject")
                if reject_form.is_valid():
                    self._reject(request, row, reject_form.cleaned_data["reason"])
                    return HttpResponseRedirect(self._queue_url())
            else:
                self.message_user(request, NO_DECISION, messages.ERROR)
                return HttpResponseRedirect(request.path)
        return self._decision_page(request, row, approve_form, reject_form)

    def _decision_page(
        self,
        request: HttpRequest,
        row: ApprovalRequest,
        approve_form: forms.Form,
        reject_form: forms.Form,
    ) -> HttpResponse:
        labels = selectors.account_labels([row.account_id, row.counterparty_id])
        label = labels.get(row.account_id)
        currency = label.currency if label is not None else ""
        lines: list[PreviewLine] = []
        refusal, unavailable = "", ""
        if row.status == PENDING:
            try:
                preview = approvals.preview(row)
            except (DomainError, ServiceError) as exc:
                unavailable = str(exc)
            else:
                for now, after in zip(preview.before, preview.after, strict=True):
                    currency = currency or now.currency
                    lines.append(
                        PreviewLine(
                            account_id=now.id,
                            holder_name=now.holder_name,
                            balance_now=format_money(now.balance_cents, now.currency),
                            balance_after=format_money(after.balance_cents, after.currency),
                            status_now=now.status,
                            status_after=after.status,
                            version_now=now.version,
                            version_after=after.version,
                        )
                    )
                if preview.refusal is not None:
                    refusal = refusal_message(preview.refusal, currency)
        may_decide = self.has_decide_permission(request)
        own = row.requested_by_id is not None and row.requested_by_id == request.user.pk
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Approval request: {describe_request(row, currency)}",
            "row": row,
            "label": label,
            "party": labels.get(row.counterparty_id) if row.counterparty_id else None,
            "amount": format_money(row.amount_cents, currency)
            if row.amount_cents is not None and currency
            else "",
            "command_items": sorted(row.command.items()),
            "lines": lines,
            "refusal": refusal,
            "unavailable": unavailable,
            "pending": row.status == PENDING,
            "may_decide": may_decide,
            "own": own,
            "approve_form": approve_form,
            "reject_form": reject_form,
            "rule": approvals.policy().describe(),
            "queue_url": self._queue_url(),
        }
        return TemplateResponse(request, "admin/bank/approvalrequest/decide.html", context)

    def _actor(self, request: HttpRequest) -> Actor:
        return Actor.from_user(request.user, auth="admin")

    def _currency(self, row: ApprovalRequest) -> str:
        return _currency_of(row.account_id, selectors.account_labels([row.account_id]))

    def _approve(self, request: HttpRequest, row: ApprovalRequest, note: str) -> bool:
        currency = self._currency(row)
        try:
            done = approvals.approve(row.id, actor=self._actor(request), note=note)
        except (DomainError, ServiceError) as exc:
            self.message_user(
                request,
                format_html(
                    DECISION_REFUSED,
                    action="Approval",
                    request=request_link(row.id),
                    why=_why(exc, currency),
                ),
                messages.ERROR,
            )
            return False
        state = selectors.get_account(done.account_id)
        outcome = APPROVED_OUTCOME.format(
            holder=state.holder_name,
            balance=format_money(state.balance_cents, state.currency),
            status=state.status,
            version=state.version,
        )
        self.message_user(
            request,
            format_html(
                APPROVED,
                request=request_link(row.id),
                what=describe_request(done, state.currency),
                outcome=outcome,
            ),
            messages.SUCCESS,
        )
        return True

    def _reject(self, request: HttpRequest, row: ApprovalRequest, reason: str) -> bool:
        currency = self._currency(row)
        try:
            done = approvals.reject(row.id, actor=self._actor(request), reason=reason)
        except (DomainError, ServiceError) as exc:
            self.message_user(
                request,
                format_html(
                    DECISION_REFUSED,
                    action="Rejection",
                    request=request_link(row.id),
                    why=_why(exc, currency),
                ),
                messages.ERROR,
            )
            return False
        self.message_user(
            request,
            format_html(
                REJECTED,
                request=request_link(row.id),
                what=describe_request(done, currency),
                reason=done.decision_reason,
            ),
            messages.SUCCESS,
        )
        return True

    # --- several at once ----------------------------------------------------------------

    def response_action(self, request: HttpRequest, queryset: Any) -> Any:
        # A ticked value that is no request id (a hand-made POST) is left out instead of
        # failing the query: with none left, Django says that nothing was selected.
        chosen = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        valid = [value for value in chosen if _is_uuid(value)]
        if len(valid) != len(chosen):
            data = request.POST.copy()
            data.setlist(helpers.ACTION_CHECKBOX_NAME, valid)
            request.POST = data  # type: ignore[assignment]
        return super().response_action(request, queryset)

    @admin.action(permissions=["decide"], description="Approve the selected requests…")
    def approve_selected(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        return self._bulk(request, queryset, "approve")

    @admin.action(permissions=["decide"], description="Reject the selected requests…")
    def reject_selected(self, request: HttpRequest, queryset: Any) -> HttpResponse | None:
        return self._bulk(request, queryset, "reject")

    def _selected(self, request: HttpRequest, queryset: Any) -> list[ApprovalRequest]:
        """The requests ticked, whatever their status now (one decided meanwhile is listed
        and reported, not silently dropped by the list's status filter)."""
        if request.POST.get("select_across") == "1":
            return list(queryset)
        ids = [
            uuid.UUID(value)
            for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
            if _is_uuid(value)
        ]
        return list(ApprovalRequest.objects.filter(pk__in=ids).order_by("requested_at", "id"))

    def _bulk(self, request: HttpRequest, queryset: Any, decision: str) -> HttpResponse | None:
        rows = self._selected(request, queryset)
        form: forms.Form = (
            ApproveForm(request.POST if request.POST.get("post") == "yes" else None)
            if decision == "approve"
            else RejectForm(request.POST if request.POST.get("post") == "yes" else None)
        )
        if form.is_bound and form.is_valid():
            self._run_bulk(request, rows, decision, form.cleaned_data)
            return None  # back to the list
        labels = selectors.account_labels([row.account_id for row in rows])
        own = [row for row in rows if row.requested_by_id == request.user.pk]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{'Approve' if decision == 'approve' else 'Reject'} "
            f"{len(rows)} request{'s' if len(rows) != 1 else ''}: please confirm",
            "decision": decision,
            "action": f"{decision}_selected",
            "rows": [
                (
                    row,
                    labels.get(row.account_id),
                    describe_request(
                        row,
                        labels[row.account_id].currency if row.account_id in labels else None,
                    ),
                    row.requested_by_id == request.user.pk,
                )
                for row in rows
            ],
            "own": own,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/bank/approvalrequest/bulk_confirm.html", context)

    def _run_bulk(
        self,
        request: HttpRequest,
        rows: list[ApprovalRequest],
        decision: str,
        data: dict[str, Any],
    ) -> None:
        """Decide each request on its own (one failing never stops the others); report the
        decided, the requester's own (refused) and the rest (with why) in three messages."""
        actor = self._actor(request)
        labels = selectors.account_labels([row.account_id for row in rows])
        outcomes: list[Outcome] = []
        for row in rows:
            currency = _currency_of(row.account_id, labels)
            try:
                if decision == "approve":
                    approvals.approve(row.id, actor=actor, note=data["note"])
                else:
                    approvals.reject(row.id, actor=actor, reason=data["reason"])
            except SelfApproval:
                outcomes.append(Outcome(row, done=False, own=True))
            except (DomainError, ServiceError) as exc:
                outcomes.append(Outcome(row, done=False, own=False, why=_why(exc, currency)))
            else:
                outcomes.append(Outcome(row, done=True, own=False))
        done = [o for o in outcomes if o.done]
        own = [o for o in outcomes if o.own]
        failed = [o for o in outcomes if not o.done and not o.own]

        def links(items: list[Outcome]) -> SafeString:
            return format_html_join(", ", "{}", ((request_link(o.row.id),) for o in items))

        if done:
            self.message_user(
                request,
                format_html(
                    BULK_DONE,
                    decided="Approved" if decision == "approve" else "Rejected",
                    count=len(done),
                    s="s" if len(done) != 1 else "",
                    requests=links(done),
                ),
                messages.SUCCESS,
            )
        if own:
            self.message_user(
                request,
                format_html(
                    BULK_OWN,
                    count=len(own),
                    s="s" if len(own) != 1 else "",
                    requests=links(own),
                    them="them" if len(own) != 1 else "it",
                ),
                messages.ERROR,
            )
        if failed:
            self.message_user(
                request,
                format_html(
                    BULK_FAILED,
                    decided="approved" if decision == "approve" else "rejected",
                    requests=format_html_join(
                        "; ", "{} ({})", ((request_link(o.row.id), o.why) for o in failed)
                    ),
                ),
                messages.ERROR,
            )
