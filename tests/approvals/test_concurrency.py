"""Maker-checker under real concurrency, with real commits on PostgreSQL.

Approvers race on one request: its command runs once, and every other approver is told the
request is no longer pending. Many approvals, rejections, reversals and plain commands at
once across accounts keep the bank's invariant. Threads wait on a barrier, then on what
they observe; nothing sleeps a fixed time.
"""

from __future__ import annotations

import collections
import contextlib
import random
import uuid

import pytest

import eventstore as es
from bank.domain import DomainError, errors
from bank.domain.approval import APPROVAL_STREAM_TYPE
from bank.models import ApprovalRequest
from bank.services import Actor, approvals, reversals
from bank.services import accounts as svc
from bank.services.errors import ConcurrencyConflict, DuplicateRequest
from projections import runner
from tests.projections.helpers import expected_balances, read_model_balances
from tests.support import approval_rule, run_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

MAKER = Actor(username="maker", user_id=7, auth="token")
APPROVERS = [Actor(username=f"checker{i}", user_id=100 + i, auth="token") for i in range(8)]


@pytest.fixture
def rule(settings):
    return approval_rule(settings)


def _ran(approval_id) -> list[es.RecordedEvent]:
    """The account events an approval's command stored (its decision aside)."""
    return [
        e
        for e in es.read_by_metadata("approval.id", str(approval_id))
        if e.stream_type != APPROVAL_STREAM_TYPE
    ]


def _decisions(approval_id) -> list[str]:
    return [e.event_type for e in es.read_stream(approval_id)][1:]


def _racing_approvers(approval_id):
    def approve(i, barrier):
        barrier.wait()
        try:
            return approvals.approve(approval_id, actor=APPROVERS[i]).status
        except errors.ApprovalNotPending as exc:
            return exc

    return approve


def test_approvers_racing_on_one_request_run_its_command_once(rule):
    account = svc.open_account(holder_name="Race", initial_balance_cents=100_000, actor=MAKER)
    for round_ in range(6):
        row = approvals.request(
            "withdraw",
            command={"account_id": str(account.id), "amount_cents": 5_000 + round_},
            actor=MAKER,
        )
        racers = 2 if round_ < 3 else 6
        results = run_threads(racers, _racing_approvers(row.id))
        won = [r for r in results if r == "approved"]
        lost = [r for r in results if isinstance(r, errors.ApprovalNotPending)]
        assert (len(won), len(lost)) == (1, racers - 1), results
        assert all(exc.code == "approval_not_pending" for exc in lost)
        assert _decisions(row.id) == ["ApprovalGranted"]
        (withdrawn,) = _ran(row.id)
        assert withdrawn.event_type == "MoneyWithdrawn"
        assert withdrawn.data["amount_cents"] == 5_000 + round_
    assert svc.get_account(account.id).balance_cents == 100_000 - sum(5_000 + r for r in range(6))


def test_an_approval_racing_a_rejection_and_an_expiry_sweep_ends_one_way_only(rule):
    a = svc.open_account(holder_name="A", initial_balance_cents=50_000, actor=MAKER)
    b = svc.open_account(holder_name="B", actor=MAKER)
    rows = [
        approvals.request(
            "transfer",
            command={
                "from_account": str(a.id),
                "to_account": str(b.id),
                "amount_cents": 1_000 + i,
            },
            actor=MAKER,
        )
        for i in range(8)
    ]

    def decide(i, barrier):
        barrier.wait()
        outcomes = []
        for row in rows if i % 2 == 0 else reversed(rows):
            try:
                if i % 3 == 2:
                    approvals.reject(row.id, actor=APPROVERS[i], reason="no")
                    outcomes.append("rejected")
                else:
                    approvals.approve(row.id, actor=APPROVERS[i])
                    outcomes.append("approved")
            except errors.ApprovalNotPending:
                outcomes.append("lost")
        return outcomes

    results = run_threads(6, decide)
    assert all(isinstance(r, list) for r in results), results
    moved = 0
    for row in rows:
        row.refresh_from_db()
        decisions = _decisions(row.id)
        assert len(decisions) == 1, decisions
        ran = _ran(row.id)
        if decisions == ["ApprovalGranted"]:
            assert row.status == "approved"
            assert sorted(e.event_type for e in ran) == ["TransferReceived", "TransferSent"]
            moved += row.amount_cents
        else:
            assert (row.status, ran) == ("rejected", [])
    wins = sum(o != "lost" for r in results for o in r)
    assert wins == len(rows)
    assert svc.get_account(b.id).balance_cents == moved
    assert svc.get_account(a.id).balance_cents == 50_000 - moved


def test_concurrent_approvals_reversals_and_commands_keep_the_bank_invariant(rule):
    ids = [
        svc.open_account(holder_name=f"Bank {i}", initial_balance_cents=20_000, actor=MAKER).id
        for i in range(6)
    ]
    opening = 20_000 * len(ids)
    requests = []
    rng = random.Random(21)
    for n in range(24):
        a, b = rng.sample(ids, 2)
        kind = ("withdraw", "transfer")[n % 2]
        command = (
            {"account_id": str(a), "amount_cents": 1_000 + n}
            if kind == "withdraw"
            else {"from_account": str(a), "to_account": str(b), "amount_cents": 1_000 + n}
        )
        requests.append(approvals.request(kind, command=command, actor=MAKER).id)

    def worker(i, barrier):
        rng = random.Random(i)
        barrier.wait()
        done = collections.Counter()
        for _ in range(20):
            try:
                roll = rng.random()
                if roll < 0.35:
                    approval_id = rng.choice(requests)
                    approvals.approve(approval_id, actor=APPROVERS[i])
                    done["approved"] += 1
                elif roll < 0.6:
                    account = rng.choice(ids)
                    postings = [
                        e
                        for e in svc.account_events(account)
                        if e.event_type
                        in ("MoneyDeposited", "MoneyWithdrawn", "TransferSent", "TransferReceived")
                    ]
                    if not postings:
                        continue
                    posting = rng.choice(postings)
                    if rng.random() < 0.5:
                        reversals.reverse_posting(
                            account_id=account, event_id=posting.event_id, reason="x", actor=MAKER
                        )
                        done["reversed"] += 1
                    else:
                        approvals.request(
                            "reversal",
                            command={
                                "account_id": str(account),
                                "event_id": str(posting.event_id),
                                "reason": "x",
                            },
                            actor=MAKER,
                        )
                        done["requested"] += 1
                elif roll < 0.8:
                    svc.deposit(
                        account_id=rng.choice(ids), amount_cents=rng.randint(1, 900), actor=MAKER
                    )
                    done["deposited"] += 1
                else:
                    a, b = rng.sample(ids, 2)
                    svc.transfer(
                        from_account=a, to_account=b, amount_cents=rng.randint(1, 900), actor=MAKER
                    )
                    done["transferred"] += 1
            except (DomainError, ConcurrencyConflict, DuplicateRequest):
                done["refused"] += 1
        return done

    results = run_threads(6, worker, timeout=300)
    unexpected = [r for r in results if isinstance(r, BaseException)]
    assert not unexpected, unexpected
    totals = sum(results, collections.Counter())
    assert totals["approved"] > 0 and totals["reversed"] > 0, totals
    # Later approvals of the reversal requests made meanwhile, one approver each.
    for row in ApprovalRequest.objects.filter(kind="reversal", status="pending"):
        with contextlib.suppress(DomainError):
            approvals.approve(row.id, actor=APPROVERS[0])

    events = [e for e in _all_events() if e.stream_type == svc.STREAM_TYPE]
    # The bank's invariant: the money in the accounts is the openings plus what came in and
    # minus what went out, each reversed posting taken out of its sum; transfers and their
    # reversals move money between accounts only.
    into = sum(e.data["amount_cents"] for e in events if e.event_type == "MoneyDeposited")
    out = sum(e.data["amount_cents"] for e in events if e.event_type == "MoneyWithdrawn")
    for e in events:
        if e.event_type == "PostingReversed" and e.data["reversed_event_type"] == "MoneyDeposited":
            into -= e.data["amount_cents"]
        elif (
            e.event_type == "PostingReversed" and e.data["reversed_event_type"] == "MoneyWithdrawn"
        ):
            out -= e.data["amount_cents"]
    balances = {i: svc.get_account(i).balance_cents for i in ids}
    assert sum(balances.values()) == opening + into - out
    for i in ids:
        assert (
            min(
                svc.account_at(i, version=v).balance_cents
                for v in range(1, es.stream_version(i) + 1)
            )
            >= 0
        )
    # Each posting reversed at most once; a transfer's reversal has both sides.
    reversed_ids = collections.Counter(
        e.data["reversed_event_id"] for e in events if e.event_type == "PostingReversed"
    )
    assert max(reversed_ids.values(), default=1) == 1
    by_transfer = collections.Counter(
        e.data["transfer_id"]
        for e in events
        if e.event_type == "PostingReversed" and e.data["transfer_id"]
    )
    assert set(by_transfer.values()) <= {2}
    # Each request decided at most once; an approved one's command stored exactly once.
    for row in ApprovalRequest.objects.all():
        decisions = _decisions(row.id)
        assert len(decisions) <= 1
        ran = _ran(row.id)
        expected = {
            "withdraw": 1,
            "transfer": 2,
            "reversal": 2 if row.counterparty_id else 1,
        }[row.kind]
        assert len(ran) == (expected if decisions == ["ApprovalGranted"] else 0), (row.kind, ran)
    # The read models agree, approval streams and all.
    runner.catch_up()
    assert read_model_balances() == expected_balances()


def _all_events() -> list[es.RecordedEvent]:
    events, position = [], 0
    while batch := es.read_all(after_position=position, limit=5000):
        events += batch
        position = batch[-1].position
    return events


def test_requests_racing_for_the_same_command_queue_one(rule):
    account = svc.open_account(holder_name="Dup", initial_balance_cents=0, actor=MAKER)
    command = {"account_id": str(account.id), "reason": "suspicious " + uuid.uuid4().hex[:4]}

    def ask(i, barrier):
        barrier.wait()
        try:
            return approvals.request("freeze", command=command, actor=APPROVERS[i]).id
        except DuplicateRequest as exc:
            return exc

    results = run_threads(6, ask)
    queued = [r for r in results if isinstance(r, uuid.UUID)]
    refused = [r for r in results if isinstance(r, DuplicateRequest)]
    assert len(queued) == 1 and len(refused) == 5, results
    assert {r.pending_id for r in refused} == set(queued)
    assert ApprovalRequest.objects.filter(status="pending").count() == 1
