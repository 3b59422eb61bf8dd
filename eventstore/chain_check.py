"""Check one stream's hash chain and seals, row by row, in version order.

A :class:`StreamChecker` is fed a stream's event rows and keeps the first problem:

- the chain: each stored hash is ``sha256(previous hash, canonical content)`` (``hashing``),
  the versions have no gap, and the global positions rise with them;
- the seals: every signature verifies with its key id's public key over the stream's head
  at that event (``signing``), and every event at or after the signing epoch is covered
  by one (the stream's last event is signed, or belongs to the unsigned segment written
  before signing began: ``epoch``);
- a digest's head, when one is given: the stream still extends it.

An incremental check starts at the head an earlier run verified (its version, hash and
the first version of its seal) instead of at version 1. :func:`event_rows` streams the
rows from the database and :func:`walk_streams` feeds them, one checker per stream, into
a :class:`~eventstore.findings.VerificationReport`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django.db import connection, transaction

from .backends import backend
from .epoch import Epoch
from .findings import StreamProblem, VerificationReport
from .hashing import GENESIS_HASH, canonical_json, canonical_time, event_hash
from .rows import py_json, py_time, py_uuid
from .signing import Keyring, UnknownKeyError, seal_message

_VERIFY_COLUMNS = (
    "stream_id, version, event_id, stream_type, event_type, schema_version, data, metadata, "
    "occurred_at, recorded_at, hash, signature, key_id, position"
)


class StreamChecker:
    """Recomputes one stream's chain and checks its seals, row by row.

    Args:
        stream_id: the stream whose rows are fed.
        keys: the public keys to verify seals with.
        epoch: where signing began (the unsigned segment lies below it).
        expected: ``(version, hash)`` a digest saw; the stream must still extend it.
        start: ``(version, hash, seal_from)`` of the head an earlier run verified; the
            rows fed then start at that version (None: from version 1).
    """

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
        """Check the stream's next row (columns as :func:`event_rows` selects them).

        Args:
            row: the next event row, in version order; ignored after the first problem.
        """
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
        """Check what only the end of the stream shows: a truncation, an unsealed tail."""
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


def event_rows(stream_id: uuid.UUID | None, chunk: int, from_version: int = 0) -> Iterator[Any]:
    """Yield event rows ordered by stream and version, for :meth:`StreamChecker.feed`.

    Args:
        stream_id: only this stream's rows (None: every stream's).
        chunk: rows fetched per round trip.
        from_version: with ``stream_id``, the first version to yield.
    """
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


def walk_streams(
    report: VerificationReport,
    rows: Iterator[Any],
    make_checker: Callable[[uuid.UUID], StreamChecker],
    progress: Callable[[int], None] | None,
    chunk: int,
) -> list[StreamChecker]:
    """Feed rows (ordered by stream, version) to one checker per stream; return them.

    Each stream's counts, head and first problem are added to ``report``.

    Args:
        report: the report to add to.
        rows: event rows, as :func:`event_rows` yields them.
        make_checker: builds the checker for a stream.
        progress: called with the number of rows checked since the last call.
        chunk: how many rows between two ``progress`` calls.
    """
    done: list[StreamChecker] = []
    checker: StreamChecker | None = None
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
