"""Projection spans (linked to the commands that wrote their events) and the lag gauge."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from eventstore import RecordedEvent

tracer = trace.get_tracer("projections")
MAX_LINKS = 64

# Published by whoever measured it last (run_projections, projection_status).
_lag: dict[str, int] = {}


def links(events: Sequence[RecordedEvent]) -> list[trace.Link]:
    """Links to the spans of the commands that produced these events (from their metadata)."""
    seen: set[tuple[int, int]] = set()
    found = []
    for event in events:
        metadata = event.metadata  # decoded on first access
        trace_id, span_id = metadata.get("trace_id"), metadata.get("span_id")
        if not (isinstance(trace_id, str) and isinstance(span_id, str)):
            continue
        try:
            key = (int(trace_id, 16), int(span_id, 16))
        except ValueError:
            continue
        if key in seen or not all(key):
            continue
        seen.add(key)
        found.append(
            trace.Link(
                trace.SpanContext(
                    trace_id=key[0],
                    span_id=key[1],
                    is_remote=True,
                    trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
                )
            )
        )
        if len(found) == MAX_LINKS:
            break
    return found


@contextlib.contextmanager
def batch_span(name: str, events: Sequence[RecordedEvent]) -> Iterator[trace.Span]:
    """The span of one projection batch, linked to the commands that wrote its events.

    The links are looked for only when the span records: without tracing (no SDK, or the
    batch sampled out) a rebuild does not read every event's metadata for nothing.
    """
    with tracer.start_as_current_span(
        f"projection.{name}.batch",
        attributes={
            "event_sourcing.operation": "project",
            "projection": name,
            "events_count": len(events),
            "first_position": events[0].position if events else 0,
            "last_position": events[-1].position if events else 0,
        },
    ) as span:
        if span.is_recording():
            for link in links(events):
                span.add_link(link.context)
        yield span


def publish_lag(lags: dict[str, int]) -> None:
    _lag.update(lags)


def _observe(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(lag, {"projection": name}) for name, lag in _lag.items()]


metrics.get_meter("projections").create_observable_gauge(
    "projection.lag", callbacks=[_observe], unit="{event}", description="events not yet applied"
)
