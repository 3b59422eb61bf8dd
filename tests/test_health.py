"""/healthz and manage.py healthcheck: database, migrations, read-model lag, dead letters,
unreadable streams."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

import eventstore as es
from bank.services import Actor
from bank.services import accounts as svc
from bank.services.accounts import STREAM_TYPE
from projections import runner
from projections.follower import Parking
from tests.support import now

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")


CHECKS = {
    "database": True,
    "migrations": True,
    "projections": True,
    "dead_letters": True,
    "readable": True,
    "personal_data": True,
    "integrity": True,
}


def test_healthz_is_public_and_says_only_which_checks_pass():
    svc.open_account(holder_name="Healthy", actor=SYSTEM)
    runner.catch_up()
    call_command("verify_events", "--full", verbosity=0)
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": CHECKS}
    assert "no-cache" in response["Cache-Control"]
    assert Client().post("/healthz").status_code == 405


def test_a_lagging_read_model_makes_it_unhealthy(settings, capsys):
    svc.open_account(holder_name="Behind", actor=SYSTEM)
    runner.catch_up()
    call_command("verify_events", "--full", verbosity=0)
    svc.open_account(holder_name="Not yet projected", actor=SYSTEM)
    assert Client().get("/healthz").status_code == 200  # 1 event behind is within the limits
    settings.HEALTH_MAX_LAG_EVENTS = 0
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {**CHECKS, "projections": False}
    assert b"balances" not in response.content  # no names, numbers or errors to the public
    with pytest.raises(CommandError, match=r"balances is 1 events .* run_projections"):
        call_command("healthcheck")
    call_command("healthcheck", "--max-lag-events", "5")
    assert "healthy" in capsys.readouterr().out
    runner.catch_up()
    assert Client().get("/healthz").status_code == 200


def test_a_parked_event_makes_it_unhealthy_until_it_is_retried(capsys):
    account = svc.open_account(holder_name="Parked", actor=SYSTEM)
    runner.catch_up()
    call_command("verify_events", "--full", verbosity=0)
    (opened,) = es.read_stream(account.id)
    parking = Parking("balances", attempts=1)
    parking.park(parking.failed(opened, "ValueError: cannot apply"))
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {**CHECKS, "dead_letters": False}
    with pytest.raises(CommandError, match=r"parked events: balances 1 .* --retry-parked"):
        call_command("healthcheck")
    call_command("run_projections", "balances", "--retry-parked", verbosity=0)
    assert Client().get("/healthz").status_code == 200
    call_command("healthcheck")
    assert "healthy" in capsys.readouterr().out


def test_an_event_of_a_type_this_release_does_not_know_makes_it_unhealthy():
    account = svc.open_account(holder_name="Newer", actor=SYSTEM)
    es.append(
        account.id,
        [es.NewEvent(event_type="MoneyTeleported", data={"to": "Mars"}, occurred_at=now())],
        stream_type=STREAM_TYPE,
        expected_version=1,
    )
    runner.catch_up()  # the projections skip it, and note it
    call_command("verify_events", "--full", verbosity=0)
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"] == {**CHECKS, "readable": False}
    with pytest.raises(
        CommandError,
        match=rf"1 account stream\(s\) .* {account.id} \(MoneyTeleported from version 2\)",
    ):
        call_command("healthcheck")


def test_a_wrong_personal_data_master_key_is_named_by_the_health_check(settings, capsys):
    from bank import privacy
    from bank.services import encryption

    svc.open_account(holder_name="Keyed", actor=SYSTEM)
    runner.catch_up()
    call_command("verify_events", "--full", verbosity=0)
    settings.PII_MASTER_KEYS = privacy.new_master_key_text("wrong")
    encryption.forget_cached_keys()
    try:
        response = Client().get("/healthz")
        assert response.status_code == 503
        assert response.json()["checks"] == {**CHECKS, "personal_data": False}
        with pytest.raises(CommandError) as failing:
            call_command("healthcheck")
        assert "personal_data FAILING" in capsys.readouterr().out
        text = str(failing.value)
        assert "1 data key(s) wrapped by master key 'dev' do not open" in text
        assert "PII_MASTER_KEYS does not hold" in text
    finally:
        encryption.forget_cached_keys()
