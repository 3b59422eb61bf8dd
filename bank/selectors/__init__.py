"""The read side: every query the API views and the admin pages make.

- An account's current or past state, its events and its version come from its own events
  (strongly consistent), through the services' repository.
- The account list and the transaction history come from the read models (as far as the
  projections got).
- The audit page's timeline, time travel and integrity come from the events and the
  verification records; so do comparisons of two versions and statements.
- The balance chart comes from the transaction-history read model (thinned in the database).
- Personal fields as stored and as they read (``personal``): decrypted, or ``[erased]``.
- Who viewed an account (``access_log``): the append-only log's latest entries.
- A command's events across streams and a user's actions are selected by the events'
  metadata (``links``).
"""

from __future__ import annotations

from bank.services.accounts import (
    AccountState,
    account_at,
    account_events,
    account_version,
    get_account,
)

from .access_log import VIEWED_BY_MAX, access_entries, log_users, viewed_by
from .approvals import approval_accounts, approval_requesters, find_requests, pending_requests
from .audit import (
    PAGE_SIZE,
    Integrity,
    IntegrityPanel,
    StoredPage,
    Timeline,
    TimelineRow,
    account_integrity,
    account_timeline,
    integrity_panel,
    reversal_map,
    stored_events,
    timeline_rows,
)
from .chart import MAX_CHART_POINTS, BalancePoint, BalanceSeries, balance_series
from .compare import COMPARE_EVENTS_MAX, Comparison, compare_versions
from .lines import EventLine, line_of
from .links import (
    ACTIONS_PAGE_SIZE,
    CORRELATION_MAX,
    AccountLabel,
    ActionsPage,
    Correlation,
    account_labels,
    actor_actions,
    correlated_events,
)
from .personal import (
    HIDDEN_CLEAR,
    PersonalField,
    as_shown_now,
    erased_by_read_model,
    is_erased,
    personal_fields,
    stored_for_display,
)
from .read_models import account_list, find_accounts, transactions
from .statements import (
    STATEMENT_ROWS_MAX,
    Statement,
    account_statement,
    day_range,
    statement_movements,
)

__all__ = [
    "ACTIONS_PAGE_SIZE",
    "HIDDEN_CLEAR",
    "COMPARE_EVENTS_MAX",
    "CORRELATION_MAX",
    "MAX_CHART_POINTS",
    "PAGE_SIZE",
    "STATEMENT_ROWS_MAX",
    "VIEWED_BY_MAX",
    "AccountLabel",
    "AccountState",
    "ActionsPage",
    "BalancePoint",
    "BalanceSeries",
    "Comparison",
    "Correlation",
    "EventLine",
    "Integrity",
    "PersonalField",
    "IntegrityPanel",
    "Statement",
    "StoredPage",
    "Timeline",
    "TimelineRow",
    "access_entries",
    "approval_accounts",
    "approval_requesters",
    "as_shown_now",
    "account_at",
    "account_events",
    "account_integrity",
    "account_labels",
    "account_list",
    "account_statement",
    "account_timeline",
    "account_version",
    "actor_actions",
    "balance_series",
    "compare_versions",
    "correlated_events",
    "day_range",
    "erased_by_read_model",
    "find_accounts",
    "find_requests",
    "log_users",
    "get_account",
    "integrity_panel",
    "is_erased",
    "line_of",
    "pending_requests",
    "personal_fields",
    "reversal_map",
    "statement_movements",
    "stored_events",
    "stored_for_display",
    "timeline_rows",
    "transactions",
    "viewed_by",
]
