"""The events table keeps only the indexes that a query of the product uses.

Every index is written inside the serialised append (the append lock is held for the
INSERT and the commit), so each one costs every writer. What stays, and the queries it
serves:

* ``events_pkey`` (position): ``read_all`` (``WHERE position > %s ORDER BY position
  LIMIT %s``: projections, the relay, rebuilds), ``head_position``, ``count_after``.
* ``events_event_id_key`` UNIQUE (event_id): the idempotent re-append (``_events_by_id``),
  and the contract that an event id is stored once.
* ``events_stream_version`` UNIQUE (stream_id, version): optimistic concurrency, and every
  stream read (the commands' load, ``read_stream``, ``stream_version``, ``stream_head``,
  verification).
* ``events_stream_occurred`` (stream_id, occurred_at): ``version_at`` (``?as_of=`` on the
  API, time travel in the audit view), a bounded lookup even on a long stream.
* ``events_type_position`` (event_type, position), ``events_stype_position`` (stream_type,
  position): the event admin's filters by type and by stream type (their choices, a
  DISTINCT over the column, and the filtered page, newest first, and its count).
* ``events_occurred`` (occurred_at): the event admin's date filter ("today", "past 7
  days"...: the filtered page and its count, bounded by the range's rows).

Dropped: ``events_commit`` (commit_id). ``read_all`` completes an append that fills a whole
batch by reading on in position order (one append's positions are contiguous: appends are
serialised), not by commit id, and nothing else looks rows up by commit id.

Measured on the issue-13 machine (a 50-row INSERT statement, 200 runs, median): 1.83 ms
without ``events_stype_position``, ``events_occurred`` and ``events_commit``, 1.94 ms with
all three. The admin's indexes cost an append little (kept); most of its time is the rows'
JSON and the commit.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("eventstore", "0003_stream_occurred_index"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="event", name="events_commit"),
    ]
