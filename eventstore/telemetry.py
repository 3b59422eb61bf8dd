"""The event store's spans and metrics (no-ops until an OpenTelemetry SDK is installed)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from django.db import connection
from opentelemetry import context as context_api
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import Status, StatusCode


class FastTracer:
    """The tracer of our own spans: the API's, or with the SDK installed, cheaper SDK spans.

    A command makes four spans (ARCHITECTURE.md's tree); through the SDK's own
    ``Tracer.start_span`` each costs about 25-35 µs on the deposit path, which alone is
    more than a tenth of a deposit. ``LeanSpan`` is the SDK's ``Span`` (same class for
    every processor and exporter, same methods for everything after its creation), created
    without the work our spans never need: attribute cleaning for values that are already
    plain ``str``/``int``/``float``/``bool``, and empty event and link lists made before
    anything is added. Sampling, ids, limits, processors, the resource and the
    instrumentation scope are the SDK tracer's own; the SDK's default sampler,
    ``ParentBased(ALWAYS_ON)`` (and ``ALWAYS_ON``), is decided inline as it decides (sample
    a root, follow the parent's flag, keep its trace state), any other sampler is asked.
    Anything this cannot do exactly as
    the SDK would (attribute values that need cleaning, attribute length limits, a tracer
    disabled by configuration, an SDK without the parts used here) goes through the SDK's
    ``start_span`` instead.
    """

    __slots__ = ("_name", "_fixed", "_provider", "_api", "_sdk", "_parent_or_on")

    def __init__(self, name: str, provider: trace.TracerProvider | None = None) -> None:
        """A tracer for one instrumentation scope.

        Args:
            name: the instrumentation scope.
            provider: a provider of its own (tests); the global one by default, followed
                when it is replaced (the SDK is installed after this module is imported).
        """
        self._name = name
        self._fixed = provider
        self._provider: object = None
        self._api: trace.Tracer = trace.get_tracer(name)
        self._sdk: Any = None
        self._parent_or_on = 0

    def _resolve(self, provider: trace.TracerProvider) -> None:
        self._provider = provider
        self._api = provider.get_tracer(self._name)
        self._sdk = None
        self._parent_or_on = 0
        try:
            from opentelemetry.sdk.trace import Tracer as SdkTracer
        except ImportError:  # pragma: no cover - the SDK ships with the exporter
            return
        sdk = self._api
        limits = getattr(sdk, "_span_limits", None)
        if (
            isinstance(sdk, SdkTracer)
            and all(hasattr(sdk, name) for name in _SDK_TRACER_PARTS)
            and limits is not None
            and limits.max_span_attribute_length is None
            and (limits.max_span_attributes or 0) >= _MAX_OWN_ATTRIBUTES
        ):
            self._sdk = sdk
            self._parent_or_on = _follows_parent_or_always_on(sdk.sampler)

    def start_span(self, name: str, attributes: dict[str, Any]) -> trace.Span:
        provider = self._fixed or trace.get_tracer_provider()
        if provider is not self._provider:
            self._resolve(provider)
        sdk = self._sdk
        if sdk is None or not sdk._is_enabled():
            return self._api.start_span(name, attributes=attributes)
        for value in attributes.values():
            if type(value) not in _PLAIN:
                return sdk.start_span(name, attributes=attributes)
        parent = trace.get_current_span().get_span_context()
        if parent.is_valid:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        else:
            parent = None
            trace_id = sdk.id_generator.generate_trace_id()
            random_trace_id = sdk.id_generator.is_trace_id_random()
        if self._parent_or_on:
            # The SDK's default sampler, ParentBased(ALWAYS_ON) (or ALWAYS_ON itself), as it
            # decides: sample a root; follow a parent's sampled flag; keep its trace state.
            sampled = parent is None or parent.trace_flags.sampled or self._parent_or_on == 2
            decision = _RECORD_AND_SAMPLE if sampled else _DROP
            trace_state = parent.trace_state if parent is not None else None
            kept: Any = attributes if sampled else None
        else:
            sampling = sdk.sampler.should_sample(None, trace_id, name, _INTERNAL, attributes, ())
            decision, trace_state, kept = sampling.decision, sampling.trace_state, None
            if decision.is_recording():
                kept = sampling.attributes
        flags = _SAMPLED if decision.is_sampled() else _NOT_SAMPLED
        if random_trace_id:
            flags = trace.TraceFlags(flags | trace.TraceFlags.RANDOM_TRACE_ID)
        context = trace.SpanContext(
            trace_id,
            sdk.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=flags,
            trace_state=trace_state,
        )
        record_end_metrics = sdk._tracer_metrics.start_span(parent, decision)
        if not decision.is_recording():
            return trace.NonRecordingSpan(context)
        span = _LeanSpan(name, context, parent, kept, sdk, record_end_metrics)
        span.start()
        return span


def _follows_parent_or_always_on(sampler: Any) -> int:
    """1 for the SDK's default ``ParentBased(ALWAYS_ON)``, 2 for ``ALWAYS_ON``, else 0.

    Exact classes and descriptions only (the description names every delegate), so a
    configured ratio, a custom sampler or a subclass always gets its own ``should_sample``.
    """
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, StaticSampler

    description = sampler.get_description()
    if type(sampler) is ParentBased and description == ParentBased(ALWAYS_ON).get_description():
        return 1
    if type(sampler) is StaticSampler and description == ALWAYS_ON.get_description():
        return 2
    return 0


_SDK_TRACER_PARTS = (
    "sampler",
    "resource",
    "span_processor",
    "id_generator",
    "instrumentation_info",
    "_span_limits",
    "_instrumentation_scope",
    "_tracer_metrics",
    "_is_enabled",
)
_MAX_OWN_ATTRIBUTES = 16
_PLAIN = frozenset((str, int, float, bool))
_INTERNAL = trace.SpanKind.INTERNAL
_RECORD_AND_SAMPLE = Decision.RECORD_AND_SAMPLE
_DROP = Decision.DROP
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
_NOT_SAMPLED = trace.TraceFlags(trace.TraceFlags.DEFAULT)


def _lean_span_class() -> type:
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.sdk.trace import Span as SdkSpan
    from opentelemetry.sdk.util import BoundedList

    class LeanSpan(SdkSpan):
        """An SDK span whose attributes are known to be plain values (see ``FastTracer``)."""

        def __init__(
            self,
            name: str,
            context: trace.SpanContext,
            parent: trace.SpanContext | None,
            attributes: Any,
            tracer: Any,
            record_end_metrics: Any,
        ) -> None:
            limits = tracer._span_limits
            self._name = name
            self._context = context
            self._parent = parent
            self._kind = _INTERNAL
            self._resource = tracer.resource
            self._instrumentation_info = tracer.instrumentation_info
            self._instrumentation_scope = tracer._instrumentation_scope
            self._status = _UNSET
            self._start_time = None
            self._end_time = None
            self._sampler = tracer.sampler
            self._trace_config = None
            self._record_exception = True
            self._set_status_on_exception = True
            self._span_processor = tracer.span_processor
            self._limits = limits
            self._lock = threading.Lock()
            bounded = BoundedAttributes(limits.max_span_attributes, None, immutable=False)
            if attributes:
                if len(attributes) <= limits.max_span_attributes:
                    bounded._dict.update(attributes)  # plain values: nothing to clean
                else:
                    bounded = BoundedAttributes(limits.max_span_attributes, attributes)
            self._attributes = bounded
            self._events: Any = ()
            self._links: Any = ()
            self._record_end_metrics = record_end_metrics

        def _readable_span(self) -> Any:
            # What the processors get at the end: the span itself (the SDK hands over a
            # copy), which cannot change once ended: every mutator checks the end time.
            return self

        def _add_event(self, event: Any) -> None:
            self._append("_events", self._limits.max_events, event)

        def _add_link(self, link: Any) -> None:
            self._append("_links", self._limits.max_links, link)

        def _append(self, field: str, limit: int | None, item: Any) -> None:
            """Add an event or a link (ignored once ended), making its bounded list first."""
            if self._end_time is not None:
                return
            items = getattr(self, field)
            if not isinstance(items, BoundedList):
                items = BoundedList(limit)
                setattr(self, field, items)
            items.append(item)

    return LeanSpan


_UNSET = Status(StatusCode.UNSET)
_LeanSpan: Any = _lean_span_class()
tracer = FastTracer("eventstore")
meter = metrics.get_meter("eventstore")


class ActiveSpan:
    """``with ActiveSpan(tracer, name, attributes) as span:`` a span, current inside the block.

    What ``tracer.start_as_current_span`` does (the span is current for the block; an
    exception is recorded on it, sets its status to error and propagates; the span ends at
    the end of the block), in one small object instead of two nested generator-based
    context managers: this runs several times per command, so its cost is the cost of
    tracing. With no SDK installed the span is the API's invalid span and nothing is
    attached to the context.
    """

    __slots__ = ("span", "_token")

    def __init__(self, tracer: FastTracer, name: str, attributes: dict[str, Any]) -> None:
        self.span = tracer.start_span(name, attributes=attributes)
        self._token: object = None

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
        self.finish(exc)  # while the span is still current
        if self._token is not None:
            context_api.detach(self._token)  # type: ignore[arg-type]
        self.span.end()

    def finish(self, exc: BaseException | None) -> None:
        """What happens at the end of the block, before the span ends: an ``Exception`` is
        recorded on the span and sets its status to error. Subclasses add their own."""
        span = self.span
        if isinstance(exc, Exception) and span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


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
