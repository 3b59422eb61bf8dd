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
    """One row per money movement on an account, with the balance after it."""

    KINDS = [
        ("opening", "opening balance"),
        ("deposit", "deposit"),
        ("withdrawal", "withdrawal"),
        ("transfer_in", "transfer in"),
        ("transfer_out", "transfer out"),
    ]

    id = models.BigAutoField(primary_key=True)
    account_id = models.UUIDField()
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=KINDS)
    amount_cents = models.BigIntegerField()
    balance_after_cents = models.BigIntegerField()
    description = models.CharField(max_length=500, blank=True)
    counterparty = models.UUIDField(null=True, blank=True)
    transfer_id = models.UUIDField(null=True, blank=True)
    actor = models.CharField(max_length=150, blank=True)
    occurred_at = models.DateTimeField()
    position = models.BigIntegerField()

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
