"""Idempotency-Key: a retried command replays its first answer and appends nothing.

The key is claimed (a row in ``idempotency_records``) in the same transaction as the
command's events: if the command commits, so does the key with its answer; if it fails,
neither does, and a retry runs it afresh. Two requests with one key at once: the second
waits for the first's claim (the unique index), then replays its answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from bank.models import IdempotencyRecord

from .problems import IdempotencyKeyReused

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


def read_key(request: Any) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ValidationError(
            {HEADER: [f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"]}
        )
    return key


def _fingerprint(request: Any) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    text = f"{request.method} {request.path}\n{request.headers.get('If-Match', '')}\n{body}"
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        # Appended only when sent, so that the keys stored before it counted still match.
        text += f"\nIf-None-Match: {if_none_match}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def run_idempotent(request: Any, key: str | None, command: Callable[[], Response]) -> Response:
    """Run ``command`` once per (user, key); replay the stored answer on a retry.

    The same request is the same method, path, body, If-Match and If-None-Match.

    Raises:
        IdempotencyKeyReused: the key was first used with a different request.
    """
    if key is None:
        return command()
    fingerprint = _fingerprint(request)
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    for _ in range(3):
        try:
            with transaction.atomic():
                stored = IdempotencyRecord.objects.filter(user=request.user, key=key).first()
                if stored is not None and stored.created_at < cutoff:
                    stored.delete()  # expired: the key may be used afresh
                    stored = None
                if stored is not None:
                    if stored.request_hash != fingerprint:
                        raise IdempotencyKeyReused(key)
                    return _replay(stored)
                # Claim the key first: a concurrent request with the same key waits here.
                record = IdempotencyRecord.objects.create(
                    user=request.user,
                    key=key,
                    request_hash=fingerprint,
                    status_code=0,
                    response_body={},
                )
                response = command()
                record.status_code = response.status_code
                record.response_body = response.data
                record.save(update_fields=["status_code", "response_body"])
                return response
        except IntegrityError:
            continue  # another request claimed the key and committed: replay its answer
    raise IdempotencyKeyReused(key)


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(record.response_body, status=record.status_code)
    response["Idempotency-Replayed"] = "true"
    version = (
        record.response_body.get("version") if isinstance(record.response_body, dict) else None
    )
    if version is not None:
        response["ETag"] = f'"{version}"'
    return response
