"""Queries on the read models (eventually consistent: as far as the projections got)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from bank.services.accounts import account_version
from bank.services.errors import AccountNotFound
from projections.accounts import search_key
from projections.models import AccountBalance, TransactionHistory


def account_list(
    *, status: str | None = None, search: str | None = None
) -> QuerySet[AccountBalance]:
    """The accounts, by holder name, optionally of one status or matching a name.

    Args:
        status: ``active``, ``frozen`` or ``closed``.
        search: part of a holder's name, in any case and Unicode normal form.
    """
    accounts = AccountBalance.objects.order_by("holder_name", "account_id")
    if status:
        accounts = accounts.filter(status=status)
    if search and search.strip():
        accounts = accounts.filter(holder_search__contains=search_key(search.strip()))
    return accounts


def find_accounts(accounts: QuerySet[AccountBalance], term: str) -> QuerySet[AccountBalance]:
    """The admin's search: an account id finds that account, anything else a holder's name."""
    term = term.strip()
    if not term:
        return accounts
    try:
        return accounts.filter(account_id=uuid.UUID(term))
    except ValueError:
        return accounts.filter(holder_search__contains=search_key(term))


def transactions(account_id: uuid.UUID) -> QuerySet[TransactionHistory]:
    """The account's money movements in version order.

    Raises:
        AccountNotFound: no such account (an account the projections have not reached
            yet has an empty history, not a 404).
    """
    if account_version(account_id) == 0:
        raise AccountNotFound(account_id)
    return TransactionHistory.objects.filter(account_id=account_id).order_by("version")
