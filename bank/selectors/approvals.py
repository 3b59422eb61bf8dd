"""The maker-checker queue's reads for the admin: its filters' choices and its search.

The queue itself (``ApprovalRequest`` rows, the due ones expired first) and what approving a
request would change come from ``bank.services.approvals`` (``queue``, ``get``,
``preview``); these are the lookups around it, each one query.
"""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet
from django.utils import timezone

from bank.domain.approval import PENDING
from bank.models import ApprovalRequest
from projections.models import AccountBalance

from .read_models import find_accounts

# The filters list at most this many requesters or accounts (the newest first).
FILTER_CHOICES_MAX = 100


def approval_requesters(*, limit: int = FILTER_CHOICES_MAX) -> list[str]:
    """The user names that asked for approvals, in name order."""
    names = (
        ApprovalRequest.objects.order_by("requested_by")
        .values_list("requested_by", flat=True)
        .distinct()
    )
    return list(names[:limit])


def approval_accounts(*, limit: int = FILTER_CHOICES_MAX) -> list[uuid.UUID]:
    """The accounts named by requests (the one each is about), most recent request first."""
    seen: dict[uuid.UUID, None] = {}
    rows = ApprovalRequest.objects.order_by("-requested_at").values_list("account_id", flat=True)
    for account_id in rows[: limit * 10]:
        seen.setdefault(account_id, None)
        if len(seen) >= limit:
            break
    return list(seen)


def find_requests(rows: QuerySet[ApprovalRequest], term: str) -> QuerySet[ApprovalRequest]:
    """The queue's search: a request's or an account's id, a holder's name (any account a
    request names, either side of a transfer), or a requester's user name (exact)."""
    term = term.strip()
    if not term:
        return rows
    try:
        key = uuid.UUID(term)
    except ValueError:
        accounts = find_accounts(AccountBalance.objects.all(), term).values("account_id")
        return rows.filter(
            Q(account_id__in=accounts) | Q(counterparty_id__in=accounts) | Q(requested_by=term)
        )
    return rows.filter(Q(pk=key) | Q(account_id=key) | Q(counterparty_id=key))


def pending_requests(
    account_id: uuid.UUID, *, limit: int = FILTER_CHOICES_MAX
) -> list[ApprovalRequest]:
    """The requests waiting for a decision that name the account (either side of a
    transfer), oldest first; one query. Past their time to live they are left out even
    before ``expire_due`` records them as expired."""
    rows = ApprovalRequest.objects.filter(
        Q(account_id=account_id) | Q(counterparty_id=account_id),
        status=PENDING,
        expires_at__gt=timezone.now(),
    ).order_by("requested_at", "id")
    return list(rows[:limit])
