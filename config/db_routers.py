"""Reads of the read models from a PostgreSQL streaming replica (``DATABASE_REPLICA_URL``).

Installed only when a replica is configured (config/settings.py). The primary keeps
everything that must be current: commands, the event-sourced reads (the event store's own
cursors are always the primary's), the projections and the relay (they write), their
checkpoints and dead letters, and migrations. Only the read models' tables
(``REPLICATED``) may be read from the replica, and only inside a request that chose it.

A request decides once where its read-model reads go (:func:`read_alias`), not query by
query, so that one answer never mixes two databases' snapshots of the read models: a read
(GET, HEAD, OPTIONS) prefers the replica; anything else, and everything outside a request
(management commands, the followers), reads the primary. A read that asks for its own
writes (``min_position``) keeps the replica only when the replica's copy of the
projection's checkpoint has reached that position (bank/api/consistency.py), else it pins
the primary. An unreachable replica sends the request to the primary with a warning and a
``bank.replica.fallbacks`` count, and the replica is left alone for
``DATABASE_REPLICA_RETRY_SECONDS`` (each of those reads is counted, not logged again).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.http import HttpRequest, HttpResponseBase
from opentelemetry import metrics

log = logging.getLogger("config.db_routers")

PRIMARY = DEFAULT_DB_ALIAS
REPLICA = "replica"  # the alias config/settings.py gives DATABASE_REPLICA_URL
# The read models (label_lower): projected balances and histories, and the access log.
REPLICATED = frozenset(
    {"projections.accountbalance", "projections.transactionhistory", "bank.accesslogentry"}
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Why a read that would have gone to the replica went to the primary (the counter's
# ``reason``): the replica could not be reached, or it had not replayed the position asked.
UNREACHABLE, BEHIND = "unreachable", "behind"

fallbacks = metrics.get_meter("config.db_routers").create_counter(
    "bank.replica.fallbacks",
    unit="{request}",
    description="read-model reads served by the primary instead of the replica, by reason",
)

UNREACHABLE_MESSAGE = (
    "read replica %s is unreachable (%s): read-model reads go to the primary for the next "
    "%s s; check the replica and DATABASE_REPLICA_URL"
)


class ReadChoice:
    """One request's read-model database: undecided until its first read-model read."""

    __slots__ = ("alias", "replica_allowed")

    def __init__(self, *, replica_allowed: bool) -> None:
        self.replica_allowed = replica_allowed
        self.alias: str | None = None


_choice: contextvars.ContextVar[ReadChoice | None] = contextvars.ContextVar(
    "ledgerline_read_choice", default=None
)
# While the replica is known to be down (monotonic clock), it is not tried again.
_replica_down_until = 0.0


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


@contextlib.contextmanager
def read_scope(*, replica_allowed: bool) -> Iterator[ReadChoice]:
    """The scope of one request's decision (the middleware opens one per request)."""
    choice = ReadChoice(replica_allowed=replica_allowed)
    token = _choice.set(choice)
    try:
        yield choice
    finally:
        _choice.reset(token)


def read_alias() -> str:
    """The alias the current request reads the read models from; decided on the first call.

    Outside a request, without a replica, or in a request that writes: the primary.
    """
    choice = _choice.get()
    if choice is None or not choice.replica_allowed:
        return PRIMARY
    if choice.alias is None:
        choice.alias = REPLICA if replica_configured() and _replica_reachable() else PRIMARY
    return choice.alias


def use_primary(reason: str) -> None:
    """Pin the current request's read-model reads to the primary, counting why.

    Call it before the request's first read-model row is read.
    """
    choice = _choice.get()
    if choice is not None:
        choice.alias = PRIMARY
    fallbacks.add(1, {"reason": reason})


def replica_failed(error: OperationalError) -> None:
    """The replica failed a query: log it, leave it alone for a while, read the primary."""
    _mark_down(error)
    use_primary(UNREACHABLE)


def _mark_down(error: OperationalError) -> None:
    global _replica_down_until
    retry = settings.DATABASE_REPLICA_RETRY_SECONDS
    _replica_down_until = time.monotonic() + retry
    connections[REPLICA].close()
    log.warning(UNREACHABLE_MESSAGE, _where(), str(error).strip() or type(error).__name__, retry)


def _replica_reachable() -> bool:
    if time.monotonic() < _replica_down_until:
        fallbacks.add(1, {"reason": UNREACHABLE})
        return False
    try:
        # With CONN_HEALTH_CHECKS a kept connection is checked here, so a replica that went
        # away between two requests is found now, not half-way through the answer.
        connections[REPLICA].ensure_connection()
    except OperationalError as exc:
        _mark_down(exc)
        fallbacks.add(1, {"reason": UNREACHABLE})
        return False
    return True


def _where() -> str:
    replica = settings.DATABASES[REPLICA]
    return f"{replica.get('HOST') or 'localhost'}:{replica.get('PORT') or 5432}"


class ReplicaRouter:
    """Read-model reads to the request's choice (:func:`read_alias`); the rest to the primary."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str:
        # Inside a transaction on the primary (a writer reading what it is about to change),
        # the read must see that transaction: the primary, whatever the request chose.
        if model._meta.label_lower in REPLICATED and not connections[PRIMARY].in_atomic_block:
            return read_alias()
        return PRIMARY

    def db_for_write(self, model: type[Any], **hints: Any) -> str:
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replica holds the primary's rows

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == PRIMARY  # a replica replays the primary's schema; it cannot be written


class ReadScopeMiddleware:
    """Opens each request's read scope: reads may use the replica, anything else may not."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        with read_scope(replica_allowed=request.method in SAFE_METHODS):
            return self.get_response(request)
