"""The event bus relay: publish every stored event to NATS JetStream, in global order.

The event store's global order is the outbox. The relay follows it like a projection: it
reads the events after its checkpoint, publishes them to JetStream (pipelined: a whole batch
is sent before the acknowledgements are awaited; one connection keeps them in order), and
moves its checkpoint only after JetStream acknowledged every one of them. Each message has
the event id as ``Nats-Msg-Id``, so JetStream's duplicate window drops what a restarted relay
sends again: consumers see each event once. The ``traceparent`` of the command that wrote
the event travels in the headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

import eventstore as es

from .models import Checkpoint
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


def subject_for(event: es.RecordedEvent, prefix: str = "") -> str:
    """``bank.account.MoneyDeposited``: the stream type, then the event type."""
    return f"{prefix}{event.stream_type}.{event.event_type}"


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


class Relay:
    """Publishes the global order to JetStream; call :meth:`run_once` until it returns 0."""

    def __init__(self, config: BusConfig, *, batch_size: int = 500) -> None:
        self.config = config
        self.batch_size = batch_size
        self.loop = asyncio.new_event_loop()
        self.nc: Any = None
        self.js: Any = None
        self.duplicates = 0  # re-sent events JetStream dropped, since start

    # --- broker ------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and create or update the stream (raises when the broker is unreachable)."""
        self.loop.run_until_complete(self._connect())

    async def _connect(self) -> None:
        import nats
        from nats.js.api import RetentionPolicy, StorageType, StreamConfig

        self.nc = await nats.connect(
            servers=[self.config.url],
            connect_timeout=2,
            allow_reconnect=False,  # the relay's own loop reconnects, with backoff
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
            await self.js.add_stream(stream)
        except Exception:  # noqa: BLE001 - exists already with other settings: update it
            await self.js.update_stream(stream)
        if self.config.replicas < 3:
            log.info(
                "stream %s has %d replica(s): an acknowledgement is only as durable as the "
                "server's jetstream sync_interval (set it to 'always', or use NATS_REPLICAS=3 "
                "on a cluster; see the README)",
                self.config.stream,
                self.config.replicas,
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
        """Publish the next batch after the checkpoint; return how many were published."""
        if self.js is None:
            self.connect()
        position = self.checkpoint()
        events = es.read_all(after_position=position, limit=self.batch_size)
        if not events:
            return 0
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
            acks = self.loop.run_until_complete(self._publish(events))
        with transaction.atomic():
            row = Checkpoint.objects.select_for_update().get(name=self.config.checkpoint_name)
            if row.position == position:  # nobody moved it meanwhile
                row.position = events[-1].position
                row.save(update_fields=["position", "updated_at"])
        duplicates = sum(1 for ack in acks if getattr(ack, "duplicate", False))
        self.duplicates += duplicates
        if duplicates:
            log.info("%d re-sent events were dropped by JetStream's duplicate window", duplicates)
        lag = es.count_after(events[-1].position) if len(events) >= self.batch_size else 0
        publish_lag({self.config.checkpoint_name: lag})
        return len(events)

    async def _publish(self, events: list[es.RecordedEvent]) -> list[Any]:
        prefix = self.config.subject_prefix
        sends = [
            self.js.publish(
                subject_for(event, prefix),
                message_body(event),
                stream=self.config.stream,
                headers=message_headers(event),
            )
            for event in events
        ]
        return await asyncio.gather(*sends)
