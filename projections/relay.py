"""The event bus relay: publish every stored event to NATS JetStream, in global order.

The event store's global order is the outbox. The relay follows it like a projection: it
reads the events after its checkpoint, publishes them to JetStream (pipelined: a whole batch
is sent before the acknowledgements are awaited; one connection keeps them in order), and
moves its checkpoint only after JetStream acknowledged every one of them. Each message has
the event id as ``Nats-Msg-Id``, so JetStream's duplicate window drops what a restarted relay
sends again: consumers see each event once. The ``traceparent`` of the command that wrote
the event travels in the headers.

At start the relay checks that its stream's subjects cover every subject it publishes to
(the accounts' events, reversals included, and the maker-checker requests'), and that the server accepts the stream (created, or updated to these
subjects); either refusal is a :class:`RelayConfigError`, which waiting does not fix. An
event the broker refuses (its subject outside the stream's, a message over the server's
``max_payload``, a refusal by JetStream) is counted against it, and parked once it has
failed ``attempts`` times; the events of its stream after it are held back and parked
behind it, so that consumers never see a stream's versions out of order, except behind an
event JetStream refused only after the rest of the pipelined batch had gone. Relaying them
later (``relay_events --retry-parked``) publishes them in position order.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

import eventstore as es
from bank.domain import EVENT_TYPES, STREAM_TYPE
from bank.domain.approval import APPROVAL_EVENT_TYPES, APPROVAL_STREAM_TYPE

from .follower import DEFAULT_ATTEMPTS, Failure, Parking, Retried, describe
from .models import Checkpoint, DeadLetter
from .telemetry import links as trace_links
from .telemetry import publish_lag, tracer

log = logging.getLogger("projections.relay")


@dataclass(frozen=True, slots=True)
class BusConfig:
    url: str
    stream: str
    subjects: list[str]
    subject_prefix: str
    duplicate_window: float
    replicas: int

    @classmethod
    def from_settings(cls, **overrides: Any) -> BusConfig:
        values = {
            "url": settings.NATS_URL,
            "stream": settings.NATS_STREAM,
            "subjects": list(settings.NATS_SUBJECTS),
            "subject_prefix": settings.NATS_SUBJECT_PREFIX,
            "duplicate_window": float(settings.NATS_DUPLICATE_WINDOW_SECONDS),
            "replicas": settings.NATS_REPLICAS,
        }
        values.update(overrides)
        return cls(**values)

    @property
    def checkpoint_name(self) -> str:
        return f"relay:{self.stream}"


STREAM_NAME_IN_USE = 10058  # JetStream: "stream name already in use with a different config"
SUBJECTS_OVERLAP = 10065  # JetStream: "subjects overlap with an existing stream"


class RelayConfigError(Exception):
    """The relay's stream or subjects cannot work: fix the configuration, then restart."""

    code = "relay_misconfigured"


class EventRefused(Exception):
    """Events the broker refused, not yet as often as it takes to park them."""

    code = "event_refused"


class BrokerUnavailable(Exception):
    """The broker could not be reached or did not answer (nothing is the event's fault)."""

    code = "broker_unavailable"


def subject_for(event: es.RecordedEvent, prefix: str = "") -> str:
    """``bank.account.MoneyDeposited``: the stream type, then the event type."""
    return f"{prefix}{event.stream_type}.{event.event_type}"


# Every stream type this release writes, and its event types: the relay publishes them all
# (``bank.account.PostingReversed``, ``bank.approval.ApprovalGranted``, ...).
PUBLISHED_TYPES: dict[str, tuple[str, ...]] = {
    STREAM_TYPE: tuple(EVENT_TYPES),
    APPROVAL_STREAM_TYPE: tuple(APPROVAL_EVENT_TYPES),
}


def published_subjects(prefix: str = "") -> list[str]:
    """The subjects the relay publishes this release's events to: the accounts' and the
    maker-checker requests' (``<prefix><stream type>.<event type>``)."""
    return sorted(
        f"{prefix}{stream_type}.{event_type}"
        for stream_type, event_types in PUBLISHED_TYPES.items()
        for event_type in event_types
    )


def subjects_overlap(a: str, b: str) -> bool:
    """Whether some subject matches both NATS subjects (``*``: one token, ``>``: the rest).

    With a literal subject as ``a``, whether pattern ``b`` matches it.
    """
    tokens_a, tokens_b = a.split("."), b.split(".")
    for x, y in zip(tokens_a, tokens_b, strict=False):
        if x == ">" or y == ">":
            return True
        if x != y and "*" not in (x, y):
            return False
    return len(tokens_a) == len(tokens_b)


def valid_subject(subject: str) -> bool:
    """Whether ``subject`` can be published to: non-empty tokens, no wildcard, no space."""
    return all(
        token and token not in ("*", ">") and not any(c.isspace() for c in token)
        for token in subject.split(".")
    )


def check_subjects(config: BusConfig) -> None:
    """Check that the stream's subjects cover every subject the relay publishes to.

    Raises:
        RelayConfigError: naming the subjects not covered.
    """
    uncovered = [
        subject
        for subject in published_subjects(config.subject_prefix)
        if not any(subjects_overlap(subject, pattern) for pattern in config.subjects)
    ]
    if uncovered:
        shown = ", ".join(uncovered[:5]) + (
            f" and {len(uncovered) - 5} more" if len(uncovered) > 5 else ""
        )
        raise RelayConfigError(
            f"stream {config.stream}'s subjects ({', '.join(config.subjects)}) do not cover "
            f"{len(uncovered)} subject(s) the relay publishes to: {shown}; set NATS_SUBJECTS "
            f"to cover them (e.g. {config.subject_prefix}{STREAM_TYPE.split('.')[0]}.>) or "
            "correct NATS_SUBJECT_PREFIX"
        )


def message_body(event: es.RecordedEvent) -> bytes:
    return json.dumps(
        {
            "event_id": str(event.event_id),
            "stream_id": str(event.stream_id),
            "stream_type": event.stream_type,
            "version": event.version,
            "position": event.position,
            "event_type": event.event_type,
            "schema_version": event.schema_version,
            "data": event.data,
            "metadata": event.metadata,
            "occurred_at": event.occurred_at.isoformat(),
            "recorded_at": event.recorded_at.isoformat(),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def message_headers(event: es.RecordedEvent) -> dict[str, str]:
    headers = {"Nats-Msg-Id": str(event.event_id)}
    metadata = event.metadata  # decoded on first access
    trace_id, span_id = metadata.get("trace_id"), metadata.get("span_id")
    if isinstance(trace_id, str) and isinstance(span_id, str):
        headers["traceparent"] = f"00-{trace_id}-{span_id}-01"
    return headers


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event as it is published."""

    event: es.RecordedEvent
    subject: str
    body: bytes
    headers: dict[str, str]


def _refusal(error: BaseException) -> bool:
    """Whether a publish failed because of the message itself (not the broker's state)."""
    import nats.errors
    from nats.js.errors import APIError, ServiceUnavailableError

    if isinstance(error, APIError):
        return not isinstance(error, ServiceUnavailableError) and (error.code or 0) < 500
    return isinstance(error, nats.errors.MaxPayloadError | nats.errors.BadSubjectError)


def _api_reason(error: BaseException) -> str:
    description = getattr(error, "description", None) or str(error) or type(error).__name__
    err_code = getattr(error, "err_code", None)
    return f"{description} (error {err_code})" if err_code else description


class Relay:
    """Publishes the global order to JetStream; call :meth:`run_once` until it returns 0.

    Args:
        config: the broker and the stream.
        batch_size: events per batch.
        attempts: tries of an event the broker refuses before it is parked.
        on_park: called with each parked event's record.
    """

    def __init__(
        self,
        config: BusConfig,
        *,
        batch_size: int = 500,
        attempts: int = DEFAULT_ATTEMPTS,
        on_park: Callable[[DeadLetter], None] | None = None,
    ) -> None:
        self.config = config
        self.batch_size = batch_size
        self.parking = Parking(config.checkpoint_name, attempts=attempts, on_park=on_park)
        self.stream_subjects: list[str] = list(config.subjects)
        self.loop = asyncio.new_event_loop()
        self.nc: Any = None
        self.js: Any = None
        self.duplicates = 0  # re-sent events JetStream dropped, since start

    # --- broker ------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and create or update the stream.

        Raises:
            RelayConfigError: the subjects do not cover the relay's, or the server refused
                the stream (the error gives its reason, and names a stream it overlaps).
            Exception: the broker is unreachable (nats-py's errors, which share no base).
        """
        check_subjects(self.config)
        self.loop.run_until_complete(self._connect())

    async def _connect(self) -> None:
        import nats
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import BadRequestError

        self.nc = await nats.connect(
            # NATS_URL may list a cluster's servers, comma-separated: a connect tries each.
            servers=[url.strip() for url in self.config.url.split(",") if url.strip()],
            connect_timeout=2,
            allow_reconnect=False,  # the relay's own loop reconnects, with backoff
            # One try per connect: nats-py otherwise retries an absent server for minutes
            # before the first connection, and the relay could neither back off nor give up.
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            name="ledgerline-relay",
        )
        self.js = self.nc.jetstream(timeout=10)
        stream = StreamConfig(
            name=self.config.stream,
            subjects=self.config.subjects,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=self.config.duplicate_window,
            num_replicas=self.config.replicas,
        )
        try:
            info = await self.js.add_stream(stream)
        except BadRequestError as exc:
            if exc.err_code != STREAM_NAME_IN_USE:
                raise await self._refused("create", exc) from exc
            try:  # it exists already with other settings: update it
                info = await self.js.update_stream(stream)
            except BadRequestError as again:
                raise await self._refused("update", again) from again
        self.stream_subjects = list(info.config.subjects or self.config.subjects)
        if self.config.replicas < 3:
            log.info(
                "stream %s has %d replica(s): an acknowledgement is only as durable as the "
                "server's jetstream sync_interval (set it to 'always', or use NATS_REPLICAS=3 "
                "on a cluster; see the README)",
                self.config.stream,
                self.config.replicas,
            )

    async def _refused(self, action: str, error: Exception) -> RelayConfigError:
        """The error for a stream the server refused, naming the streams it overlaps."""
        message = (
            f"NATS refused to {action} stream {self.config.stream} with subjects "
            f"{', '.join(self.config.subjects)}: {_api_reason(error)}"
        )
        if getattr(error, "err_code", None) == SUBJECTS_OVERLAP or "overlap" in message:
            overlapping = [
                f"{info.config.name} ({', '.join(info.config.subjects or [])})"
                for info in await self.js.streams_info()
                if info.config.name != self.config.stream
                and any(
                    subjects_overlap(ours, theirs)
                    for ours in self.config.subjects
                    for theirs in info.config.subjects or []
                )
            ]
            if overlapping:
                message += f"; it overlaps stream {', '.join(overlapping)}"
        return RelayConfigError(
            message + "; change NATS_SUBJECTS (or NATS_STREAM), or the other stream, and start "
            "the relay again"
        )

    def close(self) -> None:
        if self.nc is not None:
            try:
                self.loop.run_until_complete(self.nc.close())
            except Exception:  # noqa: BLE001 - closing a broken connection
                log.debug("closing the NATS connection failed", exc_info=True)
        self.nc = self.js = None

    def shutdown(self) -> None:
        """Close the connection and the relay's event loop."""
        self.close()
        self.loop.close()

    # --- relaying ----------------------------------------------------------------------

    def checkpoint(self) -> int:
        row, _ = Checkpoint.objects.get_or_create(name=self.config.checkpoint_name)
        return row.position

    def run_once(self) -> int:
        """Publish the next batch after the checkpoint; return how many events it held.

        Raises:
            EventRefused: the broker refused events not yet tried ``attempts`` times (the
                checkpoint stays; what was published is dropped as duplicates next time).
            Exception: the broker failed (nats-py's errors); nothing moved.
        """
        if self.js is None:
            self.connect()
        position = self.checkpoint()
        events = es.read_all(after_position=position, limit=self.batch_size)
        if not events:
            return 0
        outgoing, behind, refused = self._plan(events)
        with tracer.start_as_current_span(
            "relay.batch",
            links=trace_links(events),
            attributes={
                "event_sourcing.operation": "publish",
                "events_count": len(events),
                "messaging.system": "nats",
                "messaging.destination.name": self.config.stream,
            },
        ):
            results = self.loop.run_until_complete(self._publish(outgoing))
        acks = self._sort_out(outgoing, results, refused)
        failures = [
            self.parking.failed(event, reason)
            for event, reason in sorted(refused, key=lambda r: r[0].position)
        ]
        trying = [f for f in failures if not self.parking.exhausted(f)]
        if trying:
            raise EventRefused(self._refused_text(trying))
        with transaction.atomic():
            row = Checkpoint.objects.select_for_update().get(name=self.config.checkpoint_name)
            if row.position == position:  # nobody moved it meanwhile
                for failure in failures:
                    self.parking.park(failure)
                for event, waits_for in behind:
                    self.parking.park_behind(event, waits_for)
                row.position = events[-1].position
                row.save(update_fields=["position", "updated_at"])
        duplicates = sum(1 for ack in acks if getattr(ack, "duplicate", False))
        self.duplicates += duplicates
        if duplicates:
            log.info("%d re-sent events were dropped by JetStream's duplicate window", duplicates)
        lag = es.count_after(events[-1].position) if len(events) >= self.batch_size else 0
        publish_lag({self.config.checkpoint_name: lag})
        return len(events)

    def _plan(
        self, events: Sequence[es.RecordedEvent]
    ) -> tuple[
        list[Outgoing], list[tuple[es.RecordedEvent, int]], list[tuple[es.RecordedEvent, str]]
    ]:
        """Split a batch: what to publish, what waits behind a parked (or refused) event of
        its stream, and what the broker would refuse."""
        stopped = self.parking.blocked()
        outgoing: list[Outgoing] = []
        behind: list[tuple[es.RecordedEvent, int]] = []
        refused: list[tuple[es.RecordedEvent, str]] = []
        for event in events:
            if event.stream_id in stopped:
                behind.append((event, stopped[event.stream_id]))
                continue
            message = self._outgoing(event)
            if isinstance(message, str):
                refused.append((event, message))
                stopped[event.stream_id] = event.position
            else:
                outgoing.append(message)
        return outgoing, behind, refused

    def _outgoing(self, event: es.RecordedEvent) -> Outgoing | str:
        """The message for ``event``, or why the broker would refuse it."""
        subject = subject_for(event, self.config.subject_prefix)
        if not valid_subject(subject):
            return f"{subject!r} is not a valid NATS subject"
        if not any(subjects_overlap(subject, pattern) for pattern in self.stream_subjects):
            return (
                f"subject {subject} is not among stream {self.config.stream}'s subjects "
                f"({', '.join(self.stream_subjects)}); add it to NATS_SUBJECTS"
            )
        message = Outgoing(event, subject, message_body(event), message_headers(event))
        limit = getattr(self.nc, "max_payload", None)
        if isinstance(limit, int) and len(message.body) > limit:
            return (
                f"the message is {len(message.body)} bytes, over the server's max_payload {limit}"
            )
        return message

    def _sort_out(
        self,
        outgoing: list[Outgoing],
        results: list[Any],
        refused: list[tuple[es.RecordedEvent, str]],
    ) -> list[Any]:
        """The acknowledgements; adds what JetStream refused to ``refused``.

        Raises:
            Exception: the first failure that was not a refusal (the broker's state).
        """
        acks = []
        for result in results:
            if not isinstance(result, BaseException):
                acks.append(result)
            elif not _refusal(result):
                raise result
        for message, result in zip(outgoing, results, strict=True):
            if isinstance(result, BaseException):
                refused.append((message.event, f"JetStream refused it: {_api_reason(result)}"))
        return acks

    def _refused_text(self, failures: list[Failure]) -> str:
        return "; ".join(
            f"{describe(f.event)} refused: {f.error} (attempt {f.attempts} of "
            f"{self.parking.attempts}, then it is parked)"
            for f in failures
        )

    async def _publish(self, outgoing: list[Outgoing]) -> list[Any]:
        sends = [
            self.js.publish(
                message.subject,
                message.body,
                stream=self.config.stream,
                headers=message.headers,
            )
            for message in outgoing
        ]
        return await asyncio.gather(*sends, return_exceptions=True)

    # --- parked events -----------------------------------------------------------------

    def retry_parked(self, *, progress: Callable[[int], None] | None = None) -> Retried:
        """Publish the parked events again, one at a time, in position order.

        Raises:
            BrokerUnavailable: the broker failed (the events stay parked).
            RelayConfigError: as :meth:`connect`.
        """
        if self.js is None:
            self.connect()
        Checkpoint.objects.get_or_create(name=self.config.checkpoint_name)
        with transaction.atomic():
            # Holding the checkpoint: a running relay parks nothing meanwhile.
            Checkpoint.objects.select_for_update().get(name=self.config.checkpoint_name)
            return self.parking.retry(
                self._publish_one, transient=(BrokerUnavailable,), progress=progress
            )

    def _publish_one(self, event: es.RecordedEvent) -> None:
        message = self._outgoing(event)
        if isinstance(message, str):
            raise EventRefused(message)
        (result,) = self.loop.run_until_complete(self._publish([message]))
        if isinstance(result, BaseException):
            if _refusal(result):
                raise EventRefused(f"JetStream refused it: {_api_reason(result)}") from result
            raise BrokerUnavailable(
                f"publishing to {self.config.url} failed: {result!r}"
            ) from result
        if getattr(result, "duplicate", False):
            self.duplicates += 1
