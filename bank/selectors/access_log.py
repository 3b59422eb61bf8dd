"""The access log's reads: an account's latest views, and the log filtered for the admin."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from bank.models import AccessLogEntry

VIEWED_BY_MAX = 10


def viewed_by(account_id: uuid.UUID, *, limit: int = VIEWED_BY_MAX) -> list[AccessLogEntry]:
    """The account's latest recorded views, newest first (one query)."""
    return list(AccessLogEntry.objects.filter(account_id=account_id).order_by("-id")[:limit])


def access_entries(
    *,
    user_id: int | None = None,
    username: str | None = None,
    account_id: uuid.UUID | None = None,
) -> QuerySet[AccessLogEntry]:
    """The log, newest first, optionally of one user or one account."""
    found = AccessLogEntry.objects.order_by("-id")
    if user_id is not None:
        found = found.filter(user_id=user_id)
    if username:
        found = found.filter(username=username)
    if account_id is not None:
        found = found.filter(account_id=account_id)
    return found


def log_users() -> list[tuple[int, str]]:
    """Every user, by user name, for the log's user filter (one query on the small users
    table; selecting the users the log names would scan the log)."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    return [
        (pk, name)
        for pk, name in user_model.objects.order_by(user_model.USERNAME_FIELD).values_list(
            "pk", user_model.USERNAME_FIELD
        )
    ]
