"""python manage.py purge_idempotency_keys"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from bank.models import IdempotencyRecord


class Command(BaseCommand):
    help = "Delete idempotency records older than IDEMPOTENCY_KEY_TTL_HOURS (run it daily)."

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
        deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
        self.stdout.write(
            self.style.SUCCESS(
                f"deleted {deleted} idempotency records older than "
                f"{settings.IDEMPOTENCY_KEY_TTL_HOURS} h"
            )
        )
