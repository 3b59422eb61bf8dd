"""Forgery below the application: what a database writer without the signing key can do,
and how the store catches it (issue 14's attacks, on SQLite and PostgreSQL).

An attacker here writes rows with raw SQL, computing hashes exactly as the product does;
only the application's Ed25519 key is out of reach.
"""

from __future__ import annotations

import base64
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.db import connection

import eventstore as es
from bank.domain import InsufficientFunds
from bank.services import Actor
from bank.services import accounts as svc
from eventstore.backends import backend
from eventstore.hashing import canonical_json
from eventstore.signing import generate_key_text, parse_keyring, snapshot_message
from tests.eventstore.forgery import forge_event, forge_snapshot, jsonb_param
from tests.support import triggers_disabled

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")


def _verify_fails(capsys, *args):
    with pytest.raises(CommandError) as failure:
        call_command("verify_events", *args, verbosity=0)
    return str(failure.value) + capsys.readouterr().err


@pytest.fixture
def account(settings):
    settings.SNAPSHOT_INTERVAL = 3
    opened = svc.open_account(holder_name="Victim", initial_balance_cents=1_234, actor=SYSTEM)
    for amount in (10, 20, 30, 40):
        svc.deposit(account_id=opened.id, amount_cents=amount, actor=SYSTEM)
    assert es.load_snapshot(opened.id, schema_version=1).version == 3  # a real, signed one
    return opened.id


def test_a_forged_snapshot_is_never_used_and_is_reported(account, capsys, caplog, metric_reader):
    call_command("verify_events", "--full", verbosity=0)
    state = svc.get_account(account)
    assert state.balance_cents == 1_334 and state.version == 5
    forged = {
        "holder_name": "Victim",
        "currency": "EUR",
        "balance_cents": 100_000_000_000,
        "status": "active",
    }
    # Unsigned; then with a signature by another key under the application's key id.
    forge_snapshot(account, 4, forged)
    other = Ed25519PrivateKey.generate()
    anchor = es.read_stream(account)[4].hash
    message = snapshot_message(account, 5, 1, anchor, canonical_json(forged))
    forge_snapshot(account, 5, forged, signature=base64.b64encode(other.sign(message)).decode())

    with caplog.at_level(logging.WARNING, logger="eventstore.security"):
        replayed = svc.get_account(account)
    assert replayed.balance_cents == 1_334  # the replay, not the forgery
    (record,) = [r for r in caplog.records if r.name == "eventstore.security"]
    assert record.stream_id == str(account) and record.version == 5
    assert "signature does not verify" in record.getMessage()
    rejected = [
        point.value
        for metric in _metrics(metric_reader)
        if metric.name == "eventstore.snapshots_rejected"
        for point in metric.data.data_points
    ]
    assert rejected and rejected[0] >= 1
    with pytest.raises(InsufficientFunds, match="exceeds the balance of 1334 cents"):
        svc.withdraw(account_id=account, amount_cents=50_000_000_000, actor=SYSTEM)
    # Time travel too: the forged snapshot at version 4 is not used either.
    assert svc.account_at(account, version=4).balance_cents == 1_294

    err = _verify_fails(capsys)
    assert f"stream {account}: snapshot at version 4: not signed by the application" in err
    assert "1 rejected snapshot(s)" in err
    with pytest.raises(CommandError, match="found 1 problem"):
        call_command("healthcheck")


def _metrics(reader):
    data = reader.get_metrics_data()
    return [
        metric
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
    ]


def test_a_snapshot_whose_state_is_not_the_replay_is_reported(account, capsys):
    # Signed with the application's own key, anchored right, but a wrong state: what a bug
    # in the domain (or a key thief) would leave. Loads trust the signature; verification
    # replays and compares.
    state = {"holder_name": "Victim", "currency": "EUR", "balance_cents": 7, "status": "active"}
    anchor = es.read_stream(account)[4].hash
    key_id, signature = es.signing.keyring().sign(
        snapshot_message(account, 5, 1, anchor, canonical_json(state))
    )
    forge_snapshot(account, 5, state, signature=signature, key_id=key_id, anchor=anchor)
    err = _verify_fails(capsys, "--full")
    assert "snapshot at version 5: its state is not the replay" in err


def test_a_snapshot_claiming_a_version_past_the_head_is_rejected_and_the_stream_replayed(
    account, caplog, monkeypatch
):
    """The events are read from the snapshot's version on (the event there is its anchor):
    a snapshot at a version no event has finds none, and must not be taken for a snapshot
    saved while the stream was read (read again, and again)."""
    state = svc.get_account(account)
    forge_snapshot(account, 50, {"balance_cents": 10**9}, anchor="0" * 64)
    db = backend()
    real = db.run_loads
    sent = []

    def counted(loads, lock_ids):
        sent.append([load.collection for load in loads])
        return real(loads, lock_ids)

    monkeypatch.setattr(db, "run_loads", counted)
    with caplog.at_level(logging.WARNING, logger="eventstore.security"):
        assert svc.get_account(account) == state
    # The pair finds nothing from version 50 on; read again from 50 (a snapshot saved in
    # between would look alike), still nothing: rejected, and the stream read whole.
    assert sent == [["snapshots", "events"], ["events"], ["events"]]
    monkeypatch.undo()
    assert any(r.name == "eventstore.security" and r.version == 50 for r in caplog.records), (
        caplog.text
    )
    after = svc.deposit(account_id=account, amount_cents=1, actor=SYSTEM)
    assert after.version == 6 and after.balance_cents == 1_335


def test_an_event_with_a_correct_hash_but_no_signature_is_named(account, capsys):
    call_command("verify_events", "--full", verbosity=0)
    version = forge_event(account, {"amount_cents": 1_000_000, "description": ""})
    # The incremental run reads the new event and names it; so does a full run.
    for args in ((), ("--full",)):
        err = _verify_fails(capsys, *args)
        assert (
            f"stream {account}: version {version}: not covered by the application's signature"
            in err
        )
    # The audit view's integrity check (from the recorded run on) names it too.
    from bank.selectors import account_integrity

    integrity = account_integrity(account)
    assert not integrity.ok and integrity.problem.version == version


@pytest.mark.parametrize(
    "key_id, named",
    [
        ("dev", "its signature does not verify with the public key of 'dev'"),
        ("nobody-knows", "signed with unknown key id 'nobody-knows'"),
    ],
    ids=["another private key under the app's key id", "an unknown key id"],
)
def test_an_event_signed_with_a_key_the_store_does_not_trust_is_named(
    account, capsys, key_id, named
):
    version = forge_event(
        account,
        {"amount_cents": 1_000_000, "description": ""},
        sign_with=Ed25519PrivateKey.generate(),
        key_id=key_id,
    )
    err = _verify_fails(capsys, "--full")
    assert f"version {version}: {named}" in err
    assert key_id == "dev" or "EVENTSTORE_VERIFY_KEYS" in err


def test_key_rotation_old_events_verify_with_the_old_public_key(account, settings, capsys):
    old = es.signing.keyring()
    old_public = ",".join(f"{k}:{v}" for k, v in old.public_key_texts().items())
    settings.EVENTSTORE_SIGNING_KEY = generate_key_text("k2026")
    settings.EVENTSTORE_VERIFY_KEYS = old_public
    svc.deposit(account_id=account, amount_cents=5, actor=SYSTEM)
    key_ids = {e.key_id for e in es.models.Event.objects.filter(stream_id=account)} - {None}
    assert key_ids == {"dev", "k2026"}
    assert svc.get_account(account).balance_cents == 1_339  # old snapshots still verify
    call_command("verify_events", "--full", verbosity=0)
    # Without the old public key the old signatures cannot be checked: named, not ignored.
    settings.EVENTSTORE_VERIFY_KEYS = ""
    err = _verify_fails(capsys, "--full")
    assert "signed with unknown key id 'dev'" in err


def test_verification_needs_public_keys_only(account, capsys):
    public = es.signing.keyring().public_key_texts()
    keys = ",".join(f"{k}:{v}" for k, v in public.items())
    verifier = parse_keyring("", keys, debug=True)  # would sign with the dev key ...
    only_public = es.signing.verify_only_keyring(keys)  # ... this one cannot sign at all
    assert only_public.signing_key is None and verifier.signing_key is not None
    with pytest.raises(es.signing.KeyConfigError):
        only_public.sign(b"x")
    report = es.verify_all(keys=only_public)
    assert report.ok and report.events == 5 and report.snapshots == 1
    call_command("verify_events", "--full", "--verify-keys", keys, verbosity=0)
    other = base64.b64encode(b"\x01" * 32).decode()
    err = _verify_fails(capsys, "--full", "--verify-keys", f"dev:{other}")
    assert "does not verify with the public key of 'dev'" in err


def test_incremental_runs_check_only_what_is_new_and_full_finds_old_tampering(account, capsys):
    call_command("verify_events", "--full", verbosity=0)
    out = capsys.readouterr().out
    assert "full verification: checked 1 streams, 5 events and 1 snapshots" in out
    svc.deposit(account_id=account, amount_cents=1, actor=SYSTEM)
    call_command("verify_events", verbosity=0)
    out = capsys.readouterr().out
    assert "incremental verification: checked 1 streams, 1 events" in out
    assert "not re-checked: 5 events of 0 streams verified by earlier runs" in out
    assert "run --full to re-check them" in out

    # An old event edited (triggers off, as the owner could): the incremental run does not
    # re-read it, and says so; the full run finds it.
    victim = es.read_stream(account)[1]
    with triggers_disabled(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE events SET data = {jsonb_param()} WHERE position = %s",
            ['{"amount_cents": 999999, "description": ""}', victim.position],
        )
    call_command("verify_events", verbosity=0)
    assert "not re-checked: 6 events" in capsys.readouterr().out
    err = _verify_fails(capsys, "--full")
    assert f"stream {account}: version 2: stored content no longer matches its hash" in err
    # Recorded: the next incremental run still reports it (carried) until a full run is clean.
    err = _verify_fails(capsys)
    assert "found earlier, not re-checked" in err and "version 2" in err
    run = es.last_run()
    assert not run.ok and not run.full


def test_a_forged_verification_record_does_not_hide_a_forged_event(account, capsys):
    call_command("verify_events", "--full", verbosity=0)
    version = forge_event(account, {"amount_cents": 77, "description": ""})
    # The attacker also moves the account's recorded verified head onto the forged event.
    from eventstore.models import StreamVerification

    head = es.read_stream(account)[-1]
    StreamVerification.objects.filter(stream_id=account).update(version=version, hash=head.hash)
    err = _verify_fails(capsys)
    assert f"version {version}: the head verified by the last run changed" in err


def test_health_fails_when_a_trigger_is_dropped_or_disabled(account, capsys):
    call_command("verify_events", "--full", verbosity=0)
    call_command("healthcheck")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete")
            expected = "trigger events_refuse_update_delete on events is disabled"
        else:
            cursor.execute("DROP TRIGGER snapshots_refuse_update")
            expected = "trigger snapshots_refuse_update on snapshots is missing"
    with pytest.raises(CommandError, match=expected):
        call_command("healthcheck")
    from django.test import Client

    response = Client().get("/healthz")
    assert response.status_code == 503 and response.json()["checks"]["integrity"] is False


def test_health_fails_without_a_recent_full_verification(account, settings):
    with pytest.raises(CommandError, match="no full verification has run"):
        call_command("healthcheck")
    call_command("verify_events", "--full", verbosity=0)
    call_command("healthcheck")
    settings.HEALTH_MAX_VERIFY_AGE_HOURS = 0
    with pytest.raises(CommandError, match="the last full verification ran .* ago"):
        call_command("healthcheck")


def test_an_event_slipped_in_before_the_applications_next_append_is_still_named(account, capsys):
    """The application appends on top of a forged event (it loads the forged head and chains
    to it): its signature covers only its own versions, so the forged one stays uncovered."""
    version = forge_event(account, {"amount_cents": 1_000_000, "description": ""})
    svc.deposit(account_id=account, amount_cents=1, actor=SYSTEM)  # version + 1, signed
    err = _verify_fails(capsys, "--full")
    assert (
        f"stream {account}: version {version}: not covered by the application's signature: "
        f"appended by someone without the signing key (the application's append of versions "
        f"{version + 1} to {version + 1} came after it)"
    ) in err


def test_an_event_inserted_with_a_chosen_position_is_named(account, capsys):
    version = forge_event(account, {"amount_cents": 5, "description": ""})
    forged = es.read_stream(account)[-1]
    with triggers_disabled(), connection.cursor() as cursor:  # as if INSERTed with it
        cursor.execute("UPDATE events SET position = -7 WHERE position = %s", [forged.position])
    err = _verify_fails(capsys, "--full")
    assert f"version {version}: stored out of order (position -7 after" in err
