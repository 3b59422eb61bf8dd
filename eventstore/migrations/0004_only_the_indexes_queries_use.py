"""The events table keeps only the indexes that a query of the product uses.

Every index is written inside the serialised append (the append lock is held for the
INSERT and the commit), so each one costs every writer. What stays, and the query it serves:

* ``events_pkey`` (position): ``read_all`` (``WHERE position > %s ORDER BY position
  LIMIT %s``: projections, the relay, rebuilds), ``head_position``, ``count_after``.
* ``events_event_id_key`` UNIQUE (event_id): the idempotent re-append (``_events_by_id``),
  and the contract that an event id is stored once.
* ``events_stream_version`` UNIQUE (stream_id, version): optimistic concurrency, and every
  stream read (the commands' load, ``read_stream``, ``stream_version``, ``stream_head``,
  verification).
* ``events_stream_occurred`` (stream_id, occurred_at): ``version_at`` (``?as_of=`` on the
  API, time travel in the audit view), a bounded lookup even on a long stream.
* ``events_type_position`` (event_type, position): the event admin's filter by type, newest
  first, which otherwise walks the whole order for a rare type.

Dropped, with what no longer needs them:

* ``events_commit`` (commit_id): ``read_all`` completes an append that fills a whole batch
  by reading on in position order (one append's positions are contiguous: appends are
  serialised), not by commit id.
* ``events_stype_position`` (stream_type, position): nothing filters on a stream type but
  the admin, and a column with a handful of values gains nothing from an index there.
* ``events_occurred`` (occurred_at): the admin's date filter reads the newest events first
  by position; no query of the product orders or filters all events by time.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("eventstore", "0003_stream_occurred_index"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="event", name="events_commit"),
        migrations.RemoveIndex(model_name="event", name="events_stype_position"),
        migrations.RemoveIndex(model_name="event", name="events_occurred"),
    ]
