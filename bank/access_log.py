"""Who looked at which account, when and from where: the append-only access log.

Every admin page and API read of one account's data calls :func:`record` before it
answers (the stable codes are the module's constants). One INSERT, in the request's
transaction or in autocommit; if it fails the exception propagates and the view fails
(a 500): a bank must not serve a view it could not log. The address is the one login
throttling counts (``config.security.client_ip``: ``REMOTE_ADDR`` unless
``TRUSTED_PROXY_COUNT`` proxies stand in front).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from rest_framework.request import Request

from bank.models import AccessLogEntry
from config.security import client_ip

AUDIT_VIEW = "audit_view"
TIME_TRAVEL = "time_travel"
COMPARE = "compare"
STATEMENT = "statement"
STATEMENT_CSV = "statement_csv"
EXPORT_CSV = "export_csv"
CORRELATION = "correlation"
ACTOR_ACTIONS = "actor_actions"
API_ACCOUNT = "api_account"
API_EVENTS = "api_events"
API_TRANSACTIONS = "api_transactions"

ACTIONS = (
    AUDIT_VIEW,
    TIME_TRAVEL,
    COMPARE,
    STATEMENT,
    STATEMENT_CSV,
    EXPORT_CSV,
    CORRELATION,
    ACTOR_ACTIONS,
    API_ACCOUNT,
    API_EVENTS,
    API_TRANSACTIONS,
)


def _entry(
    request: HttpRequest | Request, account_id: uuid.UUID, action: str, at: Any
) -> AccessLogEntry:
    # DRF's Request carries the token-authenticated user; its HttpRequest the headers.
    user = getattr(request, "user", None)
    http = request._request if isinstance(request, Request) else request
    authenticated = user is not None and user.is_authenticated
    return AccessLogEntry(
        at=at,
        user_id=user.pk if authenticated and user is not None else None,
        username=user.get_username() if authenticated and user is not None else "",
        account_id=account_id,
        action=action,
        address=client_ip(http) or "",
    )


def record(request: HttpRequest | Request, account_id: uuid.UUID, action: str) -> None:
    """Log one view of an account (one INSERT; an error propagates: the view must fail)."""
    _entry(request, account_id, action, timezone.now()).save()


def record_many(request: HttpRequest | Request, account_ids: Iterable[Any], action: str) -> None:
    """Log one view of each account a page shows (one INSERT for all; none for none)."""
    at = timezone.now()
    ids = sorted({uuid.UUID(str(a)) for a in account_ids if a})
    if ids:
        AccessLogEntry.objects.bulk_create([_entry(request, a, action, at) for a in ids])
