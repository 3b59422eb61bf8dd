"""OTLP span export from a helper process, so that encoding spans does not take the GIL.

The SDK's batch processor hands each batch to an exporter on its own thread; the OTLP
exporter then spends about 20 µs per span building and serialising protobuf messages, in
Python, holding the GIL the request thread needs: on the deposit path that was about as
much as making the spans. ``HelperProcessSpanExporter`` instead packs each span into a
tuple of plain values (a few µs), pickles the batch and writes it down a pipe to a helper
process (``python -m config.span_export``) that rebuilds the spans and hands them to the
SDK's own OTLP exporter (HTTP/protobuf or gRPC, configured from the same ``OTEL_*``
variables it inherits). Batching, queueing and dropping stay the SDK processor's.

- The helper starts at the first export, and again after a fork (each gunicorn worker
  gets its own) or if it died; a batch whose write fails is retried once on a new helper.
  A helper that dies loses at most the batch it was exporting.
- ``force_flush`` returns once the helper has exported everything sent before it.
- ``shutdown`` closes the pipe; the helper exports what it has and exits, and is waited for.
- When the parent dies, the helper reads end-of-file, exports what it has and exits.
- ``TELEMETRY_EXPORT_PROCESS=false`` exports in-process instead (``config/telemetry.py``).

The pipe carries pickles from this process to its own child and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("config.span_export")

_HEADER = struct.Struct(">I")
_ACK = struct.Struct(">Q")
HELPER_COMMAND = [sys.executable, "-m", "config.span_export"]


def pack(span: ReadableSpan) -> tuple[Any, ...]:
    """Everything the OTLP encoder reads from a span, as plain picklable values."""
    context = span.context
    parent = span.parent
    status = span.status
    scope = span.instrumentation_scope
    events = span.events
    links = span.links
    return (
        span.name,
        context.trace_id,
        context.span_id,
        int(context.trace_flags),
        tuple(context.trace_state.items()) if context.trace_state else (),
        (parent.span_id, int(parent.trace_flags), parent.is_remote) if parent else None,
        span.kind.value,
        span.start_time,
        span.end_time,
        dict(span.attributes) if span.attributes else {},
        tuple(
            (e.name, e.timestamp, dict(e.attributes) if e.attributes else {}, e.dropped_attributes)
            for e in events
        )
        if events
        else (),
        tuple(
            (
                link.context.trace_id,
                link.context.span_id,
                int(link.context.trace_flags),
                link.context.is_remote,
                tuple(link.context.trace_state.items()) if link.context.trace_state else (),
                dict(link.attributes) if link.attributes else {},
                link.dropped_attributes,
            )
            for link in links
        )
        if links
        else (),
        status.status_code.value,
        status.description,
        (
            scope.name,
            scope.version,
            scope.schema_url,
            dict(scope.attributes) if scope.attributes else None,
        )
        if scope
        else None,
        span.dropped_attributes,
        span.dropped_events,
        span.dropped_links,
    )


class HelperProcessSpanExporter(SpanExporter):
    """Sends span batches to a helper process that exports them over OTLP."""

    def __init__(
        self,
        resource: Any,
        *,
        command: Sequence[str] | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        """A exporter for the spans of ``resource``.

        Args:
            resource: the resource every span carries (sent to the helper once).
            command: how to start the helper (tests); ``python -m config.span_export``.
            timeout_seconds: how long ``force_flush`` and ``shutdown`` wait for it.
        """
        self._resource = (dict(resource.attributes), resource.schema_url)
        self._command = list(command or HELPER_COMMAND)
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._pid = 0
        self._flushes = 0
        self._shutdown = False

    @property
    def helper_pid(self) -> int | None:
        """The running helper's process id, if there is one for this process."""
        process = self._process
        if process is None or self._pid != os.getpid() or process.poll() is not None:
            return None
        return process.pid

    def _helper(self) -> subprocess.Popen[bytes]:
        process = self._process
        if process is not None and self._pid == os.getpid() and process.poll() is None:
            return process
        if process is not None and self._pid == os.getpid():
            log.warning("span export helper exited (code %s); starting a new one", process.poll())
        # After a fork the parent's helper and pipe belong to the parent: leave them alone.
        process = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self._process, self._pid = process, os.getpid()
        self._send(process, ("resource", *self._resource))
        return process

    @staticmethod
    def _send(process: subprocess.Popen[bytes], message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        stdin: IO[bytes] = process.stdin  # type: ignore[assignment]
        stdin.write(_HEADER.pack(len(data)))
        stdin.write(data)
        stdin.flush()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            message = ("spans", [pack(span) for span in spans])
        except Exception:  # a span this cannot read: say so, never break the caller
            log.exception("could not pack %d spans for the export helper", len(spans))
            return SpanExportResult.FAILURE
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._send(self._helper(), message)
                    return SpanExportResult.SUCCESS
                except OSError as exc:  # the helper died, or could not be started
                    self._process = None
                    if attempt == 2:
                        log.error(
                            "could not hand %d spans to the export helper (%s); they are "
                            "dropped. Is %s runnable?",
                            len(spans),
                            exc,
                            " ".join(self._command),
                        )
        return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until the helper has exported every span sent before this call."""
        with self._lock:
            process = self._process
            if process is None or self._pid != os.getpid() or process.poll() is not None:
                return True  # nothing was sent, or it is gone with what it had
            self._flushes += 1
            token = self._flushes
            deadline = time.monotonic() + min(timeout_millis / 1000, self._timeout)
            try:
                self._send(process, ("flush", token))
                return self._await_ack(process, token, deadline)
            except OSError:
                return False

    @staticmethod
    def _await_ack(process: subprocess.Popen[bytes], token: int, deadline: float) -> bool:
        stdout: IO[bytes] = process.stdout  # type: ignore[assignment]
        received = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("span export helper did not confirm a flush in time")
                return False
            ready, _, _ = select.select([stdout], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(stdout.fileno(), _ACK.size - len(received))
            if not chunk:
                return False  # the helper exited
            received += chunk
            if len(received) == _ACK.size:
                if _ACK.unpack(received)[0] == token:
                    return True
                received = b""  # the answer to an earlier flush that timed out

    def shutdown(self) -> None:
        """Close the pipe and wait for the helper to export what it has and exit."""
        with self._lock:
            self._shutdown = True
            process, self._process = self._process, None
            if process is None or self._pid != os.getpid():
                return
            with contextlib.suppress(OSError):
                process.stdin.close()  # type: ignore[union-attr]
            try:
                process.wait(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                log.warning("span export helper did not finish in time; stopping it")
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


# --- the helper process -------------------------------------------------------------------


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _rebuilder(resource: Any) -> Any:
    """A function turning packed rows back into spans the OTLP encoder reads as the SDK's."""
    from opentelemetry.sdk.trace import Event
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import (
        Link,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
        TraceState,
    )

    class _Event(Event):
        def __init__(self, name: str, timestamp: int, attributes: Any, dropped: int) -> None:
            super().__init__(name, attributes, timestamp)
            self._dropped = dropped

        @property
        def dropped_attributes(self) -> int:
            return self._dropped

    class _Link(Link):
        def __init__(self, context: SpanContext, attributes: Any, dropped: int) -> None:
            super().__init__(context, attributes)
            self._dropped = dropped

        @property
        def dropped_attributes(self) -> int:
            return self._dropped

    class _Span(ReadableSpan):
        def __init__(self, dropped: tuple[int, int, int], **fields: Any) -> None:
            super().__init__(**fields)
            self._dropped = dropped

        @property
        def dropped_attributes(self) -> int:
            return self._dropped[0]

        @property
        def dropped_events(self) -> int:
            return self._dropped[1]

        @property
        def dropped_links(self) -> int:
            return self._dropped[2]

    scopes: dict[Any, InstrumentationScope] = {}

    def scope_of(packed: Any) -> InstrumentationScope | None:
        if packed is None:
            return None
        key = (packed[0], packed[1], packed[2], tuple(sorted((packed[3] or {}).items())))
        if key not in scopes:
            scopes[key] = InstrumentationScope(packed[0], packed[1], packed[2], packed[3])
        return scopes[key]

    def rebuild(row: tuple[Any, ...]) -> ReadableSpan:
        (
            name,
            trace_id,
            span_id,
            flags,
            state,
            parent,
            kind,
            start_time,
            end_time,
            attributes,
            events,
            links,
            code,
            description,
            scope,
            dropped_attributes,
            dropped_events,
            dropped_links,
        ) = row
        return _Span(
            (dropped_attributes, dropped_events, dropped_links),
            name=name,
            context=SpanContext(trace_id, span_id, False, TraceFlags(flags), TraceState(state)),
            parent=SpanContext(trace_id, parent[0], parent[2], TraceFlags(parent[1]))
            if parent
            else None,
            resource=resource,
            attributes=attributes,
            events=[_Event(*event) for event in events],
            links=[
                _Link(
                    SpanContext(
                        link[0], link[1], link[3], TraceFlags(link[2]), TraceState(link[4])
                    ),
                    link[5],
                    link[6],
                )
                for link in links
            ],
            kind=SpanKind(kind),
            status=Status(StatusCode(code), description),
            start_time=start_time,
            end_time=end_time,
            instrumentation_scope=scope_of(scope),
        )

    return rebuild


def main() -> int:
    """The helper: read batches from stdin, export them, answer flushes on stdout."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    from opentelemetry.sdk.resources import Resource

    from config import telemetry

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    exporter = telemetry._otlp_span_exporter()
    rebuild = None
    try:
        while True:
            header = _read_exactly(stdin, _HEADER.size)
            if header is None:
                return 0  # the parent closed the pipe (shutdown) or died
            body = _read_exactly(stdin, _HEADER.unpack(header)[0])
            if body is None:
                return 0
            message = pickle.loads(body)
            kind = message[0]
            if kind == "resource":
                rebuild = _rebuilder(
                    telemetry._resource_with_cached_hash(Resource(message[1], message[2]))
                )
            elif kind == "spans" and rebuild is not None:
                exporter.export([rebuild(row) for row in message[1]])
            elif kind == "flush":
                stdout.write(_ACK.pack(message[1]))
                stdout.flush()
    finally:
        exporter.shutdown()


if __name__ == "__main__":
    sys.exit(main())
