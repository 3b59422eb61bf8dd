"""Maker-checker and reversals, property-tested: any interleaving keeps money conserved and
never runs an approved command twice.

A Hypothesis state machine drives the services (on the test database) with deposits,
withdrawals, requests of every kind, approvals (by the checker, and attempts by the maker
itself), rejections, expiries on a test clock, and reversals made at once or through a
request. A model follows the money: each account's balance is what the commands that ran
did to it, the bank's total is the opening balances plus the deposits minus the withdrawals
(a reversal takes its posting out of those sums; a transfer's reversal moves nothing
in or out), and nothing goes below zero. After each example the approval streams are
checked: at most one decision each, and each approved command's events stored exactly once,
naming their approval (metadata ``approval.id``) and caused by its request.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import eventstore as es
from bank.domain import DomainError, errors
from bank.domain.approval import APPROVAL_STREAM_TYPE
from bank.models import ApprovalRequest
from bank.services import Actor, approvals, reversals
from bank.services import accounts as svc
from bank.services.errors import DuplicateRequest
from tests.support import Clock

pytestmark = pytest.mark.django_db

MAKER = Actor(username="maker", user_id=7, auth="token")
CHECKER = Actor(username="checker", user_id=8, auth="token")
THRESHOLD = 1_000
TTL_HOURS = 24
REVERSIBLE = ("MoneyDeposited", "MoneyWithdrawn", "TransferSent", "TransferReceived")
DECISIONS = ("ApprovalGranted", "ApprovalRejected", "ApprovalExpired")

amounts = st.integers(min_value=1, max_value=3 * THRESHOLD)
accounts = st.integers(min_value=0, max_value=2)
picks = st.integers(min_value=0, max_value=10_000)


class MakerChecker(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Each example runs in a transaction of its own, rolled back at its end.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.clock = Clock()
        self.ids: list[uuid.UUID] = []
        self.balances: dict[uuid.UUID, int] = {}
        self.opening = self.deposits = self.withdrawals = 0
        self.requests: dict[uuid.UUID, tuple[str, dict]] = {}
        self.executed: dict[uuid.UUID, int] = {}  # approval -> events its command stored

    def teardown(self) -> None:
        try:
            if self.ids:
                self._check_the_approval_streams()
        finally:
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

    # --- set-up -------------------------------------------------------------------------

    @initialize(
        openings=st.lists(
            st.sampled_from([0, 1, THRESHOLD - 1, 2 * THRESHOLD, 5 * THRESHOLD])
            | st.integers(0, 5 * THRESHOLD),
            min_size=3,
            max_size=3,
        )
    )
    def open_accounts(self, openings):
        for i, cents in enumerate(openings):
            state = svc.open_account(
                holder_name=f"Holder {i}", initial_balance_cents=cents, actor=MAKER
            )
            self.ids.append(state.id)
            self.balances[state.id] = cents
            self.opening += cents

    # --- commands that run at once ------------------------------------------------------

    @rule(i=accounts, amount=amounts)
    def deposit(self, i, amount):
        try:
            svc.deposit(account_id=self.ids[i], amount_cents=amount, actor=MAKER)
        except errors.AccountNotActive:
            return
        self.balances[self.ids[i]] += amount
        self.deposits += amount

    @rule(i=accounts, amount=amounts)
    def withdraw_below_the_threshold(self, i, amount):
        amount = amount % THRESHOLD or 1
        try:
            svc.withdraw(account_id=self.ids[i], amount_cents=amount, actor=MAKER)
        except (errors.AccountNotActive, errors.InsufficientFunds):
            return
        self.balances[self.ids[i]] -= amount
        self.withdrawals += amount

    @rule(i=accounts)
    def unfreeze(self, i):
        with contextlib.suppress(errors.InvalidStateTransition, errors.AccountNotActive):
            svc.unfreeze(account_id=self.ids[i], reason="checked", actor=MAKER)

    @rule(i=accounts, pick=picks)
    def reverse_at_once(self, i, pick):
        posting = self._posting(i, pick)
        if posting is None:
            return
        try:
            reversals.reverse_posting(
                account_id=posting.stream_id, event_id=posting.event_id, reason="x", actor=MAKER
            )
        except DomainError:
            return
        self._reversed(posting)
        event("reversed at once")

    # --- requests -----------------------------------------------------------------------

    @rule(i=accounts, amount=amounts)
    def request_withdrawal(self, i, amount):
        self._request("withdraw", {"account_id": str(self.ids[i]), "amount_cents": amount})

    @rule(i=accounts, j=accounts, amount=amounts)
    def request_transfer(self, i, j, amount):
        command = {
            "from_account": str(self.ids[i]),
            "to_account": str(self.ids[j]),
            "amount_cents": amount,
        }
        self._request("transfer", command)

    @rule(i=accounts, kind=st.sampled_from(["freeze", "close"]))
    def request_freeze_or_close(self, i, kind):
        self._request(kind, {"account_id": str(self.ids[i]), "reason": kind})

    @rule(i=accounts, pick=picks)
    def request_reversal(self, i, pick):
        posting = self._posting(i, pick)
        if posting is not None:
            command = {
                "account_id": str(posting.stream_id),
                "event_id": str(posting.event_id),
                "reason": "mistake",
            }
            self._request("reversal", command)

    def _request(self, kind, command):
        try:
            row = approvals.request(kind, command=command, actor=MAKER, clock=self.clock)
        except (DomainError, DuplicateRequest):
            return  # refused at once: nothing is queued, nothing runs
        self.requests[row.id] = (row.kind, row.command)
        event(f"requested a {kind}")

    # --- decisions ----------------------------------------------------------------------

    @precondition(lambda self: self.requests)
    @rule(pick=picks, by_maker=st.booleans(), decided_too=st.booleans())
    def approve(self, pick, by_maker, decided_too):
        approval_id = self._pick_request(pick, pending_only=not decided_too)
        kind, command = self.requests[approval_id]
        effect = self._effect_of(kind, command)
        try:
            approvals.approve(approval_id, actor=MAKER if by_maker else CHECKER, clock=self.clock)
        except errors.SelfApproval:
            assert by_maker
            return
        except (errors.ApprovalNotPending, errors.ApprovalExpired):
            return
        except DomainError:
            # The command breaks a rule now: nothing ran, the request still waits.
            assert ApprovalRequest.objects.get(pk=approval_id).status == "pending"
            return
        assert not by_maker, "the requester approved their own request"
        assert approval_id not in self.executed, "an approval ran its command twice"
        self.executed[approval_id] = effect()
        event(f"approved a {kind}")

    @precondition(lambda self: self.requests)
    @rule(pick=picks, decided_too=st.booleans())
    def reject(self, pick, decided_too):
        approval_id = self._pick_request(pick, pending_only=not decided_too)
        with contextlib.suppress(errors.ApprovalNotPending, errors.ApprovalExpired):
            approvals.reject(approval_id, actor=CHECKER, reason="no", clock=self.clock)

    @rule(hours=st.sampled_from([1, 2, 6, 12, TTL_HOURS + 1]), sweep=st.booleans())
    def time_passes(self, hours, sweep):
        self.clock.now += timedelta(hours=hours)
        if sweep:
            approvals.expire_due(clock=self.clock)

    # --- the model ----------------------------------------------------------------------

    def _pick_request(self, pick, *, pending_only=False):
        ids = sorted(self.requests, key=str)
        if pending_only:
            pending = set(
                ApprovalRequest.objects.filter(pk__in=ids, status="pending").values_list(
                    "pk", flat=True
                )
            )
            ids = [i for i in ids if i in pending] or ids
        return ids[pick % len(ids)]

    def _posting(self, i, pick):
        postings = [e for e in svc.account_events(self.ids[i]) if e.event_type in REVERSIBLE]
        return postings[pick % len(postings)] if postings else None

    def _reversed(self, posting):
        """The model's side of a reversal that ran: the opposite of the posting."""
        amount = posting.data["amount_cents"]
        match posting.event_type:
            case "MoneyDeposited":
                self.balances[posting.stream_id] -= amount
                self.deposits -= amount
            case "MoneyWithdrawn":
                self.balances[posting.stream_id] += amount
                self.withdrawals -= amount
            case "TransferSent":
                self.balances[posting.stream_id] += amount
                self.balances[uuid.UUID(posting.data["to_account"])] -= amount
            case "TransferReceived":
                self.balances[posting.stream_id] -= amount
                self.balances[uuid.UUID(posting.data["from_account"])] += amount
        return 2 if posting.event_type.startswith("Transfer") else 1

    def _effect_of(self, kind, command):
        """What to do to the model once the request's command ran; returns its event count."""
        amount = command.get("amount_cents")

        def withdraw():
            self.balances[uuid.UUID(command["account_id"])] -= amount
            self.withdrawals += amount
            return 1

        def transfer():
            self.balances[uuid.UUID(command["from_account"])] -= amount
            self.balances[uuid.UUID(command["to_account"])] += amount
            return 2

        def reversal():
            (posting,) = es.read_events([uuid.UUID(command["event_id"])])
            return self._reversed(posting)

        return {"withdraw": withdraw, "transfer": transfer, "reversal": reversal}.get(
            kind, lambda: 1
        )

    @invariant()
    def money_is_conserved_and_never_below_zero(self):
        if not self.ids:
            return
        stored = {i: svc.get_account(i).balance_cents for i in self.ids}
        assert stored == self.balances
        assert min(stored.values()) >= 0
        assert sum(stored.values()) == self.opening + self.deposits - self.withdrawals

    def _check_the_approval_streams(self):
        for approval_id in self.requests:
            stream = es.read_stream(approval_id)
            types = [e.event_type for e in stream]
            assert stream[0].stream_type == APPROVAL_STREAM_TYPE
            assert types[0] == "ApprovalRequested" and types.count("ApprovalRequested") == 1
            assert sum(types.count(d) for d in DECISIONS) <= 1, types
            assert types.count("ApprovalGranted") == (approval_id in self.executed)
            # The decision shares the command's append metadata: the command's own events
            # are those of the accounts.
            tagged = es.read_by_metadata("approval.id", str(approval_id))
            ran = [e for e in tagged if e.stream_type != APPROVAL_STREAM_TYPE]
            assert len(ran) == self.executed.get(approval_id, 0), (types, ran)
            assert len({e.event_id for e in ran}) == len(ran)
            for stored in ran:
                assert stored.metadata["causation_id"] == str(stream[0].event_id)
            row = ApprovalRequest.objects.get(pk=approval_id)
            assert (row.version, row.status) == (
                len(stream),
                {
                    "ApprovalRequested": "pending",
                    "ApprovalGranted": "approved",
                    "ApprovalRejected": "rejected",
                    "ApprovalExpired": "expired",
                }[types[-1]],
            )


def test_any_interleaving_conserves_money_and_runs_each_approved_command_once(settings):
    settings.APPROVAL_ALWAYS = "freeze,close"
    settings.APPROVAL_THRESHOLD_CENTS = THRESHOLD
    settings.APPROVAL_TTL_HOURS = TTL_HOURS
    run_state_machine_as_test(
        MakerChecker,
        settings=hsettings(
            max_examples=75,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
