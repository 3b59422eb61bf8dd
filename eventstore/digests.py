"""Digests: every stream's head at a verified moment, kept elsewhere to compare with later.

A digest (``verify_events --digest-out``) records each stream's version and stored hash
after a full verification found nothing wrong, the store's head position, and a root hash
over the streams. Kept out of the database's reach, it lets a later full verification
(``verify_events --digest``) tell whether history was rewritten since: each stream it
names must still extend the head it saw (:class:`~eventstore.chain_check.StreamChecker`),
no stream may be gone, and the head position may not be lower. It catches truncation,
removed signatures, a moved epoch and a history forged consistently with the signing key
(README, "Threat model"). The same root over the recorded verified heads is what the
integrity panel shows (``run_records.recorded_root``).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from .findings import StreamProblem, VerificationReport
from .hashing import canonical_json, canonical_time

DIGEST_FORMAT = "eventstore-digest/1"


def root_hash(streams: dict[str, Any]) -> str:
    """The root hash over streams' heads.

    Args:
        streams: ``{stream id text: {"version": ..., "hash": ...}}``, as a digest holds them.
    """
    return hashlib.sha256(canonical_json(streams).encode("utf-8")).hexdigest()


def make_digest(report: VerificationReport) -> dict[str, Any]:
    """Return the digest of a verified store: every stream's head and a root over them.

    Args:
        report: a full verification's report that found nothing wrong.

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
        "root": root_hash(streams),
    }


def _digest_shape_problems(digest: dict[str, Any]) -> list[str]:
    if digest.get("format") != DIGEST_FORMAT:
        return [f"not a digest of this store's format ({DIGEST_FORMAT})"]
    if root_hash(digest.get("streams", {})) != digest.get("root"):
        return ["the digest's root does not match its streams (the digest file was edited)"]
    return []


def expected_heads(
    report: VerificationReport, digest: dict[str, Any]
) -> dict[uuid.UUID, tuple[int, str]]:
    """Return the heads a digest saw, per stream; add what is wrong with it to ``report``.

    Args:
        report: a full verification's report (its ``head_position`` already read).
        digest: a digest written earlier by :func:`make_digest`.
    """
    report.digest_problems.extend(_digest_shape_problems(digest))
    heads = {
        uuid.UUID(key): (value["version"], value["hash"])
        for key, value in digest.get("streams", {}).items()
    }
    if digest.get("head_position", 0) > report.head_position:
        report.digest_problems.append(
            f"the store's head position {report.head_position} is below the digest's "
            f"{digest['head_position']} (events were removed)"
        )
    return heads


def report_missing_streams(
    report: VerificationReport, heads: dict[uuid.UUID, tuple[int, str]]
) -> None:
    """Add a problem to ``report`` for each stream the digest saw and the store lacks.

    Args:
        report: the report to add to.
        heads: the digest's heads of the streams no row was found for.
    """
    for missing, (version, _) in heads.items():
        report.problems.append(
            StreamProblem(missing, 1, f"missing: the digest saw the stream at version {version}")
        )
