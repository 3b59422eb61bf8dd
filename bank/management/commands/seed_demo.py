"""python manage.py seed_demo: demo accounts with a few hundred events of history.

One of them, the long account, has a history long enough for snapshots (more than twice
``SNAPSHOT_INTERVAL`` events, so that the admin's snapshots list and the loads from a snapshot
have something to show on a fresh demo).
"""

from __future__ import annotations

import random
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

import eventstore as es
from bank.domain import DomainError
from bank.progress import progress
from bank.services import Actor, approvals, reversals
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
# A salaried account with years of monthly salary and rent: the one that is snapshotted.
LONG_HOLDER = ("Charles Babbage", "GBP", 100_000)
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
        parser.add_argument(
            "--long-events",
            type=int,
            default=None,
            help="events of the long account (default: twice SNAPSHOT_INTERVAL plus 10)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        first = uuid.uuid5(NAMESPACE, HOLDERS[0][0])
        if es.stream_version(first) > 0:
            self.stdout.write("Demo data is already there: nothing to do.")
            self._demo_user()
            return
        rng = random.Random(options["seed"])
        target = max(options["events"], len(HOLDERS) * 2)
        long_events = options["long_events"]
        if long_events is None:
            long_events = 2 * settings.SNAPSHOT_INTERVAL + 10
        if long_events < 1:
            raise CommandError(
                f"--long-events must be at least 1 (the opening), not {long_events}"
            )
        clock = Clock(rng, target + long_events)
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
        long_id = self._long_account(long_events, actor, clock, options["verbosity"])
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
        # A deposit keyed twice, and its reversal: the timeline shows the linked pair.
        first_id = ids[0][0]
        svc.deposit(
            account_id=first_id,
            amount_cents=42_000,
            description="Cash deposit",
            actor=actor,
            clock=clock,
        )
        twice = svc.account_events(first_id)[-1]
        reversals.reverse_posting(
            account_id=first_id,
            event_id=twice.event_id,
            reason="Keyed twice at the counter",
            actor=actor,
            clock=clock,
        )
        teller = self._demo_user()
        if teller is not None:
            # A request waiting in the approval queue (the demo teller asked; admin decides).
            approvals.request(
                "withdraw",
                command={
                    "account_id": str(ids[1][0]),
                    "amount_cents": 100_000,
                    "description": "Car purchase",
                },
                actor=Actor.from_user(teller, auth="admin"),
                reason="Customer at the desk, ID checked",
            )
        snapshots = long_events // settings.SNAPSHOT_INTERVAL
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {len(ids) + 1} demo accounts with {created + long_events + 5} events "
                f"({refused} commands refused by the rules, as they should be); the long "
                f"account {long_id} has {long_events} events and {snapshots} snapshot"
                f"{'s' if snapshots != 1 else ''}."
            )
        )

    def _long_account(self, events: int, actor: Actor, clock: Clock, verbosity: int) -> uuid.UUID:
        """The long account: opened, then salary in and rent out in turn (``events`` in all)."""
        name, currency, balance = LONG_HOLDER
        account_id = svc.open_account(
            account_id=uuid.uuid5(NAMESPACE, name),
            holder_name=name,
            currency=currency,
            initial_balance_cents=balance,
            actor=actor,
            clock=clock,
        ).id
        with progress(
            total=events,
            initial=1,
            desc="long account",
            file=sys.stderr if self.stderr.isatty() else self.stderr,
            verbosity=verbosity,
        ) as bar:
            for number in range(1, events):
                self._salary_or_rent(account_id, number, actor, clock)
                bar.update(1)
        return account_id

    @staticmethod
    def _salary_or_rent(account_id: uuid.UUID, number: int, actor: Actor, clock: Clock) -> None:
        if number % 2:
            svc.deposit(
                account_id=account_id,
                amount_cents=320_000,
                description="Salary",
                actor=actor,
                clock=clock,
            )
        else:
            svc.withdraw(
                account_id=account_id,
                amount_cents=150_000,
                description="Rent",
                actor=actor,
                clock=clock,
            )

    def _demo_user(self) -> Any:
        """In DEBUG only: a superuser admin/admin so that a newcomer can log in at once, and
        a teller teller/teller (whose demo request admin can approve). Returns the teller."""
        if not settings.DEBUG:
            return None
        users = get_user_model()
        if not users.objects.filter(is_superuser=True).exists():
            users.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("Created the superuser admin / admin (DEBUG only: change it).")
        teller = users.objects.filter(username="teller").first()
        if teller is None:
            teller = users.objects.create_user("teller", "teller@example.com", "teller")
            teller.is_staff = True
            teller.save(update_fields=["is_staff"])
            teller.groups.add(Group.objects.get(name="tellers"))
            self.stdout.write("Created the teller teller / teller (DEBUG only: change it).")
        return teller
