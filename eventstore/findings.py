"""What a verification pass reports: the first problem per stream, and the counts.

Every check writes into one :class:`VerificationReport`: the chain and seal walk over a
stream's events (``chain_check``), the snapshot checks (``snapshot_check``), the digest
comparison (``digests``) and the store-wide checks of a full pass (``verification``).
A recorded run (``runs``) stores its counts and its problems as text
(:meth:`VerificationReport.all_problems`), each stream's problem as a
:class:`StreamProblem`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


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
        """True when the pass found nothing wrong, nor carried anything found earlier."""
        return not (
            self.problems
            or self.snapshot_problems
            or self.digest_problems
            or self.store_problems
            or self.carried_problems
        )

    def all_problems(self) -> list[str]:
        """Every problem as one line of text, in the order a run records them."""
        return [
            *(str(p) for p in self.problems),
            *(str(p) for p in self.snapshot_problems),
            *(f"digest: {p}" for p in self.digest_problems),
            *self.store_problems,
            *(f"(found earlier, not re-checked) {p}" for p in self.carried_problems),
        ]
