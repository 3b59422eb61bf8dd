from __future__ import annotations

import pytest
from django.core.management import call_command

import eventstore as es
from bank.models import ApprovalRequest
from eventstore.models import Event

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_a_realistic_history_once(capsys, settings):
    settings.DEBUG = True  # as make run seeds it (the demo users exist only under DEBUG)
    call_command("seed_demo", events=150, verbosity=0)
    count = Event.objects.count()
    assert count >= 150
    types = set(Event.objects.values_list("event_type", flat=True))
    assert {
        "AccountOpened",
        "MoneyDeposited",
        "MoneyWithdrawn",
        "TransferSent",
        "TransferReceived",
        "AccountFrozen",
        "AccountClosed",
        "PostingReversed",
        "ApprovalRequested",
    } <= types
    # The demo's approval queue holds the teller's request, which admin may decide.
    (waiting,) = ApprovalRequest.objects.filter(status="pending")
    assert waiting.requested_by == "teller" and waiting.kind == "withdraw"
    call_command("seed_demo", verbosity=0)
    assert Event.objects.count() == count
    assert "already there" in capsys.readouterr().out
    assert es.verify_all().ok
