"""seed_demo's long account: a fresh demo shows snapshots in the admin (issue 17)."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command

import eventstore as es
from bank.domain import Account
from bank.management.commands.seed_demo import LONG_HOLDER, NAMESPACE

pytestmark = pytest.mark.django_db


def test_after_seed_demo_the_snapshots_list_shows_the_long_accounts_snapshots(client):
    out = io.StringIO()
    call_command("seed_demo", events=40, verbosity=1, stdout=out, stderr=io.StringIO())
    long_id = uuid.uuid5(NAMESPACE, LONG_HOLDER[0])
    interval = settings.SNAPSHOT_INTERVAL
    assert es.stream_version(long_id) == 2 * interval + 10
    assert f"the long account {long_id} has {2 * interval + 10} events and 2 snapshots" in (
        out.getvalue()
    )
    snapshot = es.load_snapshot(long_id, schema_version=Account.SNAPSHOT_SCHEMA_VERSION)
    assert snapshot is not None and snapshot.version == 2 * interval

    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    page = client.get("/admin/eventstore/snapshot/").content.decode()
    rows = re.findall(r'href="/admin/eventstore/snapshot/\d+/change/"', page)
    assert len(rows) == 2
    assert page.count(str(long_id)) >= 2
    assert es.verify_all().ok


def test_the_long_account_can_be_shortened_but_not_left_out():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--long-events must be at least 1"):
        call_command("seed_demo", events=30, long_events=0, verbosity=0)
    assert es.stream_version(uuid.uuid5(NAMESPACE, LONG_HOLDER[0])) == 0
