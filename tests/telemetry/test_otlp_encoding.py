"""``config/otlp_encoding.py`` against the SDK's OTLP encoder, byte for byte."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from config import otlp_encoding
from eventstore.telemetry import ActiveSpan, FastTracer

RESOURCE = Resource.create({"service.name": "encoding-tests", "deployment.environment": "ci"})
OTHER_RESOURCE = Resource({"service.name": "other", "n": 3}, "https://x/resource-schema")
REMOTE = trace.SpanContext(
    trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    trace_state=trace.TraceState([("vendor", "a1"), ("congo", "t61rcWkgMzE")]),
)


def sdk_bytes(spans):
    return sdk_encode(spans).SerializeToString()


def made_by_the_sdk(**limits):
    """Spans as the SDK and FastTracer make them: events, links, errors, scopes, limits."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, span_limits=SpanLimits(**limits))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = provider.get_tracer("django", "0.66b1", schema_url="https://x/schema")
    ours = FastTracer("bank.services", provider)
    parent = trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    with server.start_as_current_span(
        "POST /x",
        context=parent,
        kind=trace.SpanKind.SERVER,
        links=[trace.Link(REMOTE, {"link.kind": "cause", "n": 2})],
    ) as request:
        request.set_attribute("http.request.method", "POST")
        request.set_attribute("tags", ["a", "b"])
        with ActiveSpan(ours, "command.withdraw", {"aggregate_id": "a1", "amount": 5}) as command:
            command.add_event("checked", {"rule": "balance", "ok": False, "ratio": 0.5})
            command.add_event("rechecked", {"rule": "balance"})
            try:
                with ActiveSpan(ours, "event_store.append_events", {"events_count": 1}):
                    raise ValueError("refused ünïcode")
            except ValueError:
                pass
            command.set_status(trace.Status(trace.StatusCode.ERROR, "insufficient_funds"))
        with ActiveSpan(ours, "command.deposit", {"aggregate_id": "a2"}) as ok:
            ok.set_status(trace.StatusCode.OK)
    return list(exporter.get_finished_spans())


def test_spans_made_by_the_sdk_encode_to_the_same_bytes():
    spans = made_by_the_sdk()
    assert otlp_encoding.encode_spans(spans) == sdk_bytes(spans)
    tight = made_by_the_sdk(
        max_span_attributes=1, max_events=1, max_event_attributes=1, max_link_attributes=1
    )
    assert any(s.dropped_attributes for s in tight) and any(s.dropped_events for s in tight)
    assert otlp_encoding.encode_spans(tight) == sdk_bytes(tight)


def test_several_resources_and_scopes_group_as_in_the_sdk():
    spans = made_by_the_sdk()
    other = ReadableSpan(
        "elsewhere",
        context=trace.SpanContext(1, 2, False),
        resource=OTHER_RESOURCE,
        instrumentation_scope=InstrumentationScope("lib", None, None, {"scope.attr": True}),
        start_time=5,
        end_time=6,
    )
    unscoped = ReadableSpan("no scope", context=trace.SpanContext(1, 3, False), resource=RESOURCE)
    mixed = [other, *spans[:2], unscoped, spans[2], other]
    assert otlp_encoding.encode_spans(mixed) == sdk_bytes(mixed)


def test_an_empty_batch():
    assert otlp_encoding.encode_spans([]) == sdk_bytes([]) == b""


int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
scalars = st.one_of(
    st.text(),
    st.booleans(),
    int64,
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(),
    st.none(),
)
values = st.one_of(
    scalars,
    st.lists(st.text(), max_size=3).map(tuple),
    st.lists(int64, max_size=3).map(tuple),
    st.lists(st.floats(allow_nan=False), max_size=3),
    st.lists(st.booleans(), max_size=3),
)
attributes = st.dictionaries(st.text(max_size=12), values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    span_attributes=attributes,
    event_attributes=attributes,
    link_attributes=attributes,
    name=st.text(max_size=20),
    kind=st.sampled_from(list(trace.SpanKind)),
    times=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
    status=st.tuples(st.sampled_from(list(trace.StatusCode)), st.one_of(st.none(), st.text())),
    remote_parent=st.booleans(),
)
def test_any_attribute_values_encode_to_the_same_bytes(
    span_attributes, event_attributes, link_attributes, name, kind, times, status, remote_parent
):
    code, description = status
    span = ReadableSpan(
        name,
        context=trace.SpanContext(0xABC, 0xDEF, False, trace_state=REMOTE.trace_state),
        parent=trace.SpanContext(0xABC, 0x123, remote_parent),
        resource=RESOURCE,
        attributes=span_attributes,
        events=[Event("e", event_attributes, times[0])],
        links=[trace.Link(REMOTE, link_attributes)],
        kind=kind,
        status=trace.Status(code, description if code is trace.StatusCode.ERROR else None),
        start_time=times[0],
        end_time=times[1],
        instrumentation_scope=InstrumentationScope("t", "1.0"),
    )
    try:
        encoded = otlp_encoding.encode_spans([span])
    except otlp_encoding.Unsupported:
        # Left to the SDK's encoder: a lone surrogate in a string, say.
        assert otlp_encoding.encode_request([span]) == sdk_encode([span])
        return
    assert encoded == sdk_bytes([span])


def test_what_it_does_not_write_is_left_to_the_sdk_encoder_whole():
    spans = made_by_the_sdk()
    for odd in ({"map": {"a": 1}}, {"huge": 2**70}, {"surrogate": "\ud800"}):
        span = ReadableSpan(
            "odd", context=trace.SpanContext(1, 2, False), resource=RESOURCE, attributes=odd
        )
        batch = [*spans, span]
        try:
            otlp_encoding.encode_spans(batch)
        except otlp_encoding.Unsupported:
            pass
        else:
            raise AssertionError(f"{odd} should be left to the SDK's encoder")
        assert otlp_encoding.encode_request(batch) == sdk_encode(batch)
    odd_resource = Resource({"service.name": "\ud800"})
    span = ReadableSpan("x", context=trace.SpanContext(1, 2, False), resource=odd_resource)
    with pytest.raises(otlp_encoding.Unsupported):
        otlp_encoding.encode_spans([span])


def test_the_encoded_request_is_the_sdks_message():
    spans = made_by_the_sdk()
    request = otlp_encoding.encode_request(spans)
    assert request == sdk_encode(spans)
    names = [s.name for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
    assert sorted(names) == sorted(s.name for s in spans)


def test_install_points_both_exporters_at_it():
    import opentelemetry.exporter.otlp.proto.grpc.trace_exporter as grpc_exporter
    import opentelemetry.exporter.otlp.proto.http.trace_exporter as http_exporter

    saved = http_exporter.encode_spans, grpc_exporter.encode_spans
    try:
        assert sorted(otlp_encoding.install()) == sorted(
            [http_exporter.__name__, grpc_exporter.__name__]
        )
        assert http_exporter.encode_spans is otlp_encoding.encode_request
        assert grpc_exporter.encode_spans is otlp_encoding.encode_request
    finally:
        http_exporter.encode_spans, grpc_exporter.encode_spans = saved


def test_float_zero_signs_and_nan_are_kept():
    span = ReadableSpan(
        "floats",
        context=trace.SpanContext(1, 2, False),
        resource=RESOURCE,
        attributes={"zero": 0.0, "negative zero": -0.0, "nan": math.nan, "inf": -math.inf},
    )
    assert otlp_encoding.encode_spans([span]) == sdk_bytes([span])
    assert otlp_encoding.encode_spans([span]) != otlp_encoding.encode_spans(
        [
            ReadableSpan(
                "floats",
                context=trace.SpanContext(1, 2, False),
                resource=RESOURCE,
                attributes={"zero": 0.0, "negative zero": 0.0, "nan": math.nan, "inf": -math.inf},
            )
        ]
    )


def test_equal_values_of_other_types_are_not_confused():
    """True == 1 in Python, and the encoder keeps encoded pairs: they must stay apart."""
    for value in (1, True, 0, False, "1"):
        span = ReadableSpan(
            "typed",
            context=trace.SpanContext(1, 2, False),
            resource=RESOURCE,
            attributes={"flag": value},
        )
        assert otlp_encoding.encode_spans([span]) == sdk_bytes([span]), value
