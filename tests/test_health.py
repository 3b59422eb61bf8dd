"""/healthz and manage.py healthcheck: database, migrations, read-model lag."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from bank.services import Actor
from bank.services import accounts as svc
from projections import runner

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")


CHECKS = {"database": True, "migrations": True, "projections": True, "integrity": True}


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
