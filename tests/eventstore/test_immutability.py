"""Events and snapshots cannot be changed through the ORM nor through raw SQL."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, connection, transaction

import eventstore as es
from eventstore.models import Event, Snapshot
from tests.support import new_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored():
    stream = uuid.uuid4()
    es.append(
        stream, [new_event("A", n=1), new_event("B", n=2)], stream_type="t", expected_version=0
    )
    es.save_snapshot(stream, stream_type="t", version=2, schema_version=1, state={"n": 2})
    return stream


ORM_ATTEMPTS = {
    "save existing": lambda m: (setattr(obj := m.objects.first(), "version", 99), obj.save()),
    "save new": lambda m: m(version=1).save(),
    "instance delete": lambda m: m.objects.first().delete(),
    "queryset update": lambda m: m.objects.all().update(version=99),
    "queryset delete": lambda m: m.objects.all().delete(),
    "bulk_update": lambda m: m.objects.bulk_update(list(m.objects.all()), ["version"]),
    "bulk_create upsert": lambda m: m.objects.bulk_create(
        [m(version=1)],
        update_conflicts=True,
        unique_fields=["stream_id", "version"],
        update_fields=["version"],
    ),
    "create": lambda m: m.objects.create(version=1),
    "update_or_create": lambda m: m.objects.update_or_create(version=1, defaults={"version": 2}),
}


@pytest.mark.parametrize("model", [Event, Snapshot], ids=["events", "snapshots"])
@pytest.mark.parametrize("attempt", list(ORM_ATTEMPTS), ids=list(ORM_ATTEMPTS))
def test_the_orm_refuses_every_change(stored, model, attempt):
    before = sorted((o.pk, o.version) for o in model.objects.all())
    with pytest.raises(es.ImmutableRecordError) as caught:
        ORM_ATTEMPTS[attempt](model)
    assert model.__name__ in str(caught.value)
    assert sorted((o.pk, o.version) for o in model.objects.all()) == before


RAW_ATTEMPTS = {
    "update": "UPDATE {table} SET version = version + 100",
    "update one column": "UPDATE {table} SET stream_type = 'x'",
    "delete where": "DELETE FROM {table} WHERE version >= 1",
    "delete all": "DELETE FROM {table}",
}


@pytest.mark.parametrize("table", ["events", "snapshots"])
@pytest.mark.parametrize("attempt", list(RAW_ATTEMPTS), ids=list(RAW_ATTEMPTS))
def test_the_database_refuses_raw_update_and_delete(stored, table, attempt):
    count = _count(table)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(RAW_ATTEMPTS[attempt].format(table=table))
    assert _count(table) == count


@pytest.mark.postgres
@pytest.mark.parametrize("table", ["events", "snapshots"])
def test_postgres_refuses_truncate_even_when_the_session_role_skips_triggers(stored, table):
    count = _count(table)
    for setup in ("", "SET LOCAL session_replication_role = replica"):
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                if setup:
                    cursor.execute(setup)
                cursor.execute(f"TRUNCATE {table} CASCADE")
    assert _count(table) == count


@pytest.mark.postgres
def test_postgres_refuses_update_even_when_the_session_role_skips_triggers(stored):
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE events SET version = version + 100")


def _count(table):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
class TestTransactionalFlush:
    """Django flushes tables after transactional tests; the triggers must survive that."""

    def test_a_transactional_test_stores_events(self):
        stream = uuid.uuid4()
        es.append(stream, [new_event()], stream_type="t", expected_version=0)
        assert es.stream_version(stream) == 1

    def test_after_the_flush_the_tables_are_empty_and_still_refuse_changes(self):
        assert Event.objects.count() == 0
        stream = uuid.uuid4()
        es.append(stream, [new_event()], stream_type="t", expected_version=0)
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM events")
        assert Event.objects.count() == 1
