from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed


def _keys_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("EVENTSTORE_SIGNING_KEY", "EVENTSTORE_VERIFY_KEYS", "DEBUG"):
        from .signing import _configured
        from .store import _verified_snapshots

        _configured.cache_clear()
        _verified_snapshots.clear()


class EventStoreConfig(AppConfig):
    name = "eventstore"
    verbose_name = "Event store"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        setting_changed.connect(_keys_changed)
