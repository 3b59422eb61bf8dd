"""Verify the store: hash chains, the application's signatures, snapshots, external digests.

What is checked, per stream, in version order:

- the chain: each stored hash is ``sha256(previous hash, canonical content)`` (``hashing``);
- the seals: every signature verifies with its key id's public key over the stream's head
  at that event (``signing``), and every event at or after the signing epoch is covered
  by one (the stream's last event is signed, or belongs to the unsigned segment written
  before signing began);
- the snapshots: signed, anchored to the stored hash of the event at their version, and
  equal to the replay of the events up to it (a replay registered per stream type and
  state schema version with :func:`register_snapshot_replay`);
- against a digest kept elsewhere: each stream still extends the head the digest saw.

Runs are recorded (``VerificationRun``, and per stream ``StreamVerification``: the version
and hash verified, when, and the first problem), so the next run can check only what is
new: an incremental run re-reads only the streams that got events after the last run's
head position, from their verified head on, and only the snapshots written since. A full
run (``verify_events --full``) re-checks everything. Only public keys are needed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from .backends import backend
from .hashing import GENESIS_HASH, canonical_json, canonical_time, event_hash
from .reading import head_position, read_stream_data
from .records import EventData, SnapshotData
from .rows import py_json, py_time, py_uuid
from .signing import Keyring, UnknownKeyError, keyring, seal_message
from .snapshots import snapshot_problem

DIGEST_FORMAT = "eventstore-digest/1"
# Problems kept in one run's record (the count is always complete).
MAX_RECORDED_PROBLEMS = 1000

_VERIFY_COLUMNS = (
    "stream_id, version, event_id, stream_type, event_type, schema_version, data, metadata, "
    "occurred_at, recorded_at, hash, signature, key_id, position"
)

# (stream type, state schema version) -> replay(stream_id, base snapshot or None, events)
Replay = Callable[[uuid.UUID, SnapshotData | None, list[EventData]], dict[str, Any]]
_replays: dict[tuple[str, int], Replay] = {}


def register_snapshot_replay(stream_type: str, schema_version: int, replay: Replay) -> None:
    """Teach verification how to recompute a snapshot's state from events.

    ``replay(stream_id, base, events)`` returns the state after applying ``events`` (the
    stream's events after ``base``, or from version 1 when ``base`` is None), in the shape
    snapshots store. Snapshots of unregistered kinds are checked for signature and anchor
    only (the report counts them).
    """
    _replays[(stream_type, schema_version)] = replay


@dataclass(slots=True)
class StreamProblem:
    """The first thing wrong with one stream (``kind``: chain, seal or snapshot)."""

    stream_id: uuid.UUID
    version: int
    reason: str
    kind: str = "chain"

    def __str__(self) -> str:
        what = "snapshot at version" if self.kind == "snapshot" else "version"
        return f"stream {self.stream_id}: {what} {self.version}: {self.reason}"


@dataclass(slots=True)
class VerificationReport:
    """What a verification pass found."""

    full: bool = True
    streams: int = 0
    events: int = 0
    snapshots: int = 0
    unsigned_events: int = 0  # the unsigned segment (before the signing epoch)
    unsigned_snapshots: int = 0  # snapshots from before the epoch (never used by loads)
    snapshots_state_unchecked: int = 0  # no replay registered for their kind
    events_not_rechecked: int = 0  # an incremental run: verified by earlier runs
    streams_not_rechecked: int = 0
    head_position: int = 0
    snapshot_id_reached: int = 0
    heads: dict[uuid.UUID, tuple[int, str]] = field(default_factory=dict)
    seal_from: dict[uuid.UUID, int] = field(default_factory=dict)
    problems: list[StreamProblem] = field(default_factory=list)
    snapshot_problems: list[StreamProblem] = field(default_factory=list)
    digest_problems: list[str] = field(default_factory=list)
    store_problems: list[str] = field(default_factory=list)
    # Problems found by earlier runs that an incremental run did not re-check.
    carried_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.problems
            or self.snapshot_problems
            or self.digest_problems
            or self.store_problems
            or self.carried_problems
        )

    def all_problems(self) -> list[str]:
        return [
            *(str(p) for p in self.problems),
            *(str(p) for p in self.snapshot_problems),
            *(f"digest: {p}" for p in self.digest_problems),
            *self.store_problems,
            *(f"(found earlier, not re-checked) {p}" for p in self.carried_problems),
        ]


@dataclass(frozen=True, slots=True)
class Epoch:
    """Where signing began: events and snapshots below these were written unsigned."""

    events_from_position: int
    snapshots_from_id: int
    unsigned_events: int = 0
    problem: str | None = None


def signing_epoch() -> Epoch:
    """The store's signing epoch (1, 1 when none is recorded: everything must be signed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT events_from_position, snapshots_from_id, unsigned_events FROM signing_epoch "
            "ORDER BY id"
        )
        rows = cursor.fetchall()
    if not rows:
        return Epoch(1, 1)
    problem = None
    if len(rows) > 1:
        problem = (
            f"signing_epoch holds {len(rows)} rows where migration 0005 wrote one: someone "
            "with the owner's rights added rows (the strictest is used); find out who, as "
            'for a broken chain (README, "When verify_events fails")'
        )
    first = rows[0]
    return Epoch(min(first[0], *(r[0] for r in rows)), min(r[1] for r in rows), first[2], problem)


class _StreamChecker:
    """Recomputes one stream's chain and checks its seals, row by row."""

    def __init__(
        self,
        stream_id: uuid.UUID,
        keys: Keyring,
        epoch: Epoch,
        *,
        expected: tuple[int, str] | None = None,
        start: tuple[int, str, int] | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.keys = keys
        self.epoch = epoch
        self.version, self.hash = (start[0], start[1]) if start else (0, GENESIS_HASH)
        # The newest version covered by a seal (or by the unsigned segment), and the first
        # version of the append that sealed it (0: unsigned).
        self.sealed = 0
        self.seal_from = 0
        self.signed_seen = False
        self.position = -(2**63)
        if start is not None:  # the verified head's seal is checked on its row
            self.sealed = max(start[2] - 1, 0)
            self.signed_seen = start[2] > 0
        self.start = start  # an incremental check: (version, hash, seal_from) verified earlier
        self.problem: StreamProblem | None = None
        self.expected = expected  # (version, hash) from a digest, if any
        self.expected_seen = expected is None
        self.events = 0
        self.unsigned = 0

    def _fail(self, version: int, reason: str, kind: str = "chain") -> None:
        self.problem = StreamProblem(self.stream_id, version, reason, kind)

    def feed(self, row: Sequence[Any]) -> None:
        if self.problem is not None:
            return
        version = row[1]
        if row[13] <= self.position:
            self._fail(
                version,
                f"stored out of order (position {row[13]} after {self.position}): a row "
                "was inserted with a chosen position",
            )
            return
        self.position = row[13]
        if self.start is not None and version == self.start[0]:
            # The head an earlier run verified: still there, unchanged and sealed.
            self.start = None
            unchanged = row[10] == self.hash and self._sealed(row, version, row[10])
            if not unchanged and self.problem is None:
                self._fail(
                    version,
                    "the head verified by the last run changed since (or its record was "
                    "forged); run verify_events --full",
                )
            return
        self.events += 1
        if version != self.version + 1:
            self._fail(self.version + 1, f"missing (next stored version is {version})")
            return
        recomputed = event_hash(
            previous_hash=self.hash,
            event_id=py_uuid(row[2]),
            stream_id=self.stream_id,
            stream_type=row[3],
            version=version,
            event_type=row[4],
            schema_version=row[5],
            data_json=canonical_json(py_json(row[6])),
            metadata_json=canonical_json(py_json(row[7])),
            occurred_text=canonical_time(py_time(row[8])),
            recorded_text=canonical_time(py_time(row[9])),
        )
        if recomputed != row[10]:
            self._fail(
                version, "stored content no longer matches its hash (changed after it was written)"
            )
            return
        self.version, self.hash = version, recomputed
        if not self._sealed(row, version, recomputed) and self.problem is not None:
            return
        if self.expected is not None and version == self.expected[0]:
            self.expected_seen = True
            if recomputed != self.expected[1]:
                self._fail(
                    version, "the chain no longer extends the digest (history was rewritten)"
                )

    def _sealed(self, row: Sequence[Any], version: int, event_hash: str) -> bool:
        """Check the row's seal; True when the chain up to it is covered.

        An unsigned event is covered by the unsigned segment (below the signing epoch, and
        before the stream's first signed event), or by the next signature whose range
        starts right after the last covered version: the application signs the versions
        it appended, so an event someone else slipped in stays outside every range.
        """
        signature, key_id, position = row[11], row[12], row[13]
        if signature is None:
            if position < self.epoch.events_from_position and not self.signed_seen:
                self.unsigned += 1
                self.sealed = version
                return True
            return False  # covered only if a later signature's range includes it
        first = self.sealed + 1
        try:
            valid = self.keys.verify(
                key_id or "", signature, seal_message(self.stream_id, first, version, event_hash)
            )
        except UnknownKeyError as exc:
            self._fail(version, f"signed with {exc}", "seal")
            return False
        if not valid:
            appended_from = self._range_start(key_id or "", signature, version, event_hash)
            if appended_from is not None:
                self._fail(
                    first,
                    "not covered by the application's signature: appended by someone without "
                    f"the signing key (the application's append of versions {appended_from} "
                    f"to {version} came after it)",
                    "seal",
                )
            else:
                self._fail(
                    version,
                    f"its signature does not verify with the public key of {key_id!r} (signed "
                    "with another private key, or the events it seals were changed)",
                    "seal",
                )
            return False
        self.sealed, self.seal_from, self.signed_seen = version, first, True
        return True

    def _range_start(
        self, key_id: str, signature: str, version: int, event_hash: str
    ) -> int | None:
        """For a report: the first version of the range the signature does cover, if it is
        a shorter one than expected (events before it were slipped in)."""
        for first in range(version, max(self.sealed + 1, version - 1000), -1):
            message = seal_message(self.stream_id, first, version, event_hash)
            if self.keys.verify(key_id, signature, message):
                return first
        return None

    def finish(self) -> None:
        if self.problem is None and self.start is not None:
            self._fail(self.start[0], "the head verified by the last run is gone")
        if self.problem is None and not self.expected_seen:
            self._fail(
                self.version + 1,
                f"missing: the digest saw the stream at version {self.expected[0]}"  # type: ignore[index]
                " (the stream was truncated)",
            )
        if self.problem is None and self.sealed < self.version:
            self._fail(
                self.sealed + 1,
                "not covered by the application's signature (appended by someone without "
                "the signing key, or the end of its append was removed)",
                "seal",
            )


def _rows(stream_id: uuid.UUID | None, chunk: int, from_version: int = 0) -> Iterator[Any]:
    sql = f"SELECT {_VERIFY_COLUMNS} FROM events"
    params: list[Any] = []
    if stream_id is not None:
        sql += " WHERE stream_id = %s AND version >= %s"
        params += [backend().db_uuid(stream_id), from_version]
    sql += " ORDER BY stream_id, version"
    # A server-side cursor on PostgreSQL, so memory stays flat however big the store is.
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(chunk):
            yield from batch


def _walk(
    report: VerificationReport,
    rows: Iterator[Any],
    make_checker: Callable[[uuid.UUID], _StreamChecker],
    progress: Callable[[int], None] | None,
    chunk: int,
) -> list[_StreamChecker]:
    """Feed rows (ordered by stream, version) to one checker per stream; return them."""
    done: list[_StreamChecker] = []
    checker: _StreamChecker | None = None
    pending = 0
    for row in rows:
        row_stream = py_uuid(row[0])
        if checker is None or checker.stream_id != row_stream:
            if checker is not None:
                checker.finish()
                done.append(checker)
            checker = make_checker(row_stream)
        checker.feed(row)
        pending += 1
        if progress is not None and pending >= chunk:
            progress(pending)
            pending = 0
    if checker is not None:
        checker.finish()
        done.append(checker)
    if progress is not None and pending:
        progress(pending)
    for c in done:
        report.streams += 1
        report.events += c.events
        report.unsigned_events += c.unsigned
        report.heads[c.stream_id] = (c.version, c.hash)
        report.seal_from[c.stream_id] = c.seal_from
        if c.problem is not None:
            report.problems.append(c.problem)
    return done


def verify_all(
    *,
    digest: dict[str, Any] | None = None,
    stream_id: uuid.UUID | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 2000,
    keys: Keyring | None = None,
) -> VerificationReport:
    """Check every stream (or one) in full: chains, seals, snapshots, and a digest.

    Records nothing (see :func:`run_verification`).

    Args:
        digest: a digest written earlier by :func:`make_digest`; every stream it names
            must still extend it.
        stream_id: verify only this stream.
        progress: called with the number of events checked since the last call.
        chunk: rows fetched per round trip.
        keys: the public keys to verify with (default: the configured ones).

    Returns:
        A report with counts, every stream's head and the problems found.
    """
    keys = keys or keyring()
    epoch = signing_epoch()
    report = VerificationReport(head_position=head_position())
    if epoch.problem:
        report.store_problems.append(epoch.problem)
    if stream_id is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM events WHERE position < %s", [epoch.events_from_position]
            )
            below = cursor.fetchone()[0]
        if below != epoch.unsigned_events:
            report.store_problems.append(
                f"{below} events lie below the signing epoch (position "
                f"{epoch.events_from_position}) where migration 0005 counted "
                f"{epoch.unsigned_events}: rows were slipped into (or removed from) the "
                "unsigned segment; compare with a backup and a digest from before"
            )
    expected_heads: dict[uuid.UUID, tuple[int, str]] = {}
    if digest is not None:
        report.digest_problems.extend(_digest_shape_problems(digest))
        expected_heads = {
            uuid.UUID(key): (value["version"], value["hash"])
            for key, value in digest.get("streams", {}).items()
        }
        if digest.get("head_position", 0) > report.head_position:
            report.digest_problems.append(
                f"the store's head position {report.head_position} is below the digest's "
                f"{digest['head_position']} (events were removed)"
            )
    _walk(
        report,
        _rows(stream_id, chunk),
        lambda s: _StreamChecker(s, keys, epoch, expected=expected_heads.pop(s, None)),
        progress,
        chunk,
    )
    if stream_id is None:
        for missing, (version, _) in expected_heads.items():
            report.problems.append(
                StreamProblem(
                    missing, 1, f"missing: the digest saw the stream at version {version}"
                )
            )
    _check_snapshots(report, keys, epoch, stream_id=stream_id)
    report.problems.sort(key=lambda p: str(p.stream_id))
    return report


def verify_stream(stream_id: uuid.UUID) -> StreamProblem | None:
    """Check one stream in full (chain, seals, snapshots); its first problem, or None."""
    report = verify_all(stream_id=stream_id)
    problems = report.problems + report.snapshot_problems
    return problems[0] if problems else None


# --- snapshots ---------------------------------------------------------------------------

_SNAPSHOT_COLUMNS = (
    "id, stream_id, stream_type, version, schema_version, state, anchor_hash, signature, key_id"
)


def _check_snapshots(
    report: VerificationReport,
    keys: Keyring,
    epoch: Epoch,
    *,
    stream_id: uuid.UUID | None = None,
    after_id: int = 0,
) -> None:
    """Check snapshots (all, one stream's, or those with an id above ``after_id``)."""
    sql = f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots WHERE id > %s"
    params: list[Any] = [after_id]
    if stream_id is not None:
        sql += " AND stream_id = %s"
        params.append(backend().db_uuid(stream_id))
    sql += " ORDER BY stream_id, version"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    flagged: set[uuid.UUID] = set()
    base: SnapshotData | None = None
    base_stream: uuid.UUID | None = None
    for row in rows:
        snap_id, stream, stream_type, version, schema_version = row[:5]
        stream = py_uuid(stream)
        state = py_json(row[5])
        report.snapshots += 1
        report.snapshot_id_reached = max(report.snapshot_id_reached, snap_id)
        if stream != base_stream:
            base_stream = stream
            base = _verified_base(stream, schema_version, version, after_id) if after_id else None
        if row[7] is None and snap_id < epoch.snapshots_from_id:
            report.unsigned_snapshots += 1  # from before signing: loads never use it
            continue
        if base is not None and base.schema_version != schema_version:
            base = None
        data = read_stream_data(
            stream, after_version=base.version if base else 0, up_to_version=version
        )
        event_hash = data.head.hash if data.head and data.head.version == version else None
        problem = snapshot_problem(stream, version, schema_version, state, event_hash, *row[6:9])
        if problem is None:
            replay = _replays.get((stream_type, schema_version))
            if replay is None:
                report.snapshots_state_unchecked += 1
            elif canonical_json(replay(stream, base, data.events)) != canonical_json(state):
                problem = "its state is not the replay of the events up to its version"
        if problem is not None:
            if stream not in flagged:  # the first bad snapshot of each stream
                flagged.add(stream)
                report.snapshot_problems.append(
                    StreamProblem(stream, version, problem, kind="snapshot")
                )
            continue
        base = SnapshotData(version, schema_version, state)


def _verified_base(
    stream_id: uuid.UUID, schema_version: int, below: int, up_to_id: int
) -> SnapshotData | None:
    """The newest snapshot below ``below`` that an earlier run checked and still checks out."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.version, s.schema_version, s.state, "
            "(SELECT hash FROM events e WHERE e.stream_id = s.stream_id "
            "AND e.version = s.version), s.anchor_hash, s.signature, s.key_id "
            "FROM snapshots s WHERE s.stream_id = %s AND s.schema_version = %s "
            "AND s.version < %s AND s.id <= %s AND s.signature IS NOT NULL "
            "ORDER BY s.version DESC LIMIT 1",
            [backend().db_uuid(stream_id), schema_version, below, up_to_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    state = py_json(row[2])
    if snapshot_problem(stream_id, row[0], row[1], state, *row[3:7]) is not None:
        return None
    return SnapshotData(row[0], row[1], state)


# --- recorded runs -------------------------------------------------------------------------


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
    """
    with _one_run_at_a_time():
        return _run_verification(
            full=full, digest=digest, progress=progress, chunk=chunk, keys=keys
        )


# The advisory lock one verify_events run holds on PostgreSQL ("es" + "verify").
VERIFY_LOCK_KEY = 0x6573_7665_7269_6679


class VerificationRunning(RuntimeError):
    """Another verify_events run holds the lock."""


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
    _record_streams(report, started, full=full)
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
        for part in _chunks(touched)
        for row in StreamVerification.objects.filter(stream_id__in=part).only(
            "stream_id", "version", "hash", "seal_from", "problem"
        )
    }
    for stream in touched:
        row = known.get(stream)
        if row is not None and row.problem:
            continue  # broken already: carried; --full re-checks it
        start = (row.version, row.hash, row.seal_from) if row is not None and row.version else None
        _walk(
            report,
            _rows(stream, chunk, from_version=start[0] if start else 0),
            functools.partial(_StreamChecker, keys=keys, epoch=epoch, start=start),
            progress,
            chunk,
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM events WHERE position <= %s", [last.head_position])
        report.events_not_rechecked = cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(DISTINCT stream_id) FROM events")
        report.streams_not_rechecked = cursor.fetchone()[0] - report.streams
    _check_snapshots(report, keys, epoch, after_id=last.snapshot_id_reached)
    return report


def _record_streams(report: VerificationReport, when: datetime, *, full: bool) -> None:
    from .models import StreamVerification

    problems = {p.stream_id: p for p in report.problems}
    snapshot_problems = {p.stream_id: p for p in report.snapshot_problems}
    with transaction.atomic():
        carried: dict[uuid.UUID, str] = {}
        if full:
            StreamVerification.objects.all().delete()
        else:
            # A snapshot problem found earlier stays until a full run (only new snapshots
            # were checked).
            carried = {
                stream: text
                for part in _chunks(list(report.heads))
                for stream, text in StreamVerification.objects.filter(stream_id__in=part)
                .exclude(snapshot_problem="")
                .values_list("stream_id", "snapshot_problem")
            }
        rows = []
        for stream, (version, head) in report.heads.items():
            problem = problems.get(stream)
            snapshot = snapshot_problems.get(stream)
            snapshot_text = f"version {snapshot.version}: {snapshot.reason}" if snapshot else ""
            snapshot_text = snapshot_text or carried.get(stream, "")
            rows.append(
                StreamVerification(
                    stream_id=stream,
                    # Verified through the last event before the problem.
                    version=version,
                    hash=head,
                    seal_from=report.seal_from.get(stream, 0),
                    verified_at=when,
                    problem_version=problem.version if problem else None,
                    problem=problem.reason if problem else "",
                    snapshot_problem=snapshot_text,
                )
            )
        for stream, snapshot in snapshot_problems.items():
            if stream not in report.heads:  # a snapshot of a stream with no new events
                StreamVerification.objects.update_or_create(
                    stream_id=stream,
                    defaults={
                        "snapshot_problem": f"version {snapshot.version}: {snapshot.reason}"
                    },
                    create_defaults={
                        "version": 0,
                        "hash": GENESIS_HASH,
                        "verified_at": when,
                        "snapshot_problem": f"version {snapshot.version}: {snapshot.reason}",
                    },
                )
        StreamVerification.objects.bulk_create(
            rows,
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["stream_id"],
            update_fields=[
                "version",
                "hash",
                "seal_from",
                "verified_at",
                "problem_version",
                "problem",
                "snapshot_problem",
            ],
        )


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """Slices small enough for an ``IN (...)`` on every vendor (SQLite's variable limit)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def recorded_root() -> str:
    """The root hash over every stream's verified head (what the integrity panel shows)."""
    from .models import StreamVerification

    streams = {
        str(stream): {"version": version, "hash": head}
        for stream, version, head in StreamVerification.objects.order_by("stream_id").values_list(
            "stream_id", "version", "hash"
        )
    }
    return _root(dict(sorted(streams.items())))


def last_run(*, full: bool | None = None) -> Any:
    """The newest recorded ``VerificationRun`` (of that kind), or None."""
    from .models import VerificationRun

    runs = VerificationRun.objects.order_by("-id")
    if full is not None:
        runs = runs.filter(full=full)
    return runs.first()


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """One stream's integrity as the audit page shows it."""

    verified_version: int  # through which version a recorded run verified it (0: never)
    verified_at: datetime | None
    checked_version: int  # through which version it is verified now (recorded + checked here)
    problem: StreamProblem | None
    snapshot_problem: str


def stream_status(stream_id: uuid.UUID, *, keys: Keyring | None = None) -> StreamStatus:
    """Check one stream from its recorded verified head on (the whole stream if none).

    Costs what is new since the last run, not the stream's length. A problem a recorded
    run found is returned as found (until a full run clears it).
    """
    from .models import StreamVerification

    recorded = StreamVerification.objects.filter(stream_id=stream_id).first()
    if recorded is not None and recorded.problem:
        problem = StreamProblem(stream_id, recorded.problem_version or 1, recorded.problem)
        return StreamStatus(
            recorded.version,
            recorded.verified_at,
            recorded.version,
            problem,
            recorded.snapshot_problem,
        )
    keys = keys or keyring()
    report = VerificationReport(full=False)
    start = (recorded.version, recorded.hash, recorded.seal_from) if recorded is not None else None
    checkers = _walk(
        report,
        _rows(stream_id, 2000, from_version=start[0] if start else 0),
        lambda s: _StreamChecker(s, keys, signing_epoch(), start=start),
        None,
        2000,
    )
    checked = checkers[0] if checkers else None
    return StreamStatus(
        verified_version=recorded.version if recorded else 0,
        verified_at=recorded.verified_at if recorded else None,
        checked_version=checked.version if checked else 0,
        problem=checked.problem if checked else None,
        snapshot_problem=recorded.snapshot_problem if recorded else "",
    )


# --- digests -----------------------------------------------------------------------------


def _root(streams: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(streams).encode("utf-8")).hexdigest()


def make_digest(report: VerificationReport) -> dict[str, Any]:
    """Return the digest of a verified store: every stream's head and a root over them.

    Raises:
        ValueError: the report found problems (a digest would vouch for them), or it is
            an incremental run's (which does not see every stream).
    """
    if not report.ok:
        raise ValueError("the store has problems; a digest of it would vouch for them")
    if not report.full:
        raise ValueError("a digest needs a full verification")
    streams = {
        str(stream): {"version": version, "hash": head}
        for stream, (version, head) in sorted(report.heads.items(), key=lambda kv: str(kv[0]))
    }
    return {
        "format": DIGEST_FORMAT,
        "created_at": canonical_time(datetime.now(UTC)),
        "head_position": report.head_position,
        "streams": streams,
        "root": _root(streams),
    }


def _digest_shape_problems(digest: dict[str, Any]) -> list[str]:
    if digest.get("format") != DIGEST_FORMAT:
        return [f"not a digest of this store's format ({DIGEST_FORMAT})"]
    if _root(digest.get("streams", {})) != digest.get("root"):
        return ["the digest's root does not match its streams (the digest file was edited)"]
    return []


# --- operations ----------------------------------------------------------------------------

# The immutability triggers each append-only table must have (migrations 0002 and 0005).
IMMUTABLE_TABLES = ("events", "snapshots", "signing_epoch")


def trigger_problems() -> list[str]:
    """What is missing or switched off among the immutability triggers (empty: all there)."""
    found, suffixes, problems = backend().immutability_triggers(IMMUTABLE_TABLES)
    for table in IMMUTABLE_TABLES:
        for suffix in suffixes:
            name = f"{table}_{suffix}"
            state = found.get((table, name))
            if state is None:
                problems.append(f"trigger {name} on {table} is missing")
            elif state in ("D", b"D"):
                problems.append(f"trigger {name} on {table} is disabled")
            elif state == "no-op":
                problems.append(f"trigger {name} on {table} no longer refuses anything")
            elif state not in ("A", b"A"):
                problems.append(
                    f"trigger {name} on {table} is not ENABLE ALWAYS (a replica-mode session "
                    "would bypass it)"
                )
    return problems


def integrity_problems(max_age_hours: float) -> list[str]:
    """Why the store's integrity cannot be vouched for now (empty: it can).

    The immutability triggers are all in place and enabled; the newest verification run
    found nothing wrong; a full run succeeded within ``max_age_hours``.
    """
    problems = trigger_problems()
    if problems:
        problems[-1] += (
            "; reinstall them as the tables' owner (the SQL of eventstore migrations 0002 and "
            "0005), find out who removed them, and run verify_events --full"
        )
    newest = last_run()
    if newest is not None and not newest.ok:
        problems.append(
            f"the last verification ({newest.finished_at:%Y-%m-%d %H:%M} UTC) found "
            f"{len(newest.problems)} problem(s), e.g. "
            f'{newest.problems[0] if newest.problems else "?"}; see README, "When '
            'verify_events fails"'
        )
    full = last_run(full=True)
    if full is None:
        problems.append("no full verification has run: run python manage.py verify_events --full")
    elif not full.ok and (newest is None or newest.ok):
        problems.append(
            f"the last full verification ({full.finished_at:%Y-%m-%d %H:%M} UTC) found "
            f'{len(full.problems)} problem(s); see README, "When verify_events fails"'
        )
    else:
        age = (timezone.now() - full.finished_at).total_seconds() / 3600
        if age > max_age_hours:
            problems.append(
                f"the last full verification ran {age:.1f} h ago (limit {max_age_hours:g} h): "
                "schedule python manage.py verify_events --full daily"
            )
    return problems
