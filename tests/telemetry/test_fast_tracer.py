"""Our cheaper spans (``eventstore.telemetry.FastTracer``) against the SDK's own.

Each test builds a provider of its own with an in-memory exporter, does the same thing once
through the SDK's tracer and once through ``FastTracer``/``ActiveSpan``, and compares what
the exporter received, field by field. No database needed.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

from eventstore.telemetry import ActiveSpan, FastTracer

RESOURCE = Resource.create({"service.name": "fast-tracer-tests"})


def provider(**kwargs: Any) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=RESOURCE, **kwargs)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter


class Refused(Exception):
    pass


def scenario(start: Any) -> None:
    """A command-like root, a child with attributes set later, a child that fails."""
    with start("command.deposit", {"command": "deposit", "aggregate_id": "a1"}) as root:
        root.set_attribute("counterparty_id", "b2")
        with start("snapshot_store.load", {"db.system": "postgresql", "version": 3}) as child:
            child.set_attributes({"snapshot_version": 2, "hit": True, "ratio": 0.5})
            child.add_event("looked", {"rows": 1})
        try:
            with start("event_store.append_events", {"events_count": 1}):
                raise Refused("stream moved on")
        except Refused:
            pass


def via_sdk(tracer_provider: TracerProvider) -> None:
    tracer = tracer_provider.get_tracer("tests.fast")
    scenario(lambda name, attributes: tracer.start_as_current_span(name, attributes=attributes))


def via_fast(tracer_provider: TracerProvider) -> None:
    tracer = FastTracer("tests.fast", tracer_provider)
    scenario(lambda name, attributes: ActiveSpan(tracer, name, dict(attributes)))


def exported(spans: Any) -> list[dict[str, Any]]:
    """Everything an exporter reads from a span, ids replaced by positions in the list."""
    index = {s.context.span_id: i for i, s in enumerate(spans)}
    rows = []
    for s in spans:
        rows.append(
            {
                "readable": isinstance(s, ReadableSpan),
                "name": s.name,
                "kind": s.kind,
                "parent": index.get(s.parent.span_id) if s.parent else None,
                "same_trace": s.context.trace_id == spans[-1].context.trace_id,
                "flags": int(s.context.trace_flags),
                "attributes": dict(s.attributes),
                "events": [
                    (
                        e.name,
                        {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"},
                    )
                    for e in s.events
                ],
                "stacktrace": [
                    "Refused: stream moved on" in e.attributes.get("exception.stacktrace", "")
                    for e in s.events
                    if e.name == "exception"
                ],
                "links": list(s.links),
                "status": (s.status.status_code, s.status.description),
                "resource": dict(s.resource.attributes),
                "scope": (s.instrumentation_scope.name, s.instrumentation_scope.version),
                "dropped": (s.dropped_attributes, s.dropped_events, s.dropped_links),
                "timed": 0 < s.start_time <= s.end_time,
            }
        )
    return rows


def test_fast_spans_export_exactly_what_sdk_spans_export():
    sdk_provider, sdk_spans = provider()
    fast_provider, fast_spans = provider()
    via_sdk(sdk_provider)
    via_fast(fast_provider)
    expected = exported(sdk_spans.get_finished_spans())
    assert [row["name"] for row in expected] == [
        "snapshot_store.load",
        "event_store.append_events",
        "command.deposit",
    ]
    assert expected[1]["status"][0] is trace.StatusCode.ERROR
    assert exported(fast_spans.get_finished_spans()) == expected


def test_fast_spans_are_current_inside_their_block_and_children_of_the_current_span():
    tracer_provider, spans = provider()
    tracer = FastTracer("tests.fast", tracer_provider)
    outer = tracer_provider.get_tracer("tests.outer")
    with outer.start_as_current_span("request") as request:
        with ActiveSpan(tracer, "command.open", {"command": "open"}) as command:
            assert trace.get_current_span() is command
            assert type(command).__name__ == "LeanSpan"  # the cheap path, not the fallback
            inner = outer.start_span("database")
            inner.end()
        assert trace.get_current_span() is request
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert by_name["command.open"].parent.span_id == by_name["request"].context.span_id
    assert by_name["database"].parent.span_id == by_name["command.open"].context.span_id
    assert len({s.context.trace_id for s in by_name.values()}) == 1


def test_fast_spans_follow_the_sampler():
    for sampler in (ALWAYS_OFF, ParentBased(ALWAYS_OFF), TraceIdRatioBased(0.0)):
        tracer_provider, spans = provider(sampler=sampler)
        with ActiveSpan(FastTracer("t", tracer_provider), "command.x", {"a": 1}) as span:
            assert not span.is_recording()
            # A trace id all the same, for the events' metadata, as the SDK gives.
            assert span.get_span_context().is_valid
            assert not span.get_span_context().trace_flags.sampled
        assert spans.get_finished_spans() == ()
    # Half of the traces by id: the same decisions as the SDK's tracer on the same ids.
    sdk_provider, sdk_spans = provider(sampler=TraceIdRatioBased(0.5))
    fast_provider, fast_spans = provider(sampler=TraceIdRatioBased(0.5))
    fast = FastTracer("t", fast_provider)
    sdk = sdk_provider.get_tracer("t")
    for _ in range(200):
        with sdk.start_as_current_span("x"):
            pass
        with ActiveSpan(fast, "x", {}):
            pass
    assert 50 < len(fast_spans.get_finished_spans()) < 150
    assert 50 < len(sdk_spans.get_finished_spans()) < 150


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled parent", "unsampled parent"])
@pytest.mark.parametrize("sampler", [None, ALWAYS_ON], ids=["default sampler", "always on"])
def test_the_default_samplers_decide_as_in_the_sdk(sampled, sampler):
    """The shortcut for ParentBased(ALWAYS_ON) and ALWAYS_ON: same decisions, same state."""
    kwargs = {} if sampler is None else {"sampler": sampler}
    sdk_provider, sdk_spans = provider(**kwargs)
    fast_provider, fast_spans = provider(**kwargs)
    remote = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else 0),
        trace_state=trace.TraceState([("vendor", "value")]),
    )
    made = []
    for start in (
        lambda: sdk_provider.get_tracer("t").start_as_current_span("x", attributes={"a": 1}),
        lambda: ActiveSpan(FastTracer("t", fast_provider), "x", {"a": 1}),
    ):
        token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(remote)))
        try:
            with start() as span:
                with start() as child:  # a local parent
                    made.append((span, child))
        finally:
            context.detach(token)
    (sdk_span, sdk_child), (fast_span, fast_child) = made
    for sdk, fast in ((sdk_span, fast_span), (sdk_child, fast_child)):
        assert fast.is_recording() == sdk.is_recording()
        assert (
            fast.get_span_context().trace_id == sdk.get_span_context().trace_id == remote.trace_id
        )
        assert fast.get_span_context().trace_flags == sdk.get_span_context().trace_flags
        assert fast.get_span_context().trace_state == sdk.get_span_context().trace_state
    assert exported(fast_spans.get_finished_spans()) == exported(sdk_spans.get_finished_spans())
    expect_recording = sampled or sampler is ALWAYS_ON
    assert len(fast_spans.get_finished_spans()) == (2 if expect_recording else 0)
    assert (type(fast_span).__name__ == "LeanSpan") == expect_recording


@pytest.mark.parametrize(
    "limits",
    [SpanLimits(max_span_attribute_length=4), SpanLimits(max_span_attributes=2)],
    ids=["value length limit", "attribute count limit"],
)
def test_span_limits_apply_as_in_the_sdk(limits):
    sdk_provider, sdk_spans = provider(span_limits=limits)
    fast_provider, fast_spans = provider(span_limits=limits)
    via_sdk(sdk_provider)
    via_fast(fast_provider)
    expected = exported(sdk_spans.get_finished_spans())
    assert exported(fast_spans.get_finished_spans()) == expected
    assert any(row["dropped"][0] for row in expected) or any(
        value == "depo" for row in expected for value in row["attributes"].values()
    )


def test_attribute_values_that_need_cleaning_are_cleaned_as_in_the_sdk():
    attributes = {"ids": ["a", "b"], "nothing": None, "number": 3, "bytes": b"raw"}
    sdk_provider, sdk_spans = provider()
    fast_provider, fast_spans = provider()
    with sdk_provider.get_tracer("t").start_as_current_span("x", attributes=attributes) as span:
        span.set_attribute("later", ["c", "d"])
        span.set_attribute("bad", object())
    with ActiveSpan(FastTracer("t", fast_provider), "x", dict(attributes)) as span:
        span.set_attribute("later", ["c", "d"])
        span.set_attribute("bad", object())
    (sdk_span,) = sdk_spans.get_finished_spans()
    (fast_span,) = fast_spans.get_finished_spans()
    assert dict(fast_span.attributes) == dict(sdk_span.attributes)
    assert dict(sdk_span.attributes)["later"] == ("c", "d")


def test_an_ended_fast_span_cannot_change():
    tracer_provider, spans = provider()
    with ActiveSpan(FastTracer("t", tracer_provider), "x", {"a": 1}) as span:
        pass
    span.set_attribute("a", 2)
    span.add_event("late")
    span.set_status(trace.Status(trace.StatusCode.ERROR, "late"))
    span.update_name("renamed")
    (finished,) = spans.get_finished_spans()
    assert (finished.name, dict(finished.attributes), finished.events) == ("x", {"a": 1}, ())
    assert finished.status.status_code is trace.StatusCode.UNSET


def test_without_an_sdk_provider_spans_are_the_apis_no_ops():
    tracer = FastTracer("t", trace.NoOpTracerProvider())
    with ActiveSpan(tracer, "x", {"a": 1}) as span:
        assert span is trace.INVALID_SPAN
        assert trace.get_current_span() is trace.INVALID_SPAN
