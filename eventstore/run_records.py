"""What verification runs leave behind, and what is read back from it.

Each run (``runs``) writes one ``VerificationRun`` (its counts, its problems, the root
over every stream's verified head) and, per stream it checked, one ``StreamVerification``
row: the version and hash verified through, the first version of the seal covering it,
when, and the first problem (chain or seal, and separately a snapshot's). A full run
replaces every stream's row; an incremental one updates the rows of the streams it
checked and keeps a snapshot problem found earlier (only new snapshots were checked).

Read back: :func:`last_run` for the health checks and evidence packs, :func:`recorded_root`
for the integrity panel, and :func:`stream_status`, which checks one stream from its
recorded head on for the audit page.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from .chain_check import StreamChecker, event_rows, walk_streams
from .digests import root_hash
from .epoch import signing_epoch
from .findings import StreamProblem, VerificationReport
from .hashing import GENESIS_HASH
from .signing import Keyring, keyring


def chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """Slices small enough for an ``IN (...)`` on every vendor (SQLite's variable limit).

    Args:
        items: the values to slice.
        size: the most values in one slice.
    """
    for start in range(0, len(items), size):
        yield items[start : start + size]


def record_streams(report: VerificationReport, when: datetime, *, full: bool) -> None:
    """Write each checked stream's verified head and problems (``StreamVerification``).

    Args:
        report: the run's report.
        when: when the run started.
        full: a full run's report: every stream's row is replaced.
    """
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
                for part in chunks(list(report.heads))
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


def recorded_root() -> str:
    """The root hash over every stream's verified head (what the integrity panel shows)."""
    from .models import StreamVerification

    streams = {
        str(stream): {"version": version, "hash": head}
        for stream, version, head in StreamVerification.objects.order_by("stream_id").values_list(
            "stream_id", "version", "hash"
        )
    }
    return root_hash(dict(sorted(streams.items())))


def last_run(*, full: bool | None = None) -> Any:
    """The newest recorded ``VerificationRun`` (of that kind), or None.

    Args:
        full: only full runs (True), only incremental ones (False), or either (None).
    """
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

    Args:
        stream_id: the stream to check.
        keys: the public keys to verify with (default: the configured ones).
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
    checkers = walk_streams(
        report,
        event_rows(stream_id, 2000, from_version=start[0] if start else 0),
        lambda s: StreamChecker(s, keys, signing_epoch(), start=start),
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


@dataclass(frozen=True, slots=True)
class RecordedStatus:
    """What the last recorded verification run found for one stream (no new check).

    Attributes:
        verified_version: through which version a run verified the stream.
        verified_at: when.
        problem: the chain's problem as recorded ("" when none), found at
            ``problem_version``.
        snapshot_problem: a stored snapshot's problem as recorded ("" when none).
    """

    verified_version: int
    verified_at: datetime
    problem: str
    problem_version: int | None
    snapshot_problem: str


def recorded_statuses(stream_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, RecordedStatus]:
    """The recorded verification status of many streams, in one query (a list page's).

    A stream no run has verified yet is missing from the answer. Unlike ``stream_status``
    this checks nothing new: it says what ``verify_events`` last recorded.
    """
    from .models import StreamVerification

    ids = list(stream_ids)
    if not ids:
        return {}
    return {
        row.stream_id: RecordedStatus(
            verified_version=row.version,
            verified_at=row.verified_at,
            problem=row.problem or "",
            problem_version=row.problem_version,
            snapshot_problem=row.snapshot_problem or "",
        )
        for row in StreamVerification.objects.filter(stream_id__in=ids)
    }
