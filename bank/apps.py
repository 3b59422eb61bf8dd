from __future__ import annotations

from django.apps import AppConfig


class BankConfig(AppConfig):
    name = "bank"
    verbose_name = "Bank"

    def ready(self) -> None:
        import eventstore as es
        from bank.domain import Account

        from .services.accounts import STREAM_TYPE, replay_snapshot_state

        # verify_events checks each account snapshot against the replay of its events.
        es.register_snapshot_replay(
            STREAM_TYPE, Account.SNAPSHOT_SCHEMA_VERSION, replay_snapshot_state
        )
