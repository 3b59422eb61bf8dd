"""python manage.py seed_demo: demo accounts with a few hundred events of history."""

from __future__ import annotations

import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

import eventstore as es
from bank.domain import DomainError
from bank.progress import progress
from bank.services import Actor
from bank.services import accounts as svc

NAMESPACE = uuid.UUID("6f1d7c52-3b7e-4c1e-9d7a-5e0b1f2a9c41")
HOLDERS = [
    ("Ada Lovelace", "EUR", 250_000),
    ("Grace Hopper", "EUR", 180_000),
    ("Alan Turing", "GBP", 320_000),
    ("Katherine Johnson", "USD", 410_000),
    ("Edsger Dijkstra", "EUR", 90_000),
    ("Barbara Liskov", "USD", 275_000),
    ("Donald Knuth", "USD", 150_000),
    ("Margaret Hamilton", "EUR", 530_000),
    ("Zoë Ångström-Müller", "EUR", 12_500),
    ("Tim Berners-Lee", "GBP", 60_000),
    # Currencies with other minor units (ISO 4217): yen have none, dinars three decimals.
    ("Yukihiro Matsumoto", "JPY", 1_250_000),
    ("Kiyoshi Itô", "JPY", 480_000),
    ("Lotfi Zadeh", "KWD", 2_750_500),
    # The last two get special fates: one frozen, one closed.
    ("Frances Allen", "USD", 0),
    ("Ken Thompson", "EUR", 5_000),
]
DESCRIPTIONS_IN = ["Salary", "Refund", "Cash deposit", "Dividend", "Gift"]
DESCRIPTIONS_OUT = ["Rent", "Groceries", "Electricity bill", "ATM withdrawal", "Insurance"]


class Clock:
    """Moves forward a random step each time it is read, from 90 days ago to about now."""

    def __init__(self, rng: random.Random, steps: int) -> None:
        self.rng = rng
        self.now = datetime.now(UTC) - timedelta(days=90)
        self.step = timedelta(days=88) / max(steps, 1)

    def __call__(self) -> datetime:
        self.now += self.step * (0.5 + self.rng.random())
        return self.now


class Command(BaseCommand):
    help = "Create demo accounts with a realistic history (once: a second run changes nothing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--events", type=int, default=400, help="roughly how many events to create (400)"
        )
        parser.add_argument("--seed", type=int, default=2026, help="random seed (2026)")

    def handle(self, *args: Any, **options: Any) -> None:
        first = uuid.uuid5(NAMESPACE, HOLDERS[0][0])
        if es.stream_version(first) > 0:
            self.stdout.write("Demo data is already there: nothing to do.")
            self._demo_user()
            return
        rng = random.Random(options["seed"])
        target = max(options["events"], len(HOLDERS) * 2)
        clock = Clock(rng, target)
        actor = Actor.system("seed_demo")
        ids = []
        for name, currency, balance in HOLDERS:
            state = svc.open_account(
                account_id=uuid.uuid5(NAMESPACE, name),
                holder_name=name,
                currency=currency,
                initial_balance_cents=balance,
                actor=actor,
                clock=clock,
            )
            ids.append((state.id, currency))
        created, refused = len(ids), 0
        with progress(
            total=target,
            initial=created,
            desc="seeding",
            # The terminal itself for tqdm's bar; else the command's stderr (call_command's).
            file=sys.stderr if self.stderr.isatty() else self.stderr,
            verbosity=options["verbosity"],
        ) as bar:
            while created < target:
                account_id, currency = rng.choice(ids[:-2])  # the last two get special fates
                roll = rng.random()
                try:
                    if roll < 0.4:
                        svc.deposit(
                            account_id=account_id,
                            amount_cents=rng.randint(1_000, 250_000),
                            description=rng.choice(DESCRIPTIONS_IN),
                            actor=actor,
                            clock=clock,
                        )
                        created += 1
                    elif roll < 0.75:
                        svc.withdraw(
                            account_id=account_id,
                            amount_cents=rng.randint(500, 90_000),
                            description=rng.choice(DESCRIPTIONS_OUT),
                            actor=actor,
                            clock=clock,
                        )
                        created += 1
                    elif peers := [i for i, c in ids[:-2] if c == currency and i != account_id]:
                        svc.transfer(
                            from_account=account_id,
                            to_account=rng.choice(peers),
                            amount_cents=rng.randint(1_000, 60_000),
                            description="Transfer",
                            actor=actor,
                            clock=clock,
                        )
                        created += 2
                    bar.update(created - bar.n)
                except DomainError:
                    refused += 1  # e.g. not enough money: a teller would have been refused too
        frozen_id, closed_id = ids[-2][0], ids[-1][0]
        svc.freeze(
            account_id=frozen_id, reason="Suspicious card activity", actor=actor, clock=clock
        )
        svc.withdraw(
            account_id=closed_id,
            amount_cents=5_000,
            description="Final payout",
            actor=actor,
            clock=clock,
        )
        svc.close(account_id=closed_id, reason="Customer moved abroad", actor=actor, clock=clock)
        self._demo_user()
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {len(ids)} demo accounts with {created + 3} events "
                f"({refused} commands refused by the rules, as they should be)."
            )
        )

    def _demo_user(self) -> None:
        """In DEBUG only: a superuser admin/admin so that a newcomer can log in at once."""
        if not settings.DEBUG:
            return
        users = get_user_model()
        if not users.objects.filter(is_superuser=True).exists():
            users.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("Created the superuser admin / admin (DEBUG only: change it).")
