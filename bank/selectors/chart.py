"""The balance over time, for the audit page's chart: one point per balance change.

Read from the transaction-history read model (one row per money movement with the balance
after it), so that the chart costs the same at 100,000 events as at 100: an account with
more movements than the chart draws is thinned in the database, keeping in each stretch of
versions its lowest and its highest balance (a spike or a dip is never averaged away), and
the first and last movements. The read model is as far as the projections got:
``lagging`` says when the account has events it has not reached yet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, ExpressionWrapper, F, IntegerField, Max, Min, Q, Window
from django.db.models.functions import RowNumber

import eventstore as es
from projections.accounts import HistoryProjection
from projections.models import Checkpoint, TransactionHistory

# "At most ~500 points": an SVG of this many circles stays small and quick to draw.
MAX_CHART_POINTS = 500


@dataclass(frozen=True, slots=True)
class BalancePoint:
    version: int
    occurred_at: datetime
    balance_cents: int


@dataclass(frozen=True, slots=True)
class BalanceSeries:
    """``points``: in version order; ``movements``: how many balance changes the read model
    holds for the account (more than the points when thinned); ``lagging``: the account has
    events the transaction history has not reached yet."""

    points: list[BalancePoint]
    movements: int
    lagging: bool

    @property
    def downsampled(self) -> bool:
        return self.movements > len(self.points)


def balance_series(
    account_id: uuid.UUID, *, version: int, max_points: int = MAX_CHART_POINTS
) -> BalanceSeries:
    """The account's balance after each money movement, at most ``max_points`` of them.

    Args:
        account_id: the account.
        version: the account's current version (from its events): the chart says whether
            the read model has reached it.
        max_points: at least 4; above it, the lowest and highest balance of each of
            ``(max_points - 2) // 2`` equal stretches of versions, and the first and last.

    Four queries whatever the history's length.
    """
    rows = TransactionHistory.objects.filter(account_id=account_id)
    summary = rows.aggregate(count=Count("id"), first=Min("version"), last=Max("version"))
    count, first, last = summary["count"], summary["first"], summary["last"]
    columns = ("version", "occurred_at", "balance_after_cents")
    if count <= max_points:
        picked = rows.order_by("version").values_list(*columns)
    else:
        stretches = max(1, (max_points - 2) // 2)
        width = -(-(last - first + 1) // stretches)
        # Integer division on both vendors (integer operands).
        stretch = ExpressionWrapper((F("version") - first) / width, output_field=IntegerField())
        picked = (
            rows.annotate(
                lowest=Window(
                    RowNumber(),
                    partition_by=[stretch],
                    order_by=[F("balance_after_cents").asc(), F("version").asc()],
                ),
                highest=Window(
                    RowNumber(),
                    partition_by=[stretch],
                    order_by=[F("balance_after_cents").desc(), F("version").asc()],
                ),
            )
            .filter(Q(lowest=1) | Q(highest=1) | Q(version=first) | Q(version=last))
            .order_by("version")
            .values_list(*columns)
        )
    points = [BalancePoint(v, at, balance) for v, at, balance in picked]
    return BalanceSeries(points=points, movements=count, lagging=_lagging(account_id, version))


def _lagging(account_id: uuid.UUID, version: int) -> bool:
    """Whether the transaction history has not yet applied the account's newest event."""
    if version < 1:
        return False
    newest = es.read_stream(account_id, after_version=version - 1, up_to_version=version)
    if not newest:
        return False
    reached = (
        Checkpoint.objects.filter(name=HistoryProjection.name)
        .values_list("position", flat=True)
        .first()
    )
    return (reached or 0) < newest[0].position
