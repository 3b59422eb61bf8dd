"""``OTEL_LOGS_EXPORTER``: Python log records as OpenTelemetry logs, through public APIs only.

Why this module is hand-written: in the OpenTelemetry line we pin (SDK 1.45) the logs
signal (``LoggerProvider``, ``BatchLogRecordProcessor``, the OTLP log exporters, the
logging handler) is not public API yet (its modules are marked private with a leading
underscore), and this project uses no private OpenTelemetry name
(tests/telemetry/test_public_api_only.py). What it does use is public: the generated
OTLP messages and gRPC stub of ``opentelemetry-proto``, the SDK's ``Resource`` (the
tracer provider's own), the API's current span, and ``opentelemetry.util.re`` for the
headers variable. When the SDK makes its logs API public, delete this module and install
the SDK's ``LoggerProvider`` with a ``BatchLogRecordProcessor`` (or its console exporter)
and its logging handler instead: the variables below are the ones the SDK reads.

- ``console``: each record as one JSON line on standard output (``ConsoleHandler``).
- ``otlp``: records queue in memory (``OTEL_BLRP_MAX_QUEUE_SIZE``, 2048; when it is full
  the oldest is dropped and counted, so logging never waits for the network) and a thread
  exports them every ``OTEL_BLRP_SCHEDULE_DELAY`` ms (1000) or as soon as
  ``OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`` (512) are waiting, on ``flush()`` and at exit
  (bounded by ``OTEL_BLRP_EXPORT_TIMEOUT`` ms, 30000). Over ``http/protobuf`` (POST to
  ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/logs``)
  or ``grpc``; ``OTEL_EXPORTER_OTLP[_LOGS]_HEADERS``, ``_TIMEOUT`` (seconds, as the
  pinned trace exporter reads it), ``_COMPRESSION`` (``gzip``), ``_CERTIFICATE`` and
  ``_INSECURE`` (gRPC) are honoured. Throttling and unavailability (HTTP 429, 502, 503,
  504, a refused connection; gRPC ``UNAVAILABLE`` and the other retryable codes) are
  retried with exponential backoff within the timeout; a failure is written once to
  standard error (never through logging, which would feed it back to this handler), and
  again only after an export has succeeded.
"""

from __future__ import annotations

import atexit
import functools
import gzip
import http.client
import json
import logging
import os
import random
import ssl
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlparse

from opentelemetry import trace
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourceMessage
from opentelemetry.sdk.resources import Resource
from opentelemetry.util.re import parse_env_headers

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
# ``trace_id``/``span_id`` are set by config.telemetry.TraceIdFilter for the text lines
# and are the record's own fields here, not attributes.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))).union(
    ("message", "asctime", "trace_id", "span_id")
)
_PRIMITIVE = (bool, str, int, float)
_RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_MAX_ATTEMPTS = 6


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def _logs_env(name: str) -> str:
    """``OTEL_EXPORTER_OTLP_LOGS_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``."""
    return _env(f"OTEL_EXPORTER_OTLP_LOGS_{name}") or _env(f"OTEL_EXPORTER_OTLP_{name}")


def _number(name: str, default: float) -> float:
    raw = _env(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: use a positive number")
    return value


def severity_number(levelno: int) -> SeverityNumber.ValueType:
    """A Python level as the logs data model's severity, as the SDK maps it.

    DEBUG 5, INFO 9, WARNING 13, ERROR 17, CRITICAL 21; a custom level between takes the
    next numbers of its range (21 is INFO2, 22 INFO3, 23 to 29 INFO4); below DEBUG is
    unspecified (0) and above 53 is FATAL4.
    """
    if levelno < logging.DEBUG:
        return SeverityNumber.SEVERITY_NUMBER_UNSPECIFIED
    if levelno > 53:
        return SeverityNumber.SEVERITY_NUMBER_FATAL4
    band, step = divmod(levelno, 10)
    return SeverityNumber.ValueType(1 + 4 * band + min(step, 3))


class Captured(NamedTuple):
    """What a record says, taken in the thread that logged it (its span, its message)."""

    time_unix_nano: int
    observed_time_unix_nano: int
    severity_number: SeverityNumber.ValueType
    severity_text: str
    body: str
    attributes: dict[str, Any]
    trace_id: int
    span_id: int
    trace_flags: int
    scope: str


def capture(record: logging.LogRecord) -> Captured:
    """The record's fields, its ``extra`` values, its exception and the current span."""
    attributes: dict[str, Any] = {
        "code.file.path": record.pathname,
        "code.function.name": record.funcName,
        "code.line.number": record.lineno,
    }
    for key, value in vars(record).items():
        if key in _STANDARD:
            continue
        if isinstance(value, _PRIMITIVE):
            attributes[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, _PRIMITIVE) for v in value):
            attributes[key] = list(value)
        # Other values (a request object, say) have no OTLP form; they are left out.
    if record.exc_info and record.exc_info[0] is not None:
        kind, error, _ = record.exc_info
        attributes["exception.type"] = kind.__name__
        attributes["exception.message"] = str(error)
        attributes["exception.stacktrace"] = "".join(traceback.format_exception(*record.exc_info))
    context = trace.get_current_span().get_span_context()
    return Captured(
        time_unix_nano=int(record.created * 1e9),
        observed_time_unix_nano=time.time_ns(),
        severity_number=severity_number(record.levelno),
        severity_text=record.levelname,
        body=record.getMessage(),
        attributes=attributes,
        trace_id=context.trace_id if context.is_valid else 0,
        span_id=context.span_id if context.is_valid else 0,
        trace_flags=int(context.trace_flags) if context.is_valid else 0,
        scope=record.name,
    )


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_any_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def _key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=_any_value(value)) for key, value in attributes.items()]


def encode(records: Sequence[Captured], resource: Resource) -> ExportLogsServiceRequest:
    """One OTLP export request: the resource, one scope per logger name, the records."""
    scopes: dict[str, list[LogRecord]] = {}
    for one in records:
        scopes.setdefault(one.scope, []).append(
            LogRecord(
                time_unix_nano=one.time_unix_nano,
                observed_time_unix_nano=one.observed_time_unix_nano,
                severity_number=one.severity_number,
                severity_text=one.severity_text,
                body=AnyValue(string_value=one.body),
                attributes=_key_values(one.attributes),
                flags=one.trace_flags,
                trace_id=one.trace_id.to_bytes(16, "big") if one.trace_id else b"",
                span_id=one.span_id.to_bytes(8, "big") if one.span_id else b"",
            )
        )
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=ResourceMessage(attributes=_key_values(resource.attributes)),
                schema_url=resource.schema_url,
                scope_logs=[
                    ScopeLogs(scope=InstrumentationScope(name=name), log_records=log_records)
                    for name, log_records in scopes.items()
                ],
            )
        ]
    )


def _iso(unix_nano: int) -> str:
    return datetime.fromtimestamp(unix_nano / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


def as_json(one: Captured, resource: Resource) -> str:
    """A record on one line (``json.dumps`` escapes the line breaks of a message)."""
    return json.dumps(
        {
            "timestamp": _iso(one.time_unix_nano),
            "observed_timestamp": _iso(one.observed_time_unix_nano),
            "severity_text": one.severity_text,
            "severity_number": int(one.severity_number),
            "body": one.body,
            "attributes": one.attributes,
            "trace_id": format(one.trace_id, "032x") if one.trace_id else None,
            "span_id": format(one.span_id, "016x") if one.span_id else None,
            "trace_flags": one.trace_flags,
            "scope": {"name": one.scope},
            "resource": {"attributes": dict(resource.attributes)},
        },
        default=str,
    )


class ConsoleHandler(logging.Handler):
    """``OTEL_LOGS_EXPORTER=console``: each record as one JSON line on standard output."""

    def __init__(self, resource: Resource) -> None:
        super().__init__()
        self.resource = resource

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = as_json(capture(record), self.resource)
            stream = sys.stdout  # looked up each time: whoever replaced it gets the line
            stream.write(line + "\n")
            stream.flush()
        except Exception:  # the logging boundary: logging's own report, never a raise
            self.handleError(record)


class ExportError(Exception):
    """An export that did not succeed; ``retryable`` when the receiver may take it later."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


Send = Callable[[ExportLogsServiceRequest, float], None]


class HttpSender:
    """OTLP/HTTP with protobuf bodies: one POST per batch."""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Mapping[str, str],
        compression: str = "none",
        certificate: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.headers = {"Content-Type": "application/x-protobuf", **headers}
        self.gzip = compression == "gzip"
        if self.gzip:
            self.headers["Content-Encoding"] = "gzip"
        handlers: list[urllib.request.BaseHandler] = []
        if certificate:
            context = ssl.create_default_context(cafile=certificate)
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)

    def __call__(self, request: ExportLogsServiceRequest, timeout: float) -> None:
        body = request.SerializeToString()
        if self.gzip:
            body = gzip.compress(body)
        post = urllib.request.Request(self.endpoint, data=body, headers=self.headers)
        try:
            with self.opener.open(post, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as error:
            error.close()
            retry_after = error.headers.get("Retry-After", "")
            raise ExportError(
                f"HTTP {error.code} from {self.endpoint}",
                retryable=error.code in _RETRYABLE_HTTP,
                retry_after=float(retry_after) if retry_after.isdigit() else None,
            ) from None
        except OSError as error:  # refused, reset, timed out: the collector may be restarting
            reason = getattr(error, "reason", error)
            raise ExportError(f"{self.endpoint}: {reason}", retryable=True) from None
        except http.client.HTTPException as error:  # not HTTP/1 (a gRPC port), a cut body
            raise ExportError(
                f"{self.endpoint}: not an HTTP answer ({error!r}); is this the OTLP/HTTP port?",
                retryable=True,
            ) from None


class GrpcSender:
    """OTLP/gRPC through the generated ``LogsServiceStub``."""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Mapping[str, str],
        insecure: bool,
        compression: str = "none",
        certificate: str = "",
    ) -> None:
        import grpc  # type: ignore[import-untyped]  # grpcio ships no types; not locked
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub

        self.grpc = grpc
        self.target = endpoint
        self.metadata = tuple(headers.items())
        options = {"compression": grpc.Compression.Gzip} if compression == "gzip" else {}
        if insecure:
            channel = grpc.insecure_channel(endpoint, **options)
        else:
            roots = open(certificate, "rb").read() if certificate else None  # noqa: SIM115
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            channel = grpc.secure_channel(endpoint, credentials, **options)
        self.stub = LogsServiceStub(channel)
        self.retryable = {
            grpc.StatusCode.CANCELLED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.ABORTED,
            grpc.StatusCode.OUT_OF_RANGE,
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DATA_LOSS,
        }

    def __call__(self, request: ExportLogsServiceRequest, timeout: float) -> None:
        try:
            self.stub.Export(request, metadata=self.metadata, timeout=timeout)
        except self.grpc.RpcError as error:
            code = error.code() if isinstance(error, self.grpc.Call) else None
            raise ExportError(
                f"gRPC {getattr(code, 'name', 'error')} from {self.target}",
                retryable=code in self.retryable,
            ) from None


def _report(message: str) -> None:
    # Standard error, not logging: a record about exporting logs would be exported in turn.
    print(f"OTLP logs: {message}", file=sys.stderr, flush=True)


class BatchingHandler(logging.Handler):
    """``OTEL_LOGS_EXPORTER=otlp``: queue records, export them in batches from a thread.

    ``emit`` only takes the record's fields and appends them to a bounded deque: when it
    is full the oldest record is dropped and counted (``dropped``), so a request never
    waits for the collector.
    """

    def __init__(
        self,
        send: Send,
        resource: Resource,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay: float = 1.0,
        export_timeout: float = 30.0,
        send_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self.send = send
        self.resource = resource
        self.max_queue_size = max_queue_size
        self.batch_size = min(max_export_batch_size, max_queue_size)
        self.schedule_delay = schedule_delay
        self.export_timeout = export_timeout
        self.send_timeout = send_timeout
        self.dropped = 0
        self._reported_drops = 0
        self._failing = False
        self._closed = False
        self._start()
        atexit.register(self.close)
        method = weakref.WeakMethod(self._after_fork)
        os.register_at_fork(after_in_child=lambda: (after_fork := method()) and after_fork())

    def _after_fork(self) -> None:
        # A forked child (gunicorn with --preload) has the parent's queue, but not its
        # thread, and the lock may have been held at the fork: the parent exports what it
        # queued; the child starts afresh.
        if not self._closed:
            self._start()

    def _start(self) -> None:
        self._queue: deque[Captured] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._flush_asked = self._flush_done = 0
        self._stopping = False
        self._worker = threading.Thread(target=self._run, name="otlp-logs", daemon=True)
        self._worker.start()

    def emit(self, record: logging.LogRecord) -> None:
        if threading.current_thread() is self._worker:
            return  # a library's record from inside an export would feed the next one
        try:
            captured = capture(record)
        except Exception:  # the logging boundary: logging's own report, never a raise
            self.handleError(record)
            return
        with self._wake:
            if self._stopping:
                return
            if len(self._queue) >= self.max_queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(captured)
            if len(self._queue) >= self.batch_size:
                self._wake.notify_all()

    def flush(self) -> None:
        """Export what is queued now; wait for it up to ``OTEL_BLRP_EXPORT_TIMEOUT``."""
        if threading.current_thread() is self._worker or not self._worker.is_alive():
            return
        deadline = time.monotonic() + self.export_timeout
        with self._wake:
            self._flush_asked += 1
            asked = self._flush_asked
            self._wake.notify_all()
            while self._flush_done < asked and (left := deadline - time.monotonic()) > 0:
                self._wake.wait(left)

    def close(self) -> None:
        """Export what is queued and stop the thread (at exit, by ``telemetry.shutdown``)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        with self._wake:  # the thread exports what is queued, then ends
            self._stopping = True
            self._wake.notify_all()
        self._worker.join(self.export_timeout)
        super().close()

    def _run(self) -> None:
        while True:
            with self._wake:
                due = time.monotonic() + self.schedule_delay
                while (
                    not self._stopping
                    and self._flush_done == self._flush_asked
                    and len(self._queue) < self.batch_size
                    and (left := due - time.monotonic()) > 0
                ):
                    self._wake.wait(left)
                asked, stopping = self._flush_asked, self._stopping
                records = list(self._queue)
                self._queue.clear()
            for start in range(0, len(records), self.batch_size):
                self._export(records[start : start + self.batch_size])
            if self.dropped > self._reported_drops:
                _report(
                    f"{self.dropped - self._reported_drops} records dropped (the queue of "
                    f"{self.max_queue_size} was full); {self.dropped} since start"
                )
                self._reported_drops = self.dropped
            with self._wake:
                self._flush_done = asked
                self._wake.notify_all()
            if stopping:
                return

    def _export(self, records: Sequence[Captured]) -> None:
        try:
            request = encode(records, self.resource)
        except Exception as error:  # the thread's boundary: it must outlive a bad record
            self._failed(f"{len(records)} records could not be encoded: {error!r}")
            return
        deadline = time.monotonic() + self.send_timeout
        for attempt in range(_MAX_ATTEMPTS):
            try:
                self.send(request, max(deadline - time.monotonic(), 0.001))
            except Exception as unexpected:  # the thread's boundary: it must outlive any error
                if not isinstance(unexpected, ExportError):
                    self._failed(f"export failed ({unexpected!r}); {len(records)} records lost")
                    return
                failure = unexpected
                delay = failure.retry_after or 2**attempt * random.uniform(0.8, 1.2)  # noqa: S311
                retry = failure.retryable and attempt + 1 < _MAX_ATTEMPTS
                if retry and time.monotonic() + delay < deadline:
                    time.sleep(delay)
                    continue
                self._failed(f"export failed ({failure}); {len(records)} records lost")
                return
            if self._failing:
                self._failing = False
                _report("export works again")
            return

    def _failed(self, message: str) -> None:
        if not self._failing:
            self._failing = True
            _report(f"{message}; further failures are not reported until an export succeeds")


def otlp_handler(resource: Resource, *, grpc: bool) -> functools.partial[BatchingHandler]:
    """The ``otlp`` handler as the specification's variables configure it, checked now.

    Calling the result makes the handler and starts its thread: ``logging.config``'s
    ``dictConfig`` (Django's setup) closes every handler made before it, attached or not.

    Raises:
        ValueError: a batch setting that is not a positive number (the message names it).
    """
    headers = parse_env_headers(_logs_env("HEADERS"), liberal=True)
    compression = _logs_env("COMPRESSION").lower() or "none"
    certificate = _logs_env("CERTIFICATE")
    send: Send
    if grpc:
        endpoint = _logs_env("ENDPOINT") or "http://localhost:4317"
        parsed = urlparse(endpoint)
        insecure_setting = _logs_env("INSECURE").lower()
        if parsed.scheme == "https":
            insecure = False
        elif insecure_setting:
            insecure = insecure_setting == "true"
        else:
            insecure = parsed.scheme == "http"
        send = GrpcSender(
            parsed.netloc or endpoint,
            headers=headers,
            insecure=insecure,
            compression=compression,
            certificate=certificate,
        )
    else:
        endpoint = _env("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
        if not endpoint:
            base = _env("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
            endpoint = base.rstrip("/") + "/v1/logs"
        send = HttpSender(
            endpoint, headers=headers, compression=compression, certificate=certificate
        )
    return functools.partial(
        BatchingHandler,
        send,
        resource,
        max_queue_size=int(_number("OTEL_BLRP_MAX_QUEUE_SIZE", 2048)),
        max_export_batch_size=int(_number("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", 512)),
        schedule_delay=_number("OTEL_BLRP_SCHEDULE_DELAY", 1000) / 1000,
        export_timeout=_number("OTEL_BLRP_EXPORT_TIMEOUT", 30000) / 1000,
        send_timeout=_number_or("TIMEOUT", 10.0),
    )


def _number_or(name: str, default: float) -> float:
    for full in (f"OTEL_EXPORTER_OTLP_LOGS_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        if _env(full):
            return _number(full, default)
    return default
