"""Recompute hash chains and compare them with an externally kept digest.

A chain kept in the same database only proves something against people who cannot
rewrite it; ledger databases therefore hand the owner a digest to keep elsewhere. Ours
lists every stream's head (version and hash) and a root hash over all of them. Checking a
store against an older digest proves that each stream still extends what the digest saw:
a changed row, a truncated stream or a consistently recomputed chain all fail.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction

from .hashing import GENESIS_HASH, canonical_json, canonical_time, chain, content_text
from .store import _db_uuid, _py_json, _py_time, _py_uuid, head_position

DIGEST_FORMAT = "eventstore-digest/1"

_VERIFY_COLUMNS = (
    "stream_id, version, event_id, stream_type, event_type, schema_version, data, metadata, "
    "occurred_at, recorded_at, hash"
)


@dataclass(slots=True)
class StreamProblem:
    """The first thing wrong with one stream."""

    stream_id: uuid.UUID
    version: int
    reason: str

    def __str__(self) -> str:
        return f"stream {self.stream_id}: version {self.version}: {self.reason}"


@dataclass(slots=True)
class VerificationReport:
    """What a verification pass found."""

    streams: int = 0
    events: int = 0
    head_position: int = 0
    heads: dict[uuid.UUID, tuple[int, str]] = field(default_factory=dict)
    problems: list[StreamProblem] = field(default_factory=list)
    digest_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.digest_problems


class _StreamChecker:
    """Recomputes one stream's chain row by row."""

    def __init__(self, stream_id: uuid.UUID, expected: tuple[int, str] | None) -> None:
        self.stream_id = stream_id
        self.version = 0
        self.hash = GENESIS_HASH
        self.problem: StreamProblem | None = None
        self.expected = expected  # (version, hash) from a digest, if any
        self.expected_seen = expected is None

    def feed(self, row: Sequence[Any]) -> None:
        if self.problem is not None:
            return
        version = row[1]
        if version != self.version + 1:
            self.problem = StreamProblem(
                self.stream_id, self.version + 1, f"missing (next stored version is {version})"
            )
            return
        recomputed = chain(
            self.hash,
            content_text(
                event_id=_py_uuid(row[2]),
                stream_id=self.stream_id,
                stream_type=row[3],
                version=version,
                event_type=row[4],
                schema_version=row[5],
                data_json=canonical_json(_py_json(row[6])),
                metadata_json=canonical_json(_py_json(row[7])),
                occurred_at=_py_time(row[8]),
                recorded_text=canonical_time(_py_time(row[9])),
            ),
        )
        if recomputed != row[10]:
            self.problem = StreamProblem(
                self.stream_id,
                version,
                "stored content no longer matches its hash (changed after it was written)",
            )
            return
        self.version, self.hash = version, recomputed
        if self.expected is not None and version == self.expected[0]:
            self.expected_seen = True
            if recomputed != self.expected[1]:
                self.problem = StreamProblem(
                    self.stream_id,
                    version,
                    "the chain no longer extends the digest (history was rewritten)",
                )


def _rows(stream_id: uuid.UUID | None, chunk: int) -> Iterator[Sequence[Any]]:
    sql = f"SELECT {_VERIFY_COLUMNS} FROM events"
    params: list[Any] = []
    if stream_id is not None:
        sql += " WHERE stream_id = %s"
        params.append(_db_uuid(stream_id))
    sql += " ORDER BY stream_id, version"
    # A server-side cursor on PostgreSQL, so memory stays flat however big the store is.
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(chunk):
            yield from batch


def verify_all(
    *,
    digest: dict[str, Any] | None = None,
    stream_id: uuid.UUID | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 2000,
) -> VerificationReport:
    """Recompute every stream's hash chain (or one stream's) and check a digest.

    Args:
        digest: a digest written earlier by :func:`make_digest`; every stream it names
            must still extend it.
        stream_id: verify only this stream.
        progress: called with the number of events checked since the last call.
        chunk: rows fetched per round trip.

    Returns:
        A report with counts, every stream's head and the problems found.
    """
    report = VerificationReport(head_position=head_position())
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
    checker: _StreamChecker | None = None
    pending = 0

    def finish(done: _StreamChecker | None) -> None:
        if done is None:
            return
        report.streams += 1
        report.heads[done.stream_id] = (done.version, done.hash)
        if done.problem is not None:
            report.problems.append(done.problem)
        elif not done.expected_seen:
            report.problems.append(
                StreamProblem(
                    done.stream_id,
                    done.version + 1,
                    f"missing: the digest saw the stream at version {done.expected[0]}"  # type: ignore[index]
                    " (the stream was truncated)",
                )
            )

    for row in _rows(stream_id, chunk):
        row_stream = _py_uuid(row[0])
        if checker is None or checker.stream_id != row_stream:
            finish(checker)
            checker = _StreamChecker(row_stream, expected_heads.pop(row_stream, None))
        checker.feed(row)
        report.events += 1
        pending += 1
        if progress is not None and pending >= chunk:
            progress(pending)
            pending = 0
    finish(checker)
    if progress is not None and pending:
        progress(pending)
    if stream_id is None:
        for missing, (version, _) in expected_heads.items():
            report.problems.append(
                StreamProblem(
                    missing, 1, f"missing: the digest saw the stream at version {version}"
                )
            )
    report.problems.sort(key=lambda p: str(p.stream_id))
    return report


def verify_stream(stream_id: uuid.UUID) -> StreamProblem | None:
    """Recompute one stream's chain; return its first problem, or None when intact."""
    report = verify_all(stream_id=stream_id)
    return report.problems[0] if report.problems else None


def _root(streams: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(streams).encode("utf-8")).hexdigest()


def make_digest(report: VerificationReport) -> dict[str, Any]:
    """Return the digest of a verified store: every stream's head and a root over them.

    Raises:
        ValueError: the report found broken chains (a digest would vouch for them).
    """
    if report.problems:
        raise ValueError("the store has broken chains; a digest of it would vouch for them")
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


def check_digest(digest: dict[str, Any]) -> VerificationReport:
    """Verify the whole store against a digest kept elsewhere."""
    return verify_all(digest=digest)
