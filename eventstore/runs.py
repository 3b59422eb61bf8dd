"""Recorded verification runs: full or incremental, one at a time.

Runs are recorded (``VerificationRun``, and per stream ``StreamVerification``: the version
and hash verified, when, and the first problem), so the next run can check only what is
new: an incremental run re-reads only the streams that got events after the last run's
head position, from their verified head on, and only the snapshots written since. A full
run (``verify_events --full``) re-checks everything. Only public keys are needed.

What a run writes, and what is read back from it, is in ``run_records``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connection
from django.utils import timezone

from .backends import backend
from .chain_check import StreamChecker, event_rows, walk_streams
from .epoch import signing_epoch
from .findings import VerificationReport
from .reading import head_position
from .rows import py_uuid
from .run_records import chunks, record_streams, recorded_root
from .signing import Keyring, keyring
from .snapshot_check import check_snapshots
from .verification import verify_all

# Problems kept in one run's record (the count is always complete).
MAX_RECORDED_PROBLEMS = 1000

# The advisory lock one verify_events run holds on PostgreSQL ("es" + "verify").
VERIFY_LOCK_KEY = 0x6573_7665_7269_6679


class VerificationRunning(RuntimeError):
    """Another verify_events run holds the lock."""


def run_verification(
    *,
    full: bool,
    digest: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 2000,
    keys: Keyring | None = None,
) -> tuple[VerificationReport, Any]:
    """Verify the store and record the run; return the report and the ``VerificationRun``.

    A full run checks everything. An incremental one checks the streams that got events
    since the last run (from each one's verified head on) and the snapshots written since;
    with no earlier run it is a full one. Problems found earlier and not re-checked are
    carried into the new run's record until a full run finds their stream intact.

    Args:
        full: re-check everything rather than what is new since the last run.
        digest: a digest written earlier by :func:`~eventstore.digests.make_digest`; the
            run is then a full one, and every stream the digest names must still extend it.
        progress: called with the number of events checked since the last call.
        chunk: rows fetched per round trip.
        keys: the public keys to verify with (default: the configured ones).

    Raises:
        VerificationRunning: another run holds the verification lock.
    """
    with _one_run_at_a_time():
        return _run_verification(
            full=full, digest=digest, progress=progress, chunk=chunk, keys=keys
        )


@contextlib.contextmanager
def _one_run_at_a_time() -> Iterator[None]:
    """Runs never overlap: one that finishes after a longer one started later would record
    an older view of the store over it (on PostgreSQL an advisory lock held by the session;
    SQLite serialises writers, and runs there are short)."""
    db = backend()
    if not db.try_session_lock(VERIFY_LOCK_KEY):
        raise VerificationRunning(
            "another verify_events is running (it holds the verification lock); wait for "
            "it to finish, or find it with pg_locks if it should not be running"
        )
    try:
        yield
    finally:
        db.session_unlock(VERIFY_LOCK_KEY)


def _run_verification(
    *,
    full: bool,
    digest: dict[str, Any] | None,
    progress: Callable[[int], None] | None,
    chunk: int,
    keys: Keyring | None,
) -> tuple[VerificationReport, Any]:
    from .models import StreamVerification, VerificationRun

    started = timezone.now()
    keys = keys or keyring()
    last = VerificationRun.objects.order_by("-id").first()
    if last is None or digest is not None:
        full = True
    if full:
        report = verify_all(digest=digest, progress=progress, chunk=chunk, keys=keys)
        report.full = True
    else:
        report = _verify_since(last, keys, progress, chunk)
    record_streams(report, started, full=full)
    flagged = StreamVerification.objects.exclude(problem="", snapshot_problem="")
    found_now = {p.stream_id for p in report.problems} | {
        p.stream_id for p in report.snapshot_problems
    }
    for row in flagged.order_by("stream_id")[:MAX_RECORDED_PROBLEMS]:
        if row.stream_id in found_now:
            continue
        if row.problem:
            report.carried_problems.append(
                f"stream {row.stream_id}: version {row.problem_version}: {row.problem}"
            )
        if row.snapshot_problem:
            report.carried_problems.append(
                f"stream {row.stream_id}: snapshot at {row.snapshot_problem}"
            )
    run = VerificationRun.objects.create(
        started_at=started,
        finished_at=timezone.now(),
        full=report.full,
        ok=report.ok,
        streams=report.streams,
        events=report.events,
        snapshots=report.snapshots,
        events_not_rechecked=report.events_not_rechecked,
        head_position=report.head_position,
        snapshot_id_reached=max(
            report.snapshot_id_reached, 0 if full or last is None else last.snapshot_id_reached
        ),
        root=recorded_root(),
        problems=report.all_problems()[:MAX_RECORDED_PROBLEMS],
    )
    return report, run


def _verify_since(
    last: Any, keys: Keyring, progress: Callable[[int], None] | None, chunk: int
) -> VerificationReport:
    """Check what is new since the ``last`` run: streams with later events, new snapshots."""
    from .models import StreamVerification

    epoch = signing_epoch()
    report = VerificationReport(full=False, head_position=head_position())
    if epoch.problem:
        report.store_problems.append(epoch.problem)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT stream_id FROM events WHERE position > %s", [last.head_position]
        )
        touched = sorted((py_uuid(r[0]) for r in cursor.fetchall()), key=str)
    known = {
        row.stream_id: row
        for part in chunks(touched)
        for row in StreamVerification.objects.filter(stream_id__in=part).only(
            "stream_id", "version", "hash", "seal_from", "problem"
        )
    }
    for stream in touched:
        row = known.get(stream)
        if row is not None and row.problem:
            continue  # broken already: carried; --full re-checks it
        start = (row.version, row.hash, row.seal_from) if row is not None and row.version else None
        walk_streams(
            report,
            event_rows(stream, chunk, from_version=start[0] if start else 0),
            functools.partial(StreamChecker, keys=keys, epoch=epoch, start=start),
            progress,
            chunk,
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM events WHERE position <= %s", [last.head_position])
        report.events_not_rechecked = cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(DISTINCT stream_id) FROM events")
        report.streams_not_rechecked = cursor.fetchone()[0] - report.streams
    check_snapshots(report, keys, epoch, after_id=last.snapshot_id_reached)
    return report
