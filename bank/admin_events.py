"""The event store's events list, searched with the bank's meaning of an event.

``eventstore`` registers a read-only events admin that knows nothing about banks (ids,
actor, correlation). This module replaces that registration with a subclass of the very
same admin class (nothing copied, still read-only for everyone) that adds:

- a search by a holder's name, a description or reason (contains), the beginning of an
  event or account id, and an amount typed in currency units, besides the store's own
  (``bank.selectors.event_search``);
- a date range of the days the events occurred on (``OccurredBetweenFilter``);
- the holder and the amount (in currency units) as columns, named for a page of events in
  one query on the balance read model.

The event store's public API does not export its models, so the model is looked up through
the app registry and the admin class through the admin site (both public Django API).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from bank import selectors
from bank.money_format import format_money
from bank.selectors.event_search import events_between, search_events

Event = apps.get_model("eventstore", "Event")
# The event store's own admin: this module extends it, never re-implements it.
StoreEventAdmin: Any = type(admin.site.get_model_admin(Event))

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
