"""Evidence packs: exported by `export_evidence`, checked by the README's standalone script."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.db import connection

import eventstore as es
from bank.domain.events import MoneyDeposited
from bank.services import Actor
from bank.services import accounts as svc
from eventstore.evidence import (
    EVIDENCE_FORMAT,
    NOT_SEALED_MESSAGE,
    VERSION_NOT_IN_STREAM_MESSAGE,
    NotSealed,
    VersionNotInStream,
    build_pack,
)
from eventstore.hashing import GENESIS_HASH, canonical_json, event_hash
from eventstore.signing import public_key_text, seal_message
from tests.support import ROOT, triggers_disabled

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tests")
# The script runs where the project cannot be imported: these names are made unimportable
# before it starts (the venv has Django installed, and the project is installed editable).
BLOCKED = ("django", "rest_framework", "bank", "eventstore", "projections", "config")
RUNNER = (
    "import runpy, sys\n"
    f"for name in {BLOCKED!r}: sys.modules[name] = None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
BALANCE_LINE = re.compile(r"^version (\d+): (\w+) +balance (-?\d+)$", re.MULTILINE)


@pytest.fixture
def script(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```python\n(# verify_evidence\.py.*?)```", readme, re.DOTALL)
    assert found, "README.md has no ```python block starting with # verify_evidence.py"
    path = tmp_path / "verify_evidence.py"
    path.write_text(found.group(1), encoding="utf-8")
    return path


def _verify(script, pack, *keys):
    """Run the README's script on ``pack`` (a dict) in isolated mode, without the project."""
    path = script.parent / "pack.json"
    path.write_text(json.dumps(pack, indent=2, ensure_ascii=False), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-I", "-c", RUNNER, str(script), path.name, *keys],
        cwd=script.parent,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _history(settings):
    """Two accounts with deposits, withdrawals, a status change and a transfer each way."""
    settings.SNAPSHOT_INTERVAL = 5
    alice = svc.open_account(holder_name="Alice Ærø", initial_balance_cents=10_000, actor=ACTOR)
    bob = svc.open_account(holder_name="Bob", actor=ACTOR)
    svc.deposit(account_id=alice.id, amount_cents=2_500, description="salary", actor=ACTOR)
    svc.withdraw(account_id=alice.id, amount_cents=700, description="café", actor=ACTOR)
    svc.transfer(from_account=alice.id, to_account=bob.id, amount_cents=3_000, actor=ACTOR)
    svc.freeze(account_id=alice.id, reason="check", actor=ACTOR)
    svc.unfreeze(account_id=alice.id, reason="checked", actor=ACTOR)
    svc.deposit(account_id=bob.id, amount_cents=400, actor=ACTOR)
    svc.transfer(from_account=bob.id, to_account=alice.id, amount_cents=1_200, actor=ACTOR)
    svc.withdraw(account_id=alice.id, amount_cents=1, actor=ACTOR)
    svc.deposit(account_id=alice.id, amount_cents=1_000, actor=ACTOR)
    svc.withdraw(account_id=alice.id, amount_cents=2_000, actor=ACTOR)
    return alice.id, bob.id


def _export(account_id, tmp_path, **options):
    out = tmp_path / f"evidence-{account_id}.json"
    call_command("export_evidence", account=str(account_id), out=str(out), **options)
    return json.loads(out.read_text(encoding="utf-8"))


def _balances(output):
    return {int(v): int(balance) for v, _, balance in BALANCE_LINE.findall(output)}


def _event(pack, event_type):
    return next(e for e in pack["events"] if e["event_type"] == event_type)


def _bank_keys(pack):
    return ",".join(f"{key_id}:{key}" for key_id, key in pack["public_keys"].items())


def test_the_readme_script_verifies_a_fresh_pack_and_prints_the_balance_at_each_version(
    settings, script, tmp_path
):
    alice, bob = _history(settings)
    for account_id in (alice, bob):
        pack = _export(account_id, tmp_path)
        version = svc.account_version(account_id)
        assert pack["format"] == EVIDENCE_FORMAT
        assert pack["up_to_version"] == pack["sealed_through"] == version
        assert [e["version"] for e in pack["events"]] == list(range(1, version + 1))

        result = _verify(script, pack, _bank_keys(pack))

        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.rstrip().endswith("VERIFIED")
        assert _balances(result.stdout) == {
            v: svc.account_at(account_id, version=v).balance_cents for v in range(1, version + 1)
        }
    # Alice's pack: ten events, a snapshot at version 10 and both sides of the transfers.
    pack = _export(alice, tmp_path)
    assert pack["snapshot"]["version"] == 10
    assert json.loads(pack["snapshot"]["state"])["balance_cents"] == 8_999
    assert _event(pack, "TransferSent")["signature"] is not None  # a two-stream append
    assert "snapshot at version 10: signed, anchored, balance 8999" in _verify(script, pack).stdout


def test_a_pack_up_to_a_version_inside_an_append_carries_the_events_up_to_its_seal(
    settings, script, tmp_path
):
    alice, _ = _history(settings)
    before = svc.account_version(alice)
    # No bank command appends two events to one stream at once; the store's API can.
    now = datetime.now(UTC)
    es.append(
        alice,
        [
            es.NewEvent(event_type=e.event_type, data=e.to_data(), occurred_at=now)
            for e in (
                MoneyDeposited(amount_cents=100, description="batch 1"),
                MoneyDeposited(amount_cents=200, description="batch 2"),
            )
        ],
        stream_type=svc.STREAM_TYPE,
        expected_version=before,
    )
    svc.deposit(account_id=alice, amount_cents=5, actor=ACTOR)

    pack = _export(alice, tmp_path, up_to_version=before + 1)

    assert pack["events"][before]["signature"] is None  # version before + 1: mid-append
    assert (pack["up_to_version"], pack["sealed_through"]) == (before + 1, before + 2)
    assert len(pack["events"]) == before + 2
    assert pack["snapshot"]["version"] == 10
    result = _verify(script, pack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _balances(result.stdout)[before + 1] == (
        svc.account_at(alice, version=before + 1).balance_cents
    )
    # Without the event that seals it, the same version is refused.
    pack["events"].pop()
    pack["sealed_through"] = None
    result = _verify(script, pack)
    assert result.returncode == 1
    assert f"version {before + 1}: not covered by any signature" in result.stderr


def test_a_pack_with_one_amount_changed_is_refused_naming_its_version(settings, script, tmp_path):
    alice, _ = _history(settings)
    pack = _export(alice, tmp_path)
    changed = _event(pack, "MoneyWithdrawn")
    data = json.loads(changed["data"])
    data["amount_cents"] = 7
    changed["data"] = canonical_json(data)

    result = _verify(script, pack)

    assert result.returncode == 1
    assert result.stdout.count("VERIFIED") == 0
    assert f"REFUSED: version {changed['version']}: its content does not match its hash" in (
        result.stderr
    )


def test_a_changed_amount_with_a_recomputed_chain_is_refused_by_its_signature(
    settings, script, tmp_path
):
    alice, _ = _history(settings)
    pack = _export(alice, tmp_path)
    changed = _event(pack, "MoneyWithdrawn")
    data = json.loads(changed["data"])
    data["amount_cents"] = 7
    changed["data"] = canonical_json(data)
    _rechain(pack)

    result = _verify(script, pack)

    assert result.returncode == 1
    assert f"REFUSED: version {changed['version']}: the signature does not verify" in (
        result.stderr
    )


def test_a_signature_made_with_another_private_key_under_the_same_key_id_is_refused(
    settings, script, tmp_path
):
    alice, _ = _history(settings)
    pack = _export(alice, tmp_path)
    last = pack["events"][-1]
    forger = Ed25519PrivateKey.generate()
    last["signature"] = base64.b64encode(
        forger.sign(
            seal_message(
                uuid.UUID(pack["stream_id"]), last["version"], last["version"], last["hash"]
            )
        )
    ).decode()

    result = _verify(script, pack)

    assert result.returncode == 1
    assert (
        f"REFUSED: version {last['version']}: the signature does not verify with key "
        f"{last['key_id']!r}" in result.stderr
    )


def test_an_unknown_key_id_is_refused_by_name(settings, script, tmp_path):
    alice, _ = _history(settings)
    pack = _export(alice, tmp_path)
    pack["events"][2]["key_id"] = "ghost-key"

    result = _verify(script, pack)

    assert result.returncode == 1
    assert "REFUSED: version 3: signed with unknown key id 'ghost-key'" in result.stderr


def test_a_pack_that_brings_its_own_key_is_refused_against_the_bank_keys(
    settings, script, tmp_path
):
    alice, _ = _history(settings)
    pack = _export(alice, tmp_path)
    bank_keys = _bank_keys(pack)
    forger = Ed25519PrivateKey.generate()
    pack["public_keys"] = {"ghost-key": _public_text(forger)}
    for event in pack["events"]:
        if event["signature"] is not None:
            # Every append of this history is one event: its range is its own version.
            message = seal_message(
                uuid.UUID(pack["stream_id"]), event["version"], event["version"], event["hash"]
            )
            event["signature"] = base64.b64encode(forger.sign(message)).decode()
            event["key_id"] = "ghost-key"
    pack["snapshot"] = None

    alone = _verify(script, pack)
    against_the_bank = _verify(script, pack, bank_keys)

    # Alone, a pack vouches only for itself: the script shows which keys it trusted.
    assert "public keys in the pack: ghost-key" in alone.stdout
    assert against_the_bank.returncode == 1
    assert "public key 'ghost-key' of the pack is not one of the bank's keys" in (
        against_the_bank.stderr
    )


def test_the_script_cannot_import_django_where_it_runs(script):
    probe = script.parent / "probe.py"
    probe.write_text("import django\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-I", "-c", RUNNER, str(probe)],
        cwd=script.parent,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr or "ImportError" in result.stderr


@pytest.mark.parametrize(
    ("account", "up_to", "message"),
    [
        ("not-a-uuid", None, "--account must be a UUID, not 'not-a-uuid'"),
        ("00000000-0000-4000-8000-000000000001", None, "no account 00000000-0000-4000-8000"),
        ("alice", 0, "--up-to-version 0 is outside account"),
        ("alice", 11, "--up-to-version 11 is outside account"),
    ],
)
def test_bad_inputs_to_the_command_are_refused_and_write_no_file(
    settings, tmp_path, account, up_to, message
):
    alice, _ = _history(settings)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    options = {"up_to_version": up_to} if up_to is not None else {}

    with pytest.raises(CommandError, match=re.escape(message)):
        call_command(
            "export_evidence",
            account=str(alice) if account == "alice" else account,
            out=str(out_dir / "pack.json"),
            **options,
        )

    assert list(out_dir.iterdir()) == []


def test_build_pack_refuses_an_unknown_stream_and_a_version_beyond_it(settings):
    alice, _ = _history(settings)
    with pytest.raises(es.StreamNotFound):
        build_pack(uuid.uuid4())
    message = VERSION_NOT_IN_STREAM_MESSAGE.format(stream_id=alice, version=10, asked=11)
    with pytest.raises(VersionNotInStream, match=re.escape(message)):
        build_pack(alice, up_to_version=11)
    assert build_pack(alice)["snapshot"] is None  # no schema version asked: no snapshot


def test_a_pack_of_events_from_before_signing_began_verifies_by_its_chain_alone(
    settings, script, tmp_path
):
    alice, _ = _history(settings)
    # As a store upgraded from before signing: Alice's events carry no signature, and the
    # signing epoch starts after them.
    with triggers_disabled(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE events SET signature = NULL, key_id = NULL WHERE stream_id = %s",
            [alice if connection.vendor == "postgresql" else alice.hex],
        )
        cursor.execute(
            "UPDATE signing_epoch SET events_from_position = %s", [es.head_position() + 1]
        )

    pack = _export(alice, tmp_path, up_to_version=4)

    assert (pack["up_to_version"], pack["sealed_through"]) == (4, None)
    assert len(pack["events"]) == 4
    # The pack's own epoch is not enough: a forger could strip the signatures and move it.
    refused = _verify(script, pack)
    assert refused.returncode == 1 and "pass UNSIGNED_BEFORE" in refused.stderr
    keys = ",".join(f"{k}:{v}" for k, v in pack["public_keys"].items())
    result = _verify(script, pack, keys, str(pack["signing_epoch"]["events_from_position"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "versions 1-4: unsigned, from before signing began" in result.stdout


def test_an_event_that_no_signature_covers_cannot_be_exported(settings, tmp_path):
    alice, _ = _history(settings)
    with triggers_disabled(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE events SET signature = NULL, key_id = NULL WHERE stream_id = %s "
            "AND version = 10",
            [alice if connection.vendor == "postgresql" else alice.hex],
        )

    message = NOT_SEALED_MESSAGE.format(stream_id=alice, version=10)
    with pytest.raises(NotSealed, match=re.escape(message)):
        build_pack(alice)
    with pytest.raises(CommandError, match="verify_events --stream"):
        call_command("export_evidence", account=str(alice), out=str(tmp_path / "pack.json"))
    assert list(tmp_path.iterdir()) == []
    assert build_pack(alice, up_to_version=9)["sealed_through"] == 9


def _rechain(pack):
    """Recompute every hash after an edit, as a forger without the signing key can."""
    head = GENESIS_HASH
    for e in pack["events"]:
        head = e["hash"] = event_hash(
            previous_hash=head,
            event_id=uuid.UUID(e["event_id"]),
            stream_id=uuid.UUID(e["stream_id"]),
            stream_type=e["stream_type"],
            version=e["version"],
            event_type=e["event_type"],
            schema_version=e["schema_version"],
            data_json=canonical_json(json.loads(e["data"])),
            metadata_json=canonical_json(json.loads(e["metadata"])),
            occurred_text=e["occurred_at"],
            recorded_text=e["recorded_at"],
        )


def _public_text(private):
    return public_key_text(private.public_key())
