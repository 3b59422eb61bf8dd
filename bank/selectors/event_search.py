"""The event store's list in the admin, searched the way an auditor asks about accounts.

The store knows nothing about banks (``eventstore`` admin searches by ids, actor and
correlation); this module adds what needs the bank's meaning of an event, each as one
condition on the same query (subqueries, never one query per account):

- a holder's name, through the balance read model's account ids;
- a description or reason containing the words;
- the beginning of an event or account id (the eight characters the admin shows), as a
  range of ids, so that the unique index on event ids serves it;
- an amount typed in currency units ("12.50"), matched in the minor units of each
  currency the accounts hold (12.50 is 1250 EUR cents, but never 12.50 JPY);
- the days an event occurred on, in the admin's time zone.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from bank.money_format import AmountError, parse_amount
from projections.accounts import search_key
from projections.models import AccountBalance

# The shortest id beginning searched as one: shorter ones match a sixteenth of the store
# per character left out, which says nothing about one event.
ID_PREFIX_MIN = 4
_HEX = re.compile(r"^[0-9a-f]+$")


def _id_prefix(term: str) -> str:
    """The hex digits of an id's beginning ("3f2a9c41", "3f2a9c41-1b"), or ""."""
    digits = term.lower().replace("-", "").rstrip("…")
    if ID_PREFIX_MIN <= len(digits) < 32 and _HEX.match(digits):
        return digits
    return ""


def id_prefix_condition(field: str, prefix: str) -> Q:
    """Ids beginning with ``prefix`` (hex digits): a range, which the id's index serves."""
    low = uuid.UUID(prefix.ljust(32, "0"))
    high = uuid.UUID(prefix.ljust(32, "f"))
    return Q(**{f"{field}__gte": low, f"{field}__lte": high})


def _amount_condition(term: str, currencies: Iterable[str]) -> Q | None:
    """Events moving exactly ``term`` (currency units) in an account of its currency."""
    condition = None
    by_cents: dict[int, list[str]] = {}
    for currency in currencies:
        try:
            by_cents.setdefault(parse_amount(term, currency), []).append(currency)
        except (AmountError, ValueError):
            continue  # not an amount in this currency ("1.234" in EUR), or not an amount
    for cents, codes in sorted(by_cents.items()):
        accounts = AccountBalance.objects.filter(currency__in=codes).values("account_id")
        one = Q(data__amount_cents=cents, stream_id__in=accounts)
        condition = one if condition is None else condition | one
    return condition


def search_events(events: QuerySet[Any], term: str) -> QuerySet[Any]:
    """The events matching ``term`` in any of the ways listed in the module's docstring.

    One query for the page (plus one small one for the currencies the accounts hold when
    the term reads as an amount); ``events`` keeps the admin's other filters and order.
    """
    term = term.strip()
    if not term:
        return events
    holders = AccountBalance.objects.filter(holder_search__contains=search_key(term)).values(
        "account_id"
    )
    condition = (
        Q(stream_id__in=holders)
        | Q(data__description__icontains=term)
        | Q(data__reason__icontains=term)
    )
    prefix = _id_prefix(term)
    if prefix:
        condition |= id_prefix_condition("event_id", prefix)
        condition |= id_prefix_condition("stream_id", prefix)
    if any(ch.isdigit() for ch in term):
        currencies = AccountBalance.objects.values_list("currency", flat=True).distinct()
        amount = _amount_condition(term, sorted(set(currencies)))
        if amount is not None:
            condition |= amount
    return events.filter(condition)


def day_bounds(first_day: date | None, last_day: date | None) -> tuple[datetime | None, ...]:
    """The first moment of ``first_day`` and the first after ``last_day``, in the admin's
    time zone (None where a day is not given)."""
    zone = timezone.get_current_timezone()
    start = datetime.combine(first_day, time.min, tzinfo=zone) if first_day else None
    end = (
        datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=zone) if last_day else None
    )
    return start, end


def events_between(
    events: QuerySet[Any], *, first_day: date | None, last_day: date | None
) -> QuerySet[Any]:
    """The events that occurred from ``first_day`` through ``last_day`` (either open)."""
    start, end = day_bounds(first_day, last_day)
    if start is not None:
        events = events.filter(occurred_at__gte=start)
    if end is not None:
        events = events.filter(occurred_at__lt=end)
    return events
