"""The event store's events list, searched with the bank's meaning of an event.

``eventstore`` registers a read-only events admin that knows nothing about banks (ids,
actor, correlation). This module replaces that registration with a subclass of the very
same admin class (nothing copied, still read-only for everyone) that adds:

- a search by a holder's name, a description or reason (contains), the beginning of an
  event or account id, and an amount typed in currency units, besides the store's own
  (``bank.selectors.event_search``);
- a date range of the days the events occurred on (``OccurredBetweenFilter``);
- the holder and the amount (in currency units) as columns, named for a page of events in
  one query on the balance read model;
- personal data (issue 20): an event's page shows its data exactly as stored (the hash chain
  covers those bytes, so an encrypted holder name is its ``pii:v1:`` token, marked "encrypted:
  shown decrypted below") and, below it, every personal field decrypted, or ``[erased]``
  once the holder's personal data was erased (``bank.selectors.personal``). A name an earlier
  release stored in clear is hidden from the stored view too after an erasure. The store's
  snapshot pages get the same treatment (a snapshot holds the aggregate's copy of the name).

The event store's public API does not export its models, so the model is looked up through
the app registry and the admin class through the admin site (both public Django API).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from bank import selectors
from bank.domain import STREAM_TYPE
from bank.money_format import format_money
from bank.selectors.event_search import events_between, search_events

Event = apps.get_model("eventstore", "Event")
Snapshot = apps.get_model("eventstore", "Snapshot")
# The event store's own admins: this module extends them, never re-implements them.
StoreEventAdmin: Any = type(admin.site.get_model_admin(Event))
StoreSnapshotAdmin: Any = type(admin.site.get_model_admin(Snapshot))

DATE_RANGE_INVALID = "The date range was left out: {problems}."


class DateRangeForm(forms.Form):
    """The two days of ``OccurredBetweenFilter`` (either may be left empty)."""

    occurred_from = forms.DateField(
        required=False,
        label="From (first day)",
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    occurred_to = forms.DateField(
        required=False,
        label="To (last day)",
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, last = data.get("occurred_from"), data.get("occurred_to")
        for name, day in (("occurred_from", first), ("occurred_to", last)):
            if day is not None and not date(1900, 1, 1) <= day <= date(9999, 12, 30):
                self.add_error(name, "Pick a day from 1900-01-01 to 9999-12-30.")
        if first is not None and last is not None and last < first:
            raise forms.ValidationError(
                f"the last day ({last}) is before the first ({first})", code="days_reversed"
            )
        return data


class OccurredBetweenFilter(admin.ListFilter):
    """The events that occurred from one day through another, in the admin's time zone.

    A small GET form in the filter column (two date inputs); the days travel in the query
    string as ``occurred_from`` and ``occurred_to``, beside the list's other filters.
    """

    title = "date range (occurred)"
    template = "admin/bank/event/date_range_filter.html"
    parameters = ("occurred_from", "occurred_to")

    def __init__(self, request: HttpRequest, params: dict[str, Any], *args: Any) -> None:
        super().__init__(request, params, *args)
        for name in self.parameters:
            if name in params:
                value = params.pop(name)
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value
        self.form = DateRangeForm(
            {name: self.used_parameters.get(name, "") for name in self.parameters}
        )
        self.days: tuple[date | None, date | None] = (None, None)
        if self.form.is_valid():
            self.days = (
                self.form.cleaned_data["occurred_from"],
                self.form.cleaned_data["occurred_to"],
            )
        elif any(self.used_parameters.values()):
            problems = "; ".join(
                " ".join(str(e) for e in errors) for errors in self.form.errors.values()
            )
            messages.warning(request, DATE_RANGE_INVALID.format(problems=problems))

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return list(self.parameters)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        first, last = self.days
        return events_between(queryset, first_day=first, last_day=last)

    def choices(self, changelist: Any) -> Iterator[Any]:
        """One "choice": the form, the list's other parameters (kept as hidden inputs) and
        the link that clears the range."""
        kept = [
            (name, value)
            for name, values in changelist.filter_params.items()
            if name not in self.parameters
            for value in (values if isinstance(values, list) else [values])
        ]
        yield {
            "form": self.form,
            "kept": kept,
            "active": any(self.days),
            "clear_url": changelist.get_query_string(remove=list(self.parameters)),
        }


# --- personal data: stored and revealed --------------------------------------------------

STORED_HELP = (
    "Exactly as stored: the hash chain covers these bytes. Personal fields are stored "
    "encrypted under the holder's own key (a pii:v1: token, which no one can read without "
    "the application's keys); they are shown decrypted under “Personal data”."
)
STORED_HELP_ERASED_CLEAR = (
    " A name an earlier release stored in clear is not shown here once the holder's "
    "personal data was erased (the database still holds it)."
)
PERSONAL_HELP = (
    "The personal fields above, decrypted for you; [erased] once the holder's personal data "
    "was erased (their key is deleted: the stored token can never be read again)."
)


def _erased(obj: Any) -> bool:
    """Whether the account of this event or snapshot was erased (once per object)."""
    cached = getattr(obj, "_personal_erased", None)
    if cached is None:
        cached = obj.stream_type == STREAM_TYPE and selectors.is_erased(obj.stream_id)
        obj._personal_erased = cached
    return bool(cached)


def stored_json_html(kind: str | None, obj: Any, payload: dict[str, Any]) -> SafeString:
    """The payload as stored, pretty-printed, with its encrypted fields named and a help."""
    fields = selectors.personal_fields(kind, payload, erased=False) if obj is not None else []
    erased = bool(fields) and _erased(obj)
    shown = selectors.stored_for_display(kind, payload, erased=erased)
    encrypted = [field.name for field in fields if field.encrypted]
    marks = format_html_join(
        "",
        '<p class="stored-encrypted"><code>{}</code> (encrypted: shown decrypted below)</p>',
        ((name,) for name in encrypted),
    )
    help_text = STORED_HELP + (
        STORED_HELP_ERASED_CLEAR if any(not f.encrypted for f in fields) else ""
    )
    return format_html(
        '<pre class="eventstore-json">{}</pre>{}<p class="help">{}</p>',
        json.dumps(shown, indent=2, sort_keys=True, ensure_ascii=False),
        marks,
        help_text if fields else "Exactly as stored: the hash chain covers these bytes.",
    )


def personal_html(kind: str | None, obj: Any, payload: dict[str, Any]) -> SafeString:
    """The personal fields of the payload, decrypted (or why not), as a small table."""
    fields = selectors.personal_fields(kind, payload, erased=False)
    if not fields:
        return format_html('<span class="help">{}</span>', "No personal data.")
    fields = selectors.personal_fields(kind, payload, erased=_erased(obj))
    rows = format_html_join(
        "",
        '<tr><th scope="row"><code>{}</code></th><td class="personal-value">{}</td>'
        '<td class="help">{}</td></tr>',
        (
            (
                field.name,
                field.shown,
                "decrypted" if field.encrypted else "stored in clear (before encryption)",
            )
            for field in fields
        ),
    )
    return format_html(
        '<table class="personal-data"><caption class="visually-hidden">Personal fields, '
        "decrypted</caption><tbody>{}</tbody></table>"
        '<p class="help">{}</p>',
        rows,
        PERSONAL_HELP,
    )


admin.site.unregister(Event)


@admin.register(Event)
class EventAdmin(StoreEventAdmin):  # the store's own class, found at runtime
    list_display = (
        "position",
        "stream_id",
        "holder",
        "version",
        "event_type",
        "amount",
        "occurred_at",
        "actor",
    )
    list_filter = (
        "event_type",
        "stream_type",
        OccurredBetweenFilter,
        ("occurred_at", admin.DateFieldListFilter),
    )
    fields = tuple(
        name
        for field in StoreEventAdmin.fields
        for name in ((field, "personal_data") if field == "pretty_data" else (field,))
    )
    readonly_fields = fields
    search_help_text = (
        "a holder's name, words of a description or reason, an amount in currency units "
        "(12.50), the beginning of an event or account id (at least 4 characters), a full "
        "stream, event or correlation id, or an actor's user name"
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        stored, duplicates = super().get_search_results(request, queryset, term)
        bank = search_events(queryset, term)
        return stored | bank, duplicates

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The page's events, each with its account's label (one query for the page)."""
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        labels = selectors.account_labels(row.stream_id for row in rows)
        for row in rows:
            row.label = labels.get(row.stream_id)
        return changelist

    @admin.display(description="holder")
    def holder(self, event: Any) -> str:
        label = getattr(event, "label", None)
        return label.holder_name if label is not None else ""

    @admin.display(description="amount")
    def amount(self, event: Any) -> str:
        label = getattr(event, "label", None)
        cents = (event.data or {}).get("amount_cents")
        if label is None or not isinstance(cents, int) or isinstance(cents, bool):
            return ""
        return format_money(cents, label.currency)

    @admin.display(description="data (as stored)")
    def pretty_data(self, event: Any) -> SafeString:
        return stored_json_html(event.event_type, event, event.data or {})

    @admin.display(description="personal data")
    def personal_data(self, event: Any) -> SafeString:
        return personal_html(event.event_type, event, event.data or {})


admin.site.unregister(Snapshot)


@admin.register(Snapshot)
class SnapshotAdmin(StoreSnapshotAdmin):  # the store's own class, found at runtime
    """The store's snapshot pages, with the state's personal fields decrypted."""

    fields = (*StoreSnapshotAdmin.fields, "personal_data")
    readonly_fields = fields

    @admin.display(description="state (as stored)")
    def pretty_state(self, snapshot: Any) -> SafeString:
        if snapshot.stream_type != STREAM_TYPE:
            return stored_json_html("", None, snapshot.state or {})
        return stored_json_html(None, snapshot, snapshot.state or {})

    @admin.display(description="personal data")
    def personal_data(self, snapshot: Any) -> SafeString:
        if snapshot.stream_type != STREAM_TYPE:
            return personal_html("", None, {})
        return personal_html(None, snapshot, snapshot.state or {})
