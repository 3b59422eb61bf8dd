"""The bank app's own tables: permissions for the staff roles, and idempotency records."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models


class BankPermissions(models.Model):
    """Holds the bank's permissions (no table): granted to the groups tellers and auditors."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_accounts", "Can view accounts, their history and their events"),
            ("issue_command", "Can issue commands on accounts (open, deposit, withdraw, ...)"),
        ]

    def __str__(self) -> str:
        return "bank permissions"


class IdempotencyRecord(models.Model):
    """The first answer to a command sent with an ``Idempotency-Key``, per user.

    Written in the same transaction as the command's events, so a key is recorded if and
    only if the command's effect is. Kept for ``IDEMPOTENCY_KEY_TTL_HOURS``.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "idempotency_records"
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key")
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"


class AccessLogError(Exception):
    """A write the access log refuses: it is append-only."""

    code = "access_log_immutable"

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(
            f"the access log is append-only: {operation} refused; record a new view instead"
        )


class AppendOnlyQuerySet(models.QuerySet[Any]):
    """Reads and inserts; never an update or a delete (the triggers refuse raw SQL too)."""

    def update(self, **kwargs: Any) -> NoReturn:
        raise AccessLogError("QuerySet.update()")

    def delete(self) -> NoReturn:
        raise AccessLogError("QuerySet.delete()")

    def _raw_delete(self, using: Any) -> NoReturn:
        raise AccessLogError("QuerySet._raw_delete()")

    def bulk_update(self, objs: Any, fields: Any, batch_size: Any = None) -> NoReturn:
        raise AccessLogError("QuerySet.bulk_update()")

    def update_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AccessLogError("QuerySet.update_or_create()")

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if kwargs.get("update_conflicts") or kwargs.get("ignore_conflicts"):
            raise AccessLogError("QuerySet.bulk_create() with conflict handling")
        return super().bulk_create(objs, *args, **kwargs)


class AppendOnlyModel(models.Model):
    """A row is written once (``save()`` of a new row) and never changed or deleted."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding or kwargs.get("force_update") or kwargs.get("update_fields"):
            raise AccessLogError("save() of a stored row")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AccessLogError("delete()")


class AccessLogEntry(AppendOnlyModel):
    """One view of an account's data by a staff user or an API client (``bank.access_log``).

    ``user_id`` and ``username`` are copied, not a foreign key: the entry keeps saying who
    it was after the user is renamed or deleted. Migration 0003 creates the table and its
    triggers, which refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL), so ``manage.py
    flush`` is refused too, as for the events (the tests flush with the triggers off:
    ``tests/support.py``'s ``IMMUTABLE_TABLES``).
    """

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField()
    user_id = models.IntegerField(null=True, blank=True)
    username = models.CharField(max_length=150)
    account_id = models.UUIDField()
    action = models.CharField(max_length=40)
    address = models.CharField(max_length=45, blank=True)

    class Meta:
        db_table = "bank_access_log"
        ordering = ["-id"]
        default_permissions = ("view",)
        verbose_name = "access log entry"
        verbose_name_plural = "access log"
        # The audit page's "viewed by" panel (an account's newest entries) and the log's
        # date filter; each index costs every recorded view, so no more.
        indexes = [
            models.Index(fields=["account_id", "-id"], name="access_log_account"),
            models.Index(fields=["at"], name="access_log_at"),
        ]

    def __str__(self) -> str:
        return f"{self.username} {self.action} {self.account_id} at {self.at:%Y-%m-%d %H:%M:%S}"


class ApprovalRequest(models.Model):
    """The maker-checker queue: one row per approval request, an index of its stream.

    The approval's events (stream type ``bank.approval``) are the record; this row is
    written in the same transaction as each of them, so the queue is never behind its
    streams and a partial unique index refuses a second identical pending request even
    when two arrive at once. ``rebuild_approvals`` rebuilds it from the streams.
    """

    id = models.UUIDField(primary_key=True)
    kind = models.CharField(max_length=16)
    account_id = models.UUIDField(db_index=True)
    counterparty_id = models.UUIDField(null=True, blank=True)
    amount_cents = models.BigIntegerField(null=True, blank=True)
    command = models.JSONField()
    reason = models.TextField(blank=True)
    requested_by_id = models.IntegerField(null=True, blank=True)
    requested_by = models.CharField(max_length=150)
    requested_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=16, db_index=True)
    decided_by = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    fingerprint = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    position = models.BigIntegerField(null=True, blank=True)

    class Meta:
        db_table = "approval_requests"
        ordering = ["requested_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=models.Q(status="pending"),
                name="approval_one_pending_per_command",
            )
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="approval_status_expiry")]
        permissions = [("decide_approval", "Can approve or reject maker-checker requests")]

    def __str__(self) -> str:
        return f"{self.kind} on {self.account_id} ({self.status})"


class PersonalDataKey(models.Model):
    """A data subject's key for their personal data, wrapped by a master key.

    Mutable on purpose: deleting the row is the erasure (crypto-shredding); the events keep
    their ciphertext. ``master_key_id`` names the ``PII_MASTER_KEYS`` entry that wrapped it
    (rotation re-wraps). The database never sees an unwrapped key.
    """

    subject_id = models.UUIDField(primary_key=True)
    master_key_id = models.CharField(max_length=32)
    wrapped_key = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "personal_data_keys"
        permissions = [
            ("erase_personal_data", "Can erase a holder's personal data (crypto-shredding)")
        ]

    def __str__(self) -> str:
        return f"data key of {self.subject_id} ({self.master_key_id})"
