"""OpenTelemetry, set up once at start-up (manage.py, WSGI and ASGI) from the OTEL_* variables.

With no OTLP endpoint configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or the per-signal
``..._TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT``) nothing is installed: the API's no-op
tracer and meter stay in place, nothing is exported and nothing tries to connect. With
one, traces and metrics go over OTLP, HTTP/protobuf or gRPC per
``OTEL_EXPORTER_OTLP_PROTOCOL``; the service name, resource attributes and sampler come
from ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_TRACES_SAMPLER`` as the
SDK reads them. Django requests and psycopg calls are instrumented.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import metrics, trace

_configured = False
log = logging.getLogger("config.telemetry")


_FALSE = ("false", "0", "no", "off")


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def endpoint_configured() -> bool:
    return any(
        _env(name)
        for name in (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        )
    )


def setup(*, span_exporter: Any = None, metric_reader: Any = None, batch: bool = False) -> bool:
    """Install the SDK when an exporter is configured (or given, in tests); once.

    Returns:
        Whether telemetry is on.
    """
    global _configured
    if _configured:
        return True
    if _env("OTEL_SDK_DISABLED").lower() == "true":
        return False
    if span_exporter is None and metric_reader is None and not endpoint_configured():
        return False
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    attributes = {} if _env("OTEL_SERVICE_NAME") else {"service.name": "ledgerline"}
    resource = _resource_with_cached_hash(Resource.create(attributes))
    provider = TracerProvider(resource=resource)
    if span_exporter is not None:
        processor = BatchSpanProcessor if batch else SimpleSpanProcessor
        provider.add_span_processor(processor(span_exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(_otlp_span_exporter()))
    if span_exporter is None and _env("TELEMETRY_FAST_ENCODING").lower() not in _FALSE:
        from config import otlp_encoding

        otlp_encoding.install()
    trace.set_tracer_provider(provider)
    readers = [metric_reader] if metric_reader is not None else []
    if metric_reader is None and endpoint_configured():
        readers.append(PeriodicExportingMetricReader(_otlp_metric_exporter()))
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    _instrument_libraries()
    _configured = True
    return True


def _resource_with_cached_hash(resource: Any) -> Any:
    """The same resource, hashed once instead of for every span exported.

    The OTLP encoder groups each batch's spans by resource, a dict keyed by it, and the
    SDK's ``Resource.__hash__`` serialises all its attributes to JSON each time: about a
    tenth of the exporter's work. A resource never changes once made, so its hash can be
    kept.
    """
    from opentelemetry.sdk.resources import Resource

    class _Resource(Resource):
        def __init__(self, attributes: Any, schema_url: str | None = None) -> None:
            super().__init__(attributes, schema_url)
            self._hash = super().__hash__()

        def __hash__(self) -> int:
            return self._hash

    return _Resource(dict(resource.attributes), resource.schema_url)


def _grpc() -> bool:
    return _env("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc"


def _otlp_span_exporter() -> Any:
    if _grpc():
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def _otlp_metric_exporter() -> Any:
    if _grpc():
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter()


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    if not DjangoInstrumentor().is_instrumented_by_opentelemetry:
        DjangoInstrumentor().instrument()
    if _env("OTEL_PYTHON_DB_SPANS").lower() in ("false", "0", "off"):
        return  # database calls stay inside our own spans' timing, without spans of their own
    try:
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    except ImportError:  # pragma: no cover - optional
        return
    if not PsycopgInstrumentor().is_instrumented_by_opentelemetry:
        PsycopgInstrumentor().instrument(enable_commenter=False)


def shutdown() -> None:
    """Flush and stop the exporters (for short-lived commands)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()
    meter_provider = metrics.get_meter_provider()
    if hasattr(meter_provider, "shutdown"):
        meter_provider.shutdown()


class TraceIdFilter(logging.Filter):
    """Adds ``trace_id`` (and ``span_id``) to every log record, so a line can be found from a trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else "-"
        record.span_id = format(context.span_id, "016x") if context.is_valid else "-"
        return True
