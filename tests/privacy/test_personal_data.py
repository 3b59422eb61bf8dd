"""Personal data encrypted per holder, erased by deleting the key (crypto-shredding)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

import eventstore as es
from bank import privacy
from bank.domain import errors
from bank.models import PersonalDataKey
from bank.services import Actor, approvals, encryption, personal_data
from bank.services import accounts as svc

pytestmark = pytest.mark.django_db

CLERK = Actor(username="clerk", user_id=3, auth="admin")
NAME = "Émilie du Châtelet"


@pytest.fixture(autouse=True)
def _fresh_keys():
    encryption.forget_cached_keys()
    yield
    encryption.forget_cached_keys()


def open_(name=NAME, balance=0):
    return svc.open_account(holder_name=name, initial_balance_cents=balance, actor=CLERK)


def closed(name=NAME):
    account = open_(name)
    svc.close(account_id=account.id, reason="left the bank", actor=CLERK)
    return account


def _raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- the primitives ----------------------------------------------------------------------


def test_a_token_opens_only_for_its_subject_and_field():
    key, subject = privacy.new_data_key(), uuid.uuid4()
    token = privacy.encrypt(key, subject, "holder_name", NAME)
    assert token.startswith(f"pii:v1:{subject}:") and NAME not in token
    assert privacy.decrypt(key, token, "holder_name") == NAME
    with pytest.raises(privacy.PersonalDataKeyError, match="does not decrypt"):
        privacy.decrypt(key, token, "description")
    moved = token.replace(str(subject), str(uuid.uuid4()))
    with pytest.raises(privacy.PersonalDataKeyError, match="does not decrypt"):
        privacy.decrypt(key, moved, "holder_name")
    with pytest.raises(privacy.PersonalDataKeyError, match="does not decrypt"):
        privacy.decrypt(privacy.new_data_key(), token, "holder_name")
    # Two encryptions of one name differ (a fresh nonce each time).
    assert privacy.encrypt(key, subject, "holder_name", NAME) != token


def test_master_keys_parse_rotate_and_refuse_what_is_wrong():
    new, old = privacy.new_master_key_text("k2"), privacy.new_master_key_text("k1")
    keys = privacy.parse_master_keys(f"{new},{old}", debug=False)
    assert keys.current == "k2" and set(keys.keys) == {"k1", "k2"}
    subject, data_key = uuid.uuid4(), privacy.new_data_key()
    key_id, wrapped = keys.wrap(subject, data_key)
    assert keys.unwrap(subject, key_id, wrapped) == data_key
    with pytest.raises(privacy.PersonalDataKeyError, match="altered"):
        keys.unwrap(uuid.uuid4(), key_id, wrapped)
    with pytest.raises(privacy.PersonalDataKeyError, match="does not hold"):
        keys.unwrap(subject, "k9", wrapped)
    short = "k3:" + base64.b64encode(b"x" * 16).decode()
    for text, message in [
        ("", "required without DEBUG"),
        (short, "has 16 bytes"),
        ("k1", "is not key_id:base64"),
        ("k1:***", "not base64"),
        (f"{new},{new}", "given twice"),
        (privacy.dev_master_key_text(), "refused without DEBUG"),
    ]:
        with pytest.raises(privacy.PersonalDataKeyError, match=message):
            privacy.parse_master_keys(text, debug=False)
    assert privacy.parse_master_keys("", debug=True).current == "dev"


# --- what is stored ------------------------------------------------------------------------


def test_the_name_is_stored_only_as_ciphertext_and_read_back_in_clear(settings):
    settings.SNAPSHOT_INTERVAL = 2
    account = open_()
    assert account.holder_name == NAME
    svc.deposit(account_id=account.id, amount_cents=5, actor=CLERK)
    svc.deposit(account_id=account.id, amount_cents=5, actor=CLERK)
    opened = svc.account_events(account.id)[0]
    assert opened.schema_version == 2
    assert privacy.is_token(opened.data["holder_name"])
    # Nowhere in the events or the snapshots, in any form the database holds.
    for table in ("events", "snapshots"):
        rows = _raw(f"SELECT * FROM {table}")
        assert rows and not any(NAME in str(row) or "Châtelet" in str(row) for row in rows)
    assert svc.get_account(account.id).holder_name == NAME
    assert svc.account_at(account.id, version=1).holder_name == NAME
    (key,) = PersonalDataKey.objects.filter(subject_id=account.id)
    assert key.master_key_id == encryption.master_keys().current
    assert es.verify_stream(account.id) is None


def _legacy_account(name="Old Clear"):
    """An account opened before encryption: its name in clear (schema version 1)."""
    account_id = uuid.uuid4()
    es.append(
        account_id,
        [
            es.NewEvent(
                event_type="AccountOpened",
                schema_version=1,
                data={"holder_name": name, "currency": "EUR", "initial_balance_cents": 0},
                occurred_at=datetime(2025, 1, 1, tzinfo=UTC),
            )
        ],
        stream_type="bank.account",
        expected_version=0,
        metadata={"actor": {"username": "legacy"}},
    )
    return account_id


def test_events_written_before_encryption_still_read_in_clear():
    account_id = _legacy_account()
    assert svc.get_account(account_id).holder_name == "Old Clear"
    svc.close(account_id=account_id, reason="gone", actor=CLERK)
    personal_data.erase(account_id=account_id, reason="request 7", actor=CLERK)
    # The account shows the erasure; the old event keeps its clear text (it cannot be
    # rewritten, as the README says).
    assert svc.get_account(account_id).holder_name == "[erased]"
    assert svc.account_at(account_id, version=1).holder_name == "[erased]"
    assert svc.account_events(account_id)[0].data["holder_name"] == "Old Clear"


# --- erasure -------------------------------------------------------------------------------


def test_erasure_deletes_the_key_appends_the_event_and_the_chain_still_verifies():
    account = closed()
    before = svc.account_events(account.id)
    state = personal_data.erase(account_id=account.id, reason="request 2026-114", actor=CLERK)
    assert state.holder_name == "[erased]" and state.version == 3
    assert not PersonalDataKey.objects.filter(subject_id=account.id).exists()
    erased = svc.account_events(account.id)[-1]
    assert erased.event_type == "PersonalDataErased"
    assert erased.data == {"reason": "request 2026-114"}
    assert erased.metadata["actor"]["username"] == "clerk"
    # The stored events are unchanged (same ciphertext, same hashes) and verify.
    assert svc.account_events(account.id)[:2] == before
    assert es.verify_stream(account.id) is None
    # Every read of the name now says erased, the past included.
    assert svc.get_account(account.id).holder_name == "[erased]"
    assert svc.account_at(account.id, version=1).holder_name == "[erased]"
    assert encryption.reveal(before[0].data["holder_name"], "holder_name") == "[erased]"
    shown = encryption.reveal_event_data("AccountOpened", before[0].data)
    assert shown["holder_name"] == "[erased]"


def test_erasure_follows_its_rules_and_changes_nothing_when_refused(settings):
    account = open_(balance=100)
    for target in (account.id,):
        with pytest.raises(errors.ErasureNotAllowed, match="close it"):
            personal_data.erase(account_id=target, reason="asked", actor=CLERK)
    assert PersonalDataKey.objects.filter(subject_id=account.id).exists()
    assert svc.get_account(account.id).holder_name == NAME
    done = closed("Ada")
    with pytest.raises(errors.InvalidInput):
        personal_data.erase(account_id=done.id, reason="  ", actor=CLERK)
    personal_data.erase(account_id=done.id, reason="asked", actor=CLERK)
    with pytest.raises(errors.ErasureNotAllowed, match="erased already"):
        personal_data.erase(account_id=done.id, reason="again", actor=CLERK)
    # A request waiting for approval about the account holds the erasure back: it was
    # asked while there was money, and the money left by smaller withdrawals since.
    settings.APPROVAL_THRESHOLD_CENTS = 100
    waiting = open_("Bob", balance=150)
    row = approvals.request(
        "withdraw",
        command={"account_id": str(waiting.id), "amount_cents": 150},
        actor=CLERK,
    )
    for _ in range(3):
        svc.withdraw(account_id=waiting.id, amount_cents=50, actor=CLERK)
    svc.close(account_id=waiting.id, reason="gone", actor=CLERK)
    with pytest.raises(errors.ErasureNotAllowed, match=f"{row.id} .* is pending"):
        personal_data.erase(account_id=waiting.id, reason="asked", actor=CLERK)
    approvals.reject(row.id, actor=Actor(username="boss", user_id=99), reason="moot")
    personal_data.erase(account_id=waiting.id, reason="asked", actor=CLERK)


def test_a_restored_backup_is_erased_again_by_reapply():
    account = closed()
    saved = PersonalDataKey.objects.get(subject_id=account.id)
    personal_data.erase(account_id=account.id, reason="asked", actor=CLERK)
    # The restore brings the key row back, from before the erasure.
    PersonalDataKey.objects.create(
        subject_id=saved.subject_id,
        master_key_id=saved.master_key_id,
        wrapped_key=bytes(saved.wrapped_key),
    )
    kept = open_("Kept")
    encryption.forget_cached_keys()
    opened = svc.account_events(account.id)[0]
    assert encryption.reveal(opened.data["holder_name"], "holder_name") == NAME
    assert personal_data.reapply() == [account.id]
    encryption.forget_cached_keys()
    assert encryption.reveal(opened.data["holder_name"], "holder_name") == "[erased]"
    assert svc.get_account(kept.id).holder_name == "Kept"
    assert personal_data.reapply() == []


def test_rotation_rewraps_every_key_and_names_still_read(settings):
    first = open_("Rotated One")
    second = open_("Rotated Two")
    old = settings.PII_MASTER_KEYS
    settings.PII_MASTER_KEYS = f"{privacy.new_master_key_text('k2027')},{old}"
    moved, total = encryption.rotate(batch=1)
    assert (moved, total) == (2, 2)
    assert set(PersonalDataKey.objects.values_list("master_key_id", flat=True)) == {"k2027"}
    encryption.forget_cached_keys()
    settings.PII_MASTER_KEYS = settings.PII_MASTER_KEYS.split(",")[0]  # the old one removed
    assert svc.get_account(first.id).holder_name == "Rotated One"
    assert svc.get_account(second.id).holder_name == "Rotated Two"
    assert encryption.rotate() == (0, 2)


# --- the commands --------------------------------------------------------------------------


def test_the_commands_erase_export_reapply_and_make_keys(tmp_path, capsys):
    account = closed()
    out = tmp_path / "subject.json"
    call_command("export_personal_data", account=str(account.id), out=str(out))
    held = json.loads(out.read_text())
    assert held["account"]["holder_name"] == NAME
    assert held["events"][0]["data"]["holder_name"] == NAME
    assert held["personal_data_erased"] is False
    with pytest.raises(CommandError, match="--reason is required"):
        call_command("erase_personal_data", account=str(account.id))
    with pytest.raises(CommandError, match="must be a UUID"):
        call_command("erase_personal_data", account="nope", reason="x")
    with pytest.raises(CommandError, match="nothing was erased"):
        call_command("erase_personal_data", account=str(open_("Active").id), reason="x")
    call_command("erase_personal_data", account=str(account.id), reason="request 9")
    assert "erased the personal data" in capsys.readouterr().out
    call_command("export_personal_data", account=str(account.id), out=str(out))
    held = json.loads(out.read_text())
    assert held["personal_data_erased"] is True
    assert NAME not in out.read_text()
    call_command("erase_personal_data", reapply=True)
    assert "0 data key(s) deleted again" in capsys.readouterr().out
    # A subject erased according to the register, whose event a restored dump lacks.
    listed = open_("Listed")
    register = tmp_path / "erased.txt"
    register.write_text(f"# erasure register\n{listed.id}\n")
    call_command("erase_personal_data", reapply=True, subjects=str(register))
    assert f"deleted again the data key of {listed.id}" in capsys.readouterr().out
    encryption.forget_cached_keys()
    assert svc.get_account(listed.id).holder_name == "[erased]"
    register.write_text("not-an-id\n")
    with pytest.raises(CommandError, match="line 1: 'not-an-id' is not an account id"):
        call_command("erase_personal_data", reapply=True, subjects=str(register))
    call_command("personal_data_key", new="k2028")
    printed = capsys.readouterr().out.strip()
    assert privacy.parse_master_keys(printed, debug=False).current == "k2028"
    with pytest.raises(CommandError, match="no account|does not exist"):
        call_command("export_personal_data", account=str(uuid.uuid4()), out=str(out))


def test_a_rolled_back_open_leaves_no_key_in_memory_for_a_later_open_of_that_id():
    from django.db import transaction

    account_id = uuid.uuid4()

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        state = svc.open_account(account_id=account_id, holder_name="First Try", actor=CLERK)
        assert state.holder_name == "First Try"  # read back inside the transaction
        raise Abort
    assert not PersonalDataKey.objects.filter(subject_id=account_id).exists()
    svc.open_account(account_id=account_id, holder_name="Second Try", actor=CLERK)
    assert PersonalDataKey.objects.filter(subject_id=account_id).exists()
    encryption.forget_cached_keys()
    assert svc.get_account(account_id).holder_name == "Second Try"
