"""The event store's spans and metrics (no-ops until an OpenTelemetry SDK is installed).

Only OpenTelemetry's public API: spans come from ``trace.get_tracer`` (the SDK's tracer
once one is installed), so sampling, limits, processors and exporters are the SDK's own.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from django.db import connection
from opentelemetry import context as context_api
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

# The API's tracer: a proxy until an SDK is installed (config/telemetry.py), then the SDK's.
tracer = trace.get_tracer("eventstore")
meter = metrics.get_meter("eventstore")


class ActiveSpan:
    """``with ActiveSpan(tracer, name, attributes) as span:`` a span, current inside the block.

    What ``tracer.start_as_current_span`` does (the span is current for the block; an
    exception is recorded on it, sets its status to error and propagates; the span ends at
    the end of the block), through the API's ``start_span``, ``set_span_in_context`` and
    ``context.attach``, with a hook (``finish``) that subclasses use to describe the
    outcome before the span ends. With no SDK installed, or a span not sampled, nothing is
    recorded.

    Under a parent that is not recording (a trace the sampler dropped) no span is made at
    all: with the parent-based samplers (the SDK's default, and ``parentbased_*`` of
    ``OTEL_TRACES_SAMPLER``) it would be dropped too, and at 10 % sampling nine commands in
    ten would otherwise pay for spans nobody keeps. (With a sampler that ignores the
    parent, a child of a dropped span would have been a trace without its root.)
    """

    __slots__ = ("span", "_token")

    def __init__(self, tracer: trace.Tracer, name: str, attributes: dict[str, Any]) -> None:
        self._token: object = None
        self.span: trace.Span
        if _in_dropped_trace():
            self.span = trace.INVALID_SPAN
            return
        self.span = tracer.start_span(name, attributes=attributes)

    def __enter__(self) -> trace.Span:
        span = self.span
        if span.get_span_context().is_valid:
            self._token = context_api.attach(trace.set_span_in_context(span))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.finish(exc)  # while the span is still current
        finally:
            if self._token is not None:
                context_api.detach(self._token)  # type: ignore[arg-type]
            self.span.end()

    def finish(self, exc: BaseException | None) -> None:
        """What happens at the end of the block, before the span ends: an ``Exception`` is
        recorded on the span and sets its status to error. Subclasses add their own."""
        record_failure(self.span, exc, f"{type(exc).__name__}: {exc}")

    def close(self, exc: BaseException | None = None) -> None:
        """End the span without ever having made it current (no ``with``): ``finish``, then
        end. For spans open side by side, such as the loads of one round trip, whose
        client spans name their parent explicitly (``statements``)."""
        try:
            self.finish(exc)
        finally:
            self.span.end()


def record_failure(span: trace.Span, exc: BaseException | None, description: str) -> None:
    """An ``Exception`` ending a span's block: recorded on it (``error.type``, the exception
    event) and the span's status set to error with ``description``. Nothing else is."""
    if isinstance(exc, Exception) and span.is_recording():
        span.set_attribute("error.type", type(exc).__qualname__)
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, description))


@functools.cache
def _db_system() -> str:
    """The database's vendor, read once (the default connection's engine never changes)."""
    return connection.vendor


def span(name: str, operation: str, **attributes: Any) -> ActiveSpan:
    """A span for one store operation, with the attributes every store span carries."""
    attributes["db.system"] = _db_system()
    attributes["event_sourcing.operation"] = operation
    return ActiveSpan(tracer, name, attributes)


class _EventTally:
    """Events appended by type in this process, reported by an observable counter.

    A synchronous counter would cost a measurement (attribute hashing, an exemplar offer)
    per event on the append path; the totals are the same when read at each collection.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, event_types: Iterable[str]) -> None:
        with self._lock:
            counts = self._counts
            for event_type in event_types:
                counts[event_type] = counts.get(event_type, 0) + 1

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = list(self._counts.items())
        return [Observation(n, {"event_type": event_type}) for event_type, n in counts]


events_appended = _EventTally()
meter.create_observable_counter(
    "eventstore.events_appended",
    callbacks=[events_appended.observe],
    unit="{event}",
    description="events appended, by event type",
)

# A snapshot that failed its signature or anchor check at load (never used: full replay).
snapshots_rejected = meter.create_counter(
    "eventstore.snapshots_rejected",
    unit="{snapshot}",
    description="snapshots refused at load because their signature or anchor failed",
)


# --- database spans of the store's own statements -------------------------------------------
# The store runs its hot statements on psycopg cursors of its own (server-side binding,
# prepared, pipelined), which the psycopg instrumentation does not see; it makes their
# client spans itself, after OpenTelemetry's database conventions.


@functools.cache
def _db_spans_on() -> bool:
    """``OTEL_PYTHON_DB_SPANS=false`` leaves out every database span, the store's too."""
    return os.environ.get("OTEL_PYTHON_DB_SPANS", "").strip().lower() not in ("false", "0", "off")


def _in_dropped_trace() -> bool:
    """Whether the current span is a parent the sampler dropped (valid, not recording)."""
    current = trace.get_current_span()
    return not current.is_recording() and current.get_span_context().is_valid


# One statement, described for its client span: (operation, collection, query text), and
# optionally the span it belongs under (the current span when left out).
Statement = tuple[str, str, str] | tuple[str, str, str, trace.Span]


class statements:  # noqa: N801 - used like a function
    """``with statements(attributes, ("SELECT", "events", sql), ...):`` one client span per
    statement, each with ``attributes`` (the connection's: ``Backend.span_attributes``).

    The spans start together and end together: statements sent in one round trip (a
    psycopg pipeline) are all in flight for all of it. A failure is recorded on each. A
    statement described with a fourth item, a span, has its client span under that span
    (a store span that is open but not current: ``ActiveSpan.close``) instead of the
    current one.
    """

    __slots__ = ("spans",)

    def __init__(self, attributes: dict[str, Any], *described: Statement) -> None:
        if not _db_spans_on() or _in_dropped_trace():  # see ActiveSpan
            self.spans: list[trace.Span] = []
            return
        self.spans = [
            tracer.start_span(
                f"{statement[0]} {statement[1]}" if statement[1] else statement[0],
                context=trace.set_span_in_context(statement[3]) if len(statement) == 4 else None,
                kind=trace.SpanKind.CLIENT,
                attributes={
                    **attributes,
                    "db.operation.name": statement[0],
                    "db.query.text": statement[2],
                    **({"db.collection.name": statement[1]} if statement[1] else {}),
                },
            )
            for statement in described
            # Under a store span that is not recorded (sampled out), nothing beneath it is.
            if len(statement) == 3 or statement[3].is_recording()
        ]

    def __enter__(self) -> statements:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for span in self.spans:
            try:
                record_failure(span, exc, type(exc).__name__)
            finally:
                span.end()
