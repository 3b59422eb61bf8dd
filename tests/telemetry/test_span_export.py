"""Span export through the helper process (``config/span_export.py``).

What goes through the pipe is compared with the SDK's own encoding, byte for byte; the
helper itself runs for real, exporting to an OTLP/HTTP receiver on loopback.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config.span_export import HelperProcessSpanExporter, _rebuilder, pack
from eventstore.telemetry import ActiveSpan, FastTracer
from tests.support import ROOT
from tests.telemetry.receivers import Receiver

RESOURCE = Resource.create({"service.name": "span-export-tests", "deployment.environment": "ci"})


def varied_spans(**limits):
    """Spans with everything the encoder reads: events, links, states, errors, scopes."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, span_limits=SpanLimits(**limits))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    remote = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        trace_state=trace.TraceState([("vendor", "a1"), ("congo", "t61rcWkgMzE")]),
    )
    link = trace.Link(remote, {"link.kind": "cause", "n": 2})
    server = provider.get_tracer("django", "0.66b1", schema_url="https://x/schema")
    ours = FastTracer("bank.services", provider)
    parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    with server.start_as_current_span(
        "POST /x", context=parent, kind=trace.SpanKind.SERVER, links=[link]
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
    return exporter.get_finished_spans()


@pytest.mark.parametrize(
    "limits",
    [
        {},
        {
            "max_span_attributes": 1,
            "max_events": 1,
            "max_event_attributes": 1,
            "max_link_attributes": 1,
        },
    ],
    ids=["default limits", "tight limits (dropped counts)"],
)
def test_spans_rebuilt_in_the_helper_encode_byte_for_byte_as_the_originals(limits):
    spans = varied_spans(**limits)
    rebuild = _rebuilder(Resource(dict(RESOURCE.attributes), RESOURCE.schema_url))
    rebuilt = [rebuild(row) for row in pickle_round_trip([pack(s) for s in spans])]
    original = encode_spans(spans).SerializeToString(deterministic=True)
    assert encode_spans(rebuilt).SerializeToString(deterministic=True) == original
    decoded = encode_spans(rebuilt)
    names = [s.name for r in decoded.resource_spans for ss in r.scope_spans for s in ss.spans]
    assert sorted(names) == ["POST /x", "command.withdraw", "event_store.append_events"]
    assert any(s.context.trace_state for s in spans)
    if limits:
        assert any(s.dropped_attributes for s in spans)
        assert any(s.dropped_events for s in spans)
        assert any(link.dropped_attributes for s in spans for link in s.links)
        assert any(e.dropped_attributes for s in spans for e in s.events)


def pickle_round_trip(rows):
    import pickle

    return pickle.loads(pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))


def received_names(receiver):
    return [
        span.name
        for request in receiver.traces
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def helper_env(receiver, monkeypatch):
    """The helper inherits the OTEL_* variables: point it at the receiver, over HTTP."""
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def test_a_flush_returns_once_the_receiver_has_the_spans(receiver, helper_env):
    exporter = HelperProcessSpanExporter(RESOURCE)
    try:
        spans = varied_spans()
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        assert exporter.force_flush(10_000)
        assert sorted(received_names(receiver)) == sorted(s.name for s in spans)
        request = receiver.traces[0]
        resource = {
            a.key: a.value.string_value for a in request.resource_spans[0].resource.attributes
        }
        assert resource["service.name"] == "span-export-tests"
        assert resource["deployment.environment"] == "ci"
    finally:
        exporter.shutdown()


def test_shutdown_delivers_everything_and_the_helper_exits(receiver, helper_env):
    exporter = HelperProcessSpanExporter(RESOURCE)
    for _ in range(20):
        assert exporter.export(varied_spans()) is SpanExportResult.SUCCESS
    pid = exporter.helper_pid
    exporter.shutdown()
    assert len(received_names(receiver)) == 60
    assert exporter.helper_pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert exporter.export(varied_spans()) is SpanExportResult.FAILURE  # after shutdown


def test_a_dead_helper_is_replaced_and_the_next_batch_arrives(receiver, helper_env, caplog):
    exporter = HelperProcessSpanExporter(RESOURCE)
    try:
        assert exporter.export(varied_spans()) is SpanExportResult.SUCCESS
        assert exporter.force_flush(10_000)
        first = exporter.helper_pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while exporter.helper_pid is not None and time.monotonic() < deadline:
            time.sleep(0.05)  # until it is really gone, so the next write cannot reach it
        with caplog.at_level(logging.WARNING, logger="config.span_export"):
            assert exporter.export(varied_spans()) is SpanExportResult.SUCCESS
        assert exporter.force_flush(10_000)
        assert exporter.helper_pid not in (None, first)
        assert len(received_names(receiver)) == 6
        assert "span export helper exited (code -9); starting a new one" in caplog.text
    finally:
        exporter.shutdown()


def test_a_helper_that_cannot_start_drops_the_batch_with_a_clear_error(caplog):
    exporter = HelperProcessSpanExporter(RESOURCE, command=["/nonexistent/python"])
    with caplog.at_level(logging.ERROR, logger="config.span_export"):
        assert exporter.export(varied_spans()) is SpanExportResult.FAILURE
    assert "could not hand 3 spans to the export helper" in caplog.text
    assert "/nonexistent/python" in caplog.text
    assert exporter.force_flush(1000)
    exporter.shutdown()


def test_a_forked_process_gets_a_helper_of_its_own(receiver, helper_env):
    exporter = HelperProcessSpanExporter(RESOURCE)
    try:
        assert exporter.export(varied_spans()) is SpanExportResult.SUCCESS
        assert exporter.force_flush(10_000)
        parent_helper = exporter.helper_pid
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked process
            code = 1
            try:
                assert exporter.helper_pid is None  # the parent's helper is not ours
                ok = exporter.export(varied_spans()) is SpanExportResult.SUCCESS
                ok = ok and exporter.force_flush(10_000)
                os.write(write_end, str(exporter.helper_pid).encode())
                exporter.shutdown()
                code = 0 if ok else 1
            finally:
                os._exit(code)
        os.close(write_end)
        _, status = os.waitpid(child, 0)
        child_helper = int(os.read(read_end, 32) or b"0")
        os.close(read_end)
        assert os.waitstatus_to_exitcode(status) == 0
        assert child_helper not in (0, parent_helper)
        assert exporter.helper_pid == parent_helper  # the parent's is untouched
        assert exporter.export(varied_spans()) is SpanExportResult.SUCCESS
        assert exporter.force_flush(10_000)
        assert len(received_names(receiver)) == 9
    finally:
        exporter.shutdown()


def test_when_the_app_process_is_killed_the_helper_still_delivers_and_exits(receiver, helper_env):
    """A gunicorn worker killed by SIGKILL: its helper reads end-of-file, exports, exits."""
    script = textwrap.dedent(
        """
        import os, signal, sys
        from opentelemetry.sdk.resources import Resource
        from config.span_export import HelperProcessSpanExporter
        from tests.telemetry.test_span_export import varied_spans
        exporter = HelperProcessSpanExporter(Resource.create({"service.name": "killed"}))
        for _ in range(10):
            exporter.export(varied_spans())
        print(exporter.helper_pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    app = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert app.returncode == -signal.SIGKILL, app.stderr
    helper = int(app.stdout.strip())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the helper outlived its application process")
    assert len(received_names(receiver)) == 30
