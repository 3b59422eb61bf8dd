"""Read models: ordinary mutable tables, derived from the events and rebuildable."""

from __future__ import annotations

from django.db import models


class Checkpoint(models.Model):
    """The last global position a projection has applied (its batches commit with it)."""

    name = models.CharField(primary_key=True, max_length=100)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "projection_checkpoints"

    def __str__(self) -> str:
        return f"{self.name} @ {self.position}"


class AccountBalance(models.Model):
    """One row per account: its current balance and status, for lists and search."""

    account_id = models.UUIDField(primary_key=True)
    holder_name = models.CharField(max_length=200)
    # The holder name NFC-normalised and case-folded, so that search ignores case in every
    # script on every backend (SQLite's LIKE folds ASCII only).
    holder_search = models.CharField(max_length=200, default="")
    currency = models.CharField(max_length=3)
    balance_cents = models.BigIntegerField()
    status = models.CharField(max_length=10)
    version = models.PositiveIntegerField()
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    last_position = models.BigIntegerField()

    class Meta:
        db_table = "read_account_balances"
        ordering = ["holder_name", "account_id"]
        indexes = [
            models.Index(fields=["holder_name", "account_id"], name="balances_holder"),
            models.Index(fields=["status", "holder_name"], name="balances_status"),
            models.Index(fields=["currency"], name="balances_currency"),
            models.Index(fields=["balance_cents"], name="balances_balance"),
            models.Index(fields=["updated_at"], name="balances_updated"),
        ]
        verbose_name = "account"

    def __str__(self) -> str:
        return f"{self.holder_name} ({self.account_id})"


class TransactionHistory(models.Model):
    """One row per money movement on an account, with the balance after it.

    A reversal (``PostingReversed``) is a row of its own, kind ``reversal``, whose
    ``reverses_version`` names the posting it undoes (in the same account); that posting's
    row gets ``reversed_by_version`` when the reversal is applied. That one update is the
    only write to a stored row: it is keyed by (account, version), sets a value derived from
    the reversal event alone, and happens in the reversal's own batch, so a follower that
    redelivers it, a rebuild that replays it, and any batch size all end with the same rows
    (the pair is in one stream, so the original is always applied first).
    """

    KINDS = [
        ("opening", "opening balance"),
        ("deposit", "deposit"),
        ("withdrawal", "withdrawal"),
        ("transfer_in", "transfer in"),
        ("transfer_out", "transfer out"),
        ("reversal", "reversal"),
    ]

    id = models.BigAutoField(primary_key=True)
    account_id = models.UUIDField()
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=KINDS)
    # The balance's change: negative for money out (withdrawal, transfer_out), so that
    # balance_after_cents is the previous row's plus this one (migration 0003 signed it).
    amount_cents = models.BigIntegerField()
    balance_after_cents = models.BigIntegerField()
    description = models.CharField(max_length=500, blank=True)
    counterparty = models.UUIDField(null=True, blank=True)
    transfer_id = models.UUIDField(null=True, blank=True)
    actor = models.CharField(max_length=150, blank=True)
    occurred_at = models.DateTimeField()
    position = models.BigIntegerField()
    # A reversal's row: the version of the posting it undoes ("reverses v48").
    reverses_version = models.PositiveIntegerField(null=True, blank=True)
    # A reversed posting's row: the version of its reversal ("reversed by v57").
    reversed_by_version = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        db_table = "read_transaction_history"
        ordering = ["account_id", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["account_id", "version"], name="history_account_version"
            )
        ]
        indexes = [models.Index(fields=["occurred_at"], name="history_occurred")]
        verbose_name_plural = "transaction history"

    def __str__(self) -> str:
        return f"{self.account_id} v{self.version} {self.kind} {self.amount_cents}"


class DeadLetter(models.Model):
    """An event a follower parked after it kept failing, so that the events after it go on.

    ``waits_for`` is set on an event that did not fail itself but follows a parked event of
    the same stream (its position): applying it first would skip a version. Retrying the
    parked events (``--retry-parked``) applies them in position order and sets
    ``resolved_at``; the rows are kept for the record.
    """

    follower = models.CharField(max_length=100)
    position = models.BigIntegerField()
    stream_id = models.UUIDField()
    version = models.PositiveIntegerField()
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=200)
    error = models.TextField()
    waits_for = models.BigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField()
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "projection_dead_letters"
        ordering = ["follower", "position"]
        constraints = [
            models.UniqueConstraint(fields=["follower", "position"], name="dead_letter_position")
        ]
        indexes = [
            models.Index(
                fields=["follower", "stream_id"],
                condition=models.Q(resolved_at__isnull=True),
                name="dead_letters_parked",
            )
        ]

    def __str__(self) -> str:
        return f"{self.follower} parked {self.event_type} at {self.position}"


class UnknownEvent(models.Model):
    """An event of a type this release cannot decode, seen (and skipped) by the projections.

    The stream it belongs to cannot be loaded by this release either; the health check
    reports it until a release that knows the type runs.
    """

    position = models.BigIntegerField(primary_key=True)
    stream_id = models.UUIDField()
    version = models.PositiveIntegerField()
    event_type = models.CharField(max_length=200)
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "projection_unknown_events"
        ordering = ["position"]

    def __str__(self) -> str:
        return f"{self.event_type} at {self.position}"
