"""The read side: every query the API views and the admin pages make.

- An account's current or past state, its events and its version come from its own events
  (strongly consistent), through the services' repository.
- The account list and the transaction history come from the read models (as far as the
  projections got).
- The audit page's timeline, time travel and integrity come from the events and the
  verification records.
"""

from __future__ import annotations

from bank.services.accounts import (
    AccountState,
    account_at,
    account_events,
    account_version,
    get_account,
)

from .audit import (
    PAGE_SIZE,
    Integrity,
    IntegrityPanel,
    Timeline,
    TimelineRow,
    account_integrity,
    account_timeline,
    integrity_panel,
    timeline_rows,
)
from .read_models import account_list, find_accounts, transactions

__all__ = [
    "PAGE_SIZE",
    "AccountState",
    "Integrity",
    "IntegrityPanel",
    "Timeline",
    "TimelineRow",
    "account_at",
    "account_events",
    "account_integrity",
    "account_list",
    "account_timeline",
    "account_version",
    "find_accounts",
    "get_account",
    "integrity_panel",
    "timeline_rows",
    "transactions",
]
