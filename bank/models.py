"""The bank app's own tables: permissions for the staff roles, and idempotency records."""

from __future__ import annotations

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
