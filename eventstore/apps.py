from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed

from . import signing, snapshots


def _keys_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("EVENTSTORE_SIGNING_KEY", "EVENTSTORE_VERIFY_KEYS", "DEBUG"):
        signing.clear_caches()
        snapshots.clear_caches()


class EventStoreConfig(AppConfig):
    name = "eventstore"
    verbose_name = "Event store"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        setting_changed.connect(_keys_changed)
